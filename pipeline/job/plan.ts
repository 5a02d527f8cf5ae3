// The run planner: before any GPU work, cut a run to fit the adapter's limits (the largest storage binding, the
// largest buffer) and the memory the run may hold (--max-gpu-mb): frames per UNet call (the request's chunk size is
// an upper bound) and frames per VAE decode. Ops split whatever still exceeds a binding (pipeline/ops/launch.ts),
// so bindings only bound what cannot be split: one frame's tokens of one channel block (a transpose), one frame's
// self-attention keys, the latents of the whole video (scheduler updates). A request that cannot fit even at one
// frame per call is refused with the limit it exceeds and the largest size that would fit. A frame whose whole VAE
// decode does not fit is decoded in bands of rows (exactly; pipeline/models/vae_bands.ts).
//
// The memory model counts a call's live activations per frame from the model configs (skip connections held for
// the up path, a transformer block's feed-forward, the concatenated up-path inputs) with the buffer pool's rounding;
// tests/plan_test.ts checks it against the pool's measured peak.
import { RequestError } from "../errors.ts";
import { BYTES, type DType } from "../gpu/device.ts";
import { DEMO_CONTROLNET, DEMO_PIX2PIX_UNET, DEMO_TEXT_ENCODER, DEMO_UNET, DEMO_VAE } from "../models/demo.ts";
import type { ClipTextConfig } from "../models/clip.ts";
import type { ControlNetConfig } from "../models/controlnet.ts";
import { clipTextShapes, controlnetShapes, unetShapes, vaeShapes } from "../models/shapes.ts";
import type { UNetConfig } from "../models/unet.ts";
import type { VAEConfig } from "../models/vae.ts";
import { CONTROL_MODES, type Mode } from "./modes.ts";

export interface PlanLimits {
  /** maxStorageBufferBindingSize (bytes). */
  maxBinding: number;
  /** maxBufferSize (bytes). */
  maxBuffer: number;
  /** What the run may hold in all, weights included (bytes); undefined: no cap beyond the adapter's. */
  maxBytes?: number;
}

export interface PlanModels {
  unet: UNetConfig;
  vae: VAEConfig;
  /** A ControlNet runs beside the UNet (pose, canny, depth). */
  controlnet?: boolean;
  dtype: DType;
  /** Bytes of the loaded weights (UNet, VAE, text encoder, ControlNet). */
  weightBytes: number;
}

export interface PlanRequest {
  mode: Mode;
  width: number;
  height: number;
  /** Output frames. */
  frames: number;
  /** The request's chunk size (frames per UNet call, anchor included): an upper bound. */
  chunkSize?: number;
}

export interface RunPlan {
  /** Frames per UNet call, the anchor included (>= 2); >= frames: all frames in one call. */
  chunkSize: number;
  /** Frames per VAE decode call. */
  decodeBatch: number;
  /** When one frame's whole decode does not fit: the VAE decodes it in bands of rows, each tensor of a band at most
   *  this many bytes (pipeline/models/vae_bands.ts: exact, no seams). */
  decodeBandBytes?: number;
  /** The same for encoding the input video's frames (pix2pix), when one frame's whole encode does not fit. */
  encodeBandBytes?: number;
  /** Estimated bytes the run holds at its peak (weights included). */
  peakBytes: number;
  /** The plan in one line, for the CLI and the server's log. */
  summary: string;
}

/** The memory cap in force (bytes): the smaller of a server's (--max-gpu-mb) and the request's maxGpuMb. */
export function memoryCap(serverBytes: number | undefined, requestMb: number | undefined): number | undefined {
  const req = requestMb !== undefined ? requestMb * 2 ** 20 : undefined;
  return serverBytes === undefined ? req : req === undefined ? serverBytes : Math.min(serverBytes, req);
}

/** Guidance groups per frame in a UNet call: classifier-free guidance (pix2pix: text and image guidance). */
export function guidanceGroups(mode: Mode): number {
  return mode === "pix2pix" ? 3 : 2;
}

/** The pool hands out size classes up to 25% above a request (pipeline/gpu/pool.ts). */
const POOL = 1.25;

const mb = (b: number) => b >= 2 ** 20 ? `${Math.round(b / 2 ** 20)} MiB` : `${Math.round(b / 1024)} KiB`;

function levels(unet: UNetConfig, h: number, w: number) {
  const n = unet.block_out_channels.length;
  const per = Array.isArray(unet.layers_per_block) ? unet.layers_per_block : Array(n).fill(unet.layers_per_block);
  return unet.block_out_channels.map((C, l) => {
    const hl = Math.ceil(h / 2 ** l), wl = Math.ceil(w / 2 ** l);
    return {
      C,
      N: hl * wl,
      layers: per[l] as number,
      attn: /CrossAttn/.test(unet.down_block_types[l] ?? ""),
      next: l + 1 < n ? Math.ceil(h / 2 ** (l + 1)) * Math.ceil(w / 2 ** (l + 1)) : 0,
    };
  });
}

/** Per frame of one guidance group in a UNet call (elements): live activations at the peak, the largest tensor,
 *  and what must fit one binding (a transpose of one frame's tokens, its self-attention keys). */
export function unetPerFrame(unet: UNetConfig, h: number, w: number) {
  const ls = levels(unet, h, w);
  // Skips held for the up path: conv_in, each down layer, each downsampler.
  let skips = ls[0].C * ls[0].N;
  for (const l of ls) skips += l.layers * l.C * l.N + (l.next ? l.C * l.next : 0);
  // The working set of a level: a transformer block (tokens, norm, q, attention out, residual, the feed-forward's
  // 8C projection and its 4C GEGLU output) or a resnet on a concatenated up-path input.
  const work = Math.max(...ls.map((l) => (l.attn ? 14 : 8) * l.C * l.N));
  const largest = Math.max(...ls.map((l) => (l.attn ? 8 : 3) * l.C * l.N));
  const attn = ls.filter((l) => l.attn);
  const unit = Math.max(...ls.map((l) => l.C * l.N));
  // Anchor keys/values recorded for chunked runs: k and v of every self-attention layer (down, up: layers + 1).
  const anchor = attn.reduce((s, l) => s + 2 * (2 * l.layers + 1) * l.C * l.N, 0);
  return { live: skips + work, largest, unit, anchor };
}

/** One VAE decode of one frame (elements): live activations at the peak, the largest tensor, what must fit one
 *  binding (the mid block's attention keys, one channel plane). */
export function vaePerFrame(vae: VAEConfig, h: number, w: number) {
  const rev = [...vae.block_out_channels].reverse();
  let R = h * w, prev = rev[0], live = 0, largest = 0;
  const mid = rev[0] * R;
  live = 6 * mid;
  rev.forEach((c, i) => {
    live = Math.max(live, 4 * Math.max(prev, c) * R);
    largest = Math.max(largest, Math.max(prev, c) * R);
    if (i < rev.length - 1) {
      live = Math.max(live, c * R + 2 * c * 4 * R);
      largest = Math.max(largest, c * 4 * R);
      R *= 4;
    }
    prev = c;
  });
  return { live, largest, unit: mid };
}

/** One VAE encode of one frame (elements; pix2pix encodes its input video): live activations at the peak (a resnet
 *  at full resolution: input, normalised, conv, output), the largest tensor. */
export function vaeEncodePerFrame(vae: VAEConfig, h: number, w: number) {
  let R = 64 * h * w, prev = vae.block_out_channels[0], live = 0, largest = 0;
  vae.block_out_channels.forEach((c, i) => {
    live = Math.max(live, 4 * Math.max(prev, c) * R);
    largest = Math.max(largest, Math.max(prev, c) * R);
    if (i < vae.block_out_channels.length - 1) R /= 4;
    prev = c;
  });
  return { live, largest };
}

/** GPU tensors a band of the banded decode holds at once (a resnet's second half: its input band, the band it
 *  normalises, that band normalised, the shortcut, the output), each at most the band size. */
const BAND_TENSORS = 5;

/** The banded decode (elements): what its whole-frame start holds (conv_in and the mid block at the latents'
 *  resolution), the decoded frame it assembles, and the smallest band that works (3 rows of the widest layer, the
 *  band and its halo; 6 rows of an upsampled map). */
export function vaeBands(vae: VAEConfig, h: number, w: number) {
  const rev = [...vae.block_out_channels].reverse();
  let W = w, prev = rev[0], minBand = 0;
  rev.forEach((c, i) => {
    minBand = Math.max(minBand, 3 * Math.max(prev, c) * W);
    if (i < rev.length - 1) minBand = Math.max(minBand, 6 * c * 2 * W), W *= 2;
    prev = c;
  });
  return { start: 6 * rev[0] * h * w, frame: 2 * vae.out_channels * 64 * h * w, minBand };
}

/** Bytes per band tensor for a banded decode within the limits, or 0 when not even the smallest band fits. */
function bandBytesFor(m: PlanModels, lim: PlanLimits, r: PlanRequest): number {
  const eb = BYTES[m.dtype], b = vaeBands(m.vae, r.height / 8, r.width / 8);
  let bytes = Math.min(lim.maxBuffer, lim.maxBinding);
  if (lim.maxBytes !== undefined) {
    const room = lim.maxBytes - baseBytes(m, r) - POOL * 4 * b.frame;
    if (room < POOL * eb * b.start) return 0;
    bytes = Math.min(bytes, Math.floor(room / (POOL * BAND_TENSORS)));
  }
  return bytes >= b.minBand * eb ? bytes : 0;
}

/** Whether one frame's whole decode fits (else it is decoded in bands). */
function wholeDecodeFits(m: PlanModels, lim: PlanLimits, r: PlanRequest): boolean {
  const eb = BYTES[m.dtype], v = vaePerFrame(m.vae, r.height / 8, r.width / 8);
  if (v.largest * eb > lim.maxBuffer) return false;
  return lim.maxBytes === undefined || baseBytes(m, r) + POOL * eb * v.live <= lim.maxBytes;
}

/** Whether one frame's whole encode fits (pix2pix; else it is encoded in bands). */
function wholeEncodeFits(m: PlanModels, lim: PlanLimits, r: PlanRequest): boolean {
  if (r.mode !== "pix2pix") return true;
  const eb = BYTES[m.dtype], v = vaeEncodePerFrame(m.vae, r.height / 8, r.width / 8);
  if (v.largest * eb > lim.maxBuffer) return false;
  return lim.maxBytes === undefined || baseBytes(m, r) + POOL * eb * v.live <= lim.maxBytes;
}

/** What a run holds whatever its cut: weights, and the video's latents with the scheduler's copies of them. */
function baseBytes(m: PlanModels, r: PlanRequest): number {
  return m.weightBytes + POOL * BYTES[m.dtype] * 8 * r.frames * m.unet.in_channels * (r.height / 8) * (r.width / 8);
}

/** Frames one UNet call may hold within the limits (0: not even one), and what limits it. */
function framesPerCall(m: PlanModels, lim: PlanLimits, r: PlanRequest): { frames: number; why: string } {
  const h = r.height / 8, w = r.width / 8, eb = BYTES[m.dtype];
  const u = unetPerFrame(m.unet, h, w), groups = guidanceGroups(r.mode);
  const cn = m.controlnet ? 2 : 1;
  let frames = Math.floor(lim.maxBuffer / (groups * u.largest * eb));
  let why = `maxBufferSize ${mb(lim.maxBuffer)}`;
  if (lim.maxBytes !== undefined) {
    const fixed = baseBytes(m, r) + POOL * eb * groups * u.anchor;
    const byMem = Math.floor((lim.maxBytes - fixed) / (POOL * eb * groups * cn * u.live));
    if (byMem < frames) frames = byMem, why = `--max-gpu-mb ${Math.round(lim.maxBytes / 2 ** 20)}`;
  }
  return { frames: Math.max(0, frames), why };
}

/** Why a request cannot run at all (even one frame per call), or null. */
function blocker(m: PlanModels, lim: PlanLimits, r: PlanRequest): string | null {
  const h = r.height / 8, w = r.width / 8, eb = BYTES[m.dtype];
  const u = unetPerFrame(m.unet, h, w), v = vaePerFrame(m.vae, h, w);
  const binding = `maxStorageBufferBindingSize (${lim.maxBinding} bytes)`;
  if (u.unit * eb > lim.maxBinding) {
    return `one frame's UNet tokens (${u.unit * eb} bytes) exceed one storage binding, ${binding}`;
  }
  if (v.unit * eb > lim.maxBinding) {
    return `one frame's VAE attention keys (${v.unit * eb} bytes) exceed one storage binding, ${binding}`;
  }
  if (3 * r.width * r.height * 4 > lim.maxBinding) {
    return `one decoded frame (${3 * r.width * r.height * 4} bytes) exceeds one storage binding, ${binding}`;
  }
  const latents = r.frames * m.unet.in_channels * h * w * eb;
  if (latents > lim.maxBinding) {
    return `the latents of ${r.frames} frames (${latents} bytes) exceed one storage binding, ${binding}`;
  }
  if (!(wholeDecodeFits(m, lim, r) && wholeEncodeFits(m, lim, r)) && bandBytesFor(m, lim, r) === 0) {
    const b = vaeBands(m.vae, h, w);
    if (lim.maxBytes === undefined) {
      return `decoding one frame in bands needs ${
        b.minBand * eb
      }-byte tensors, above maxBufferSize (${lim.maxBuffer} bytes)`;
    }
    const least = baseBytes(m, r) + POOL * (4 * b.frame + Math.max(eb * b.start, BAND_TENSORS * eb * b.minBand));
    return `decoding one frame needs about ${mb(least)} even in bands, above --max-gpu-mb ${
      Math.round(lim.maxBytes / 2 ** 20)
    }`;
  }
  if (framesPerCall(m, lim, r).frames < 1) {
    const { why } = framesPerCall(m, lim, r);
    return `one frame per UNet call does not fit ${why}`;
  }
  return null;
}

/** The largest width x height at the request's aspect ratio (multiples of 8) that runs, or null if none does. */
export function largestFitting(
  m: PlanModels,
  lim: PlanLimits,
  r: PlanRequest,
): { width: number; height: number } | null {
  const long = Math.max(r.width, r.height);
  for (let s = long - 8; s >= 8; s -= 8) {
    const width = Math.max(8, Math.floor(r.width * s / long / 8) * 8);
    const height = Math.max(8, Math.floor(r.height * s / long / 8) * 8);
    if (!blocker(m, lim, { ...r, width, height })) return { width, height };
  }
  return null;
}

/** The plan for a request, or a RequestError naming the limit it exceeds and the largest size that would fit. */
export function planRun(m: PlanModels, lim: PlanLimits, r: PlanRequest): RunPlan {
  const why = blocker(m, lim, r);
  if (why) {
    const field = /latents of/.test(why) ? "videoLength" : /max-gpu-mb/.test(why) ? "maxGpuMb" : "width";
    let hint: string;
    if (field === "videoLength") {
      const h = r.height / 8, w = r.width / 8;
      const most = Math.floor(lim.maxBinding / (m.unet.in_channels * h * w * BYTES[m.dtype]));
      hint = `at most ${most} frames fit at ${r.width}x${r.height}`;
    } else {
      const fit = largestFitting(m, lim, r);
      hint = fit ? `the largest size that fits is ${fit.width}x${fit.height}` : "no size fits";
    }
    throw new RequestError(field, `${r.width}x${r.height}, ${r.frames} frames cannot run on this GPU: ${why}; ${hint}`);
  }
  const h = r.height / 8, w = r.width / 8, eb = BYTES[m.dtype];
  const u = unetPerFrame(m.unet, h, w), v = vaePerFrame(m.vae, h, w), groups = guidanceGroups(r.mode);
  const fit = framesPerCall(m, lim, r);
  // One call holds all frames when the chunk covers them, else the anchor and then chunk - 1 frames per call
  // (pipeline/modes/common.ts framesInChunks).
  const callFrames = (c: number) => c >= r.frames ? r.frames : c - 1;
  let chunkSize = Math.max(2, r.chunkSize ?? r.frames), limitedBy = "";
  if (callFrames(chunkSize) > fit.frames) {
    chunkSize = Math.max(2, Math.min(fit.frames + 1, r.frames - 1));
    limitedBy = ` (limited by ${fit.why})`;
  }
  const perCall = callFrames(chunkSize);
  const cn = m.controlnet ? 2 : 1;
  const unetPeak = POOL * eb * (groups * perCall * cn * u.live + (chunkSize < r.frames ? groups * u.anchor : 0));
  const whole = wholeDecodeFits(m, lim, r);
  const decodeBandBytes = whole ? undefined : bandBytesFor(m, lim, r);
  const encodeBandBytes = wholeEncodeFits(m, lim, r) ? undefined : bandBytesFor(m, lim, r);
  const bands = vaeBands(m.vae, h, w);
  const banded = (bytes: number) => POOL * (4 * bands.frame + Math.max(eb * bands.start, BAND_TENSORS * bytes));
  const vaePeak = Math.max(
    decodeBandBytes === undefined ? POOL * eb * v.live : banded(decodeBandBytes),
    r.mode !== "pix2pix"
      ? 0
      : encodeBandBytes === undefined
      ? POOL * eb * vaeEncodePerFrame(m.vae, h, w).live
      : banded(encodeBandBytes),
  );
  const peakBytes = Math.round(baseBytes(m, r) + Math.max(unetPeak, vaePeak));
  const split = groups * perCall * u.largest * eb > lim.maxBinding || (whole && v.largest * eb > lim.maxBinding);
  const summary = [
    chunkSize >= r.frames
      ? `all ${r.frames} frames in one UNet call${limitedBy}`
      : `${perCall} frame${
        perCall > 1 ? "s" : ""
      } per UNet call after the anchor (chunk size ${chunkSize})${limitedBy}`,
    decodeBandBytes === undefined
      ? `VAE decode 1 frame at a time`
      : `VAE decode 1 frame at a time in bands of rows (tensors <= ${mb(decodeBandBytes)}; exact)`,
    ...(encodeBandBytes === undefined
      ? []
      : [`VAE encode in bands of rows (tensors <= ${mb(encodeBandBytes)}; exact)`]),
    split
      ? `ops split past ${mb(lim.maxBinding)} bindings`
      : `no op needs splitting (bindings <= ${mb(lim.maxBinding)})`,
    `estimated peak ${mb(peakBytes)}${lim.maxBytes !== undefined ? ` of ${mb(lim.maxBytes)}` : ""}`,
  ].join("; ");
  return { chunkSize, decodeBatch: 1, decodeBandBytes, encodeBandBytes, peakBytes, summary };
}

/** Models as the planner sees them, from their configs alone: the weights' bytes as loaded (the text encoder's
 *  embedding tables stay on the host). */
export function planModelsOf(
  unet: UNetConfig,
  vae: VAEConfig,
  textEncoder: ClipTextConfig,
  dtype: DType,
  controlnet?: ControlNetConfig,
): PlanModels {
  let n = 0;
  const maps = [unetShapes(unet), vaeShapes(vae), clipTextShapes(textEncoder)];
  if (controlnet) maps.push(controlnetShapes(controlnet));
  for (const m of maps) {
    for (const [name, shape] of m) if (!name.includes(".embeddings.")) n += shape.reduce((p, d) => p * d, 1);
  }
  return { unet, vae, controlnet: !!controlnet, dtype, weightBytes: n * BYTES[dtype] };
}

/** The built-in demo model as the planner sees it for `mode` (pix2pix's UNet, the control modes' ControlNet), so
 *  its requests are planned (and refused) at submission. */
export function demoPlanModels(dtype: DType, mode: Mode = "text2video"): PlanModels {
  const unet = mode === "pix2pix" ? DEMO_PIX2PIX_UNET : DEMO_UNET;
  const cn = CONTROL_MODES.includes(mode) ? DEMO_CONTROLNET : undefined;
  return planModelsOf(unet, DEMO_VAE, DEMO_TEXT_ENCODER, dtype, cn);
}

const folderConfigs = new Map<string, { stamp: string; configs: Record<string, unknown> | null }>();

/** A component's config.json, or null when it is not there or not JSON (the run reports that, with the field). */
function readConfig(path: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(Deno.readTextFileSync(path));
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * A local diffusers pipeline folder as the planner sees it (its configs only, no weights read), so a server refuses
 * a request that cannot fit at submission for any local model, not only the demo. `controlnetDir` is a ControlNet
 * folder (config.json). undefined when the configs are not all there (a single-file checkpoint, a hub id not yet
 * downloaded): such a run is planned when its models are loaded, still before any GPU work.
 */
export function folderPlanModels(dir: string, dtype: DType, controlnetDir?: string): PlanModels | undefined {
  const files = ["unet", "vae", "text_encoder"].map((c) => `${dir}/${c}/config.json`);
  if (controlnetDir) files.push(`${controlnetDir}/config.json`);
  // Read once per folder; a config edited on disk is read again (its mtime or size changes).
  const stamp = files.map((f) => {
    try {
      const st = Deno.statSync(f);
      return `${st.mtime?.getTime()}:${st.size}`;
    } catch {
      return "-";
    }
  }).join(",");
  const key = files.join("|");
  let hit = folderConfigs.get(key);
  if (!hit || hit.stamp !== stamp) {
    const [unet, vae, te, cn] = files.map(readConfig);
    const ok = unet && vae && te && (!controlnetDir || cn);
    hit = { stamp, configs: ok ? { unet, vae, te, cn } : null };
    folderConfigs.set(key, hit);
  }
  const c = hit.configs;
  if (!c) return undefined;
  try {
    return planModelsOf(
      c.unet as UNetConfig,
      c.vae as VAEConfig,
      c.te as ClipTextConfig,
      dtype,
      controlnetDir ? c.cn as ControlNetConfig : undefined,
    );
  } catch {
    return undefined; // a config the loader will refuse with a clear error; not the planner's to judge
  }
}
