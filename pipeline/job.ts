// One job = one video: validate the request (defaults per mode, errors naming the field), resolve and load the
// models through the shared cache, decode and annotate the input video, run the mode, encode the output.
// The CLI (main.ts) and the server (routes/) both call runJob.
import { join, resolve as resolvePath } from "node:path";
import type { Device, DType } from "./gpu/device.ts";
import {
  CONTENT_TYPES,
  type Format,
  type JobProgress,
  type JobRequest,
  type JobResult,
  type Mode,
  MODES,
  type Precision,
  RequestError,
} from "./job_types.ts";
import { type DecodeOptions, decodeVideo } from "./media/decode.ts";
import { encodeVideo } from "./media/encode.ts";
import { floatToFrames, type Frames } from "./media/frames.ts";
import type { ControlNetSpec, Lease, ModelCache, SDSpec } from "./model_cache.ts";
import type { ControlNet } from "./models/controlnet.ts";
import type { StableDiffusion } from "./models/sd.ts";
import { Cancelled, type RunHooks, scaleStepIndex, SeededNoise, type StepInfo } from "./modes/common.ts";
import { controlVideo } from "./modes/controlnet_video.ts";
import { pix2pix } from "./modes/pix2pix.ts";
import { text2video } from "./modes/text2video.ts";
import { HubError, type HubOptions, resolveModel } from "./weights/hub.ts";
import { DEMO_MODEL } from "../fixtures/demo_model.ts";

export interface JobEnv {
  dev: Device;
  models: ModelCache;
  /** Folders searched for a model given by name (`--model my-model` -> <root>/my-model) before the hub. */
  modelRoots?: string[];
  /** Hub options (endpoint, cache folder, token, offline) for models given as hub ids. */
  hub?: HubOptions;
}

export interface JobHooks {
  onProgress?(p: JobProgress): void;
  signal?: AbortSignal;
  /** The generated frames before encoding: NHWC float32 in [0, 1] (for tests and previews). */
  onFrames?(frames: Float32Array, info: { count: number; width: number; height: number; fps: number }): void;
}

// ---------------------------------------------------------------------------------------------------------------
// Defaults

/** Modes whose input is a video. */
export const VIDEO_MODES: readonly Mode[] = ["pix2pix", "pose", "canny", "depth"];
export const CONTROL_MODES: readonly Mode[] = ["pose", "canny", "depth"];

/** ControlNets used when a real base model is configured but no --controlnet (SPEC §3; O used fusing's copy of
 * the openpose weights, which lllyasviel publishes under this id). */
export const DEFAULT_CONTROLNETS: Record<string, string> = {
  pose: "lllyasviel/sd-controlnet-openpose",
  canny: "lllyasviel/sd-controlnet-canny",
  depth: "lllyasviel/sd-controlnet-depth",
};
export const DEFAULT_PIX2PIX = "timbrooks/instruct-pix2pix";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The base model when the request names none: $ZEROVID_PIX2PIX_MODEL for pix2pix and $ZEROVID_MODEL for the others;
 * with nothing configured at all, the built-in demo model (pix2pix falls back to timbrooks/instruct-pix2pix only
 * when $ZEROVID_MODEL shows that real models are in use).
 */
export function defaultModel(mode: Mode): string {
  const base = env("ZEROVID_MODEL");
  if (mode === "pix2pix") return env("ZEROVID_PIX2PIX_MODEL") ?? (base ? DEFAULT_PIX2PIX : DEMO_MODEL);
  return base ?? DEMO_MODEL;
}

/** t0/t1 for a step count: 44 and 47 of 50, scaled, and kept inside 0 <= t0 < t1 < steps. */
export function defaultT0T1(steps: number): { t0: number; t1: number } {
  const t1 = Math.max(1, Math.min(scaleStepIndex(47, steps), steps - 1));
  const t0 = Math.max(0, Math.min(scaleStepIndex(44, steps), t1 - 1));
  return { t0, t1 };
}

type Kind = "int" | "number" | "string" | "bool" | "bytes";

interface FieldSpec {
  kind: Kind;
  /** Modes the field applies to (default: all). */
  modes?: readonly Mode[];
  min?: number;
  max?: number;
  /** Allowed string values. */
  values?: readonly string[];
  /** What is expected, for messages. */
  expect?: string;
}

const T2V: readonly Mode[] = ["text2video"];

export const FIELDS: Record<Exclude<keyof JobRequest, "mode">, FieldSpec> = {
  model: { kind: "string" },
  config: { kind: "string" },
  controlnet: { kind: "string", modes: CONTROL_MODES },
  prompt: { kind: "string" },
  negativePrompt: { kind: "string" },
  video: { kind: "bytes", modes: VIDEO_MODES },
  videoName: { kind: "string", modes: VIDEO_MODES },
  videoLength: { kind: "int", min: 1, max: 1024 },
  width: { kind: "int", min: 64, max: 2048, expect: "a multiple of 8" },
  height: { kind: "int", min: 64, max: 2048, expect: "a multiple of 8" },
  resolution: { kind: "int", min: 64, max: 2048, modes: VIDEO_MODES },
  steps: { kind: "int", min: 1, max: 1000 },
  guidanceScale: { kind: "number", min: 0, max: 100 },
  imageGuidanceScale: { kind: "number", min: 0, max: 100, modes: ["pix2pix"] },
  controlScale: { kind: "number", min: 0, max: 10, modes: CONTROL_MODES },
  seed: { kind: "int", min: 0, max: 0xffffffff },
  t0: { kind: "int", min: 0, max: 999, modes: T2V },
  t1: { kind: "int", min: 0, max: 999, modes: T2V },
  motionX: { kind: "number", min: -512, max: 512, modes: T2V },
  motionY: { kind: "number", min: -512, max: 512, modes: T2V },
  chunkSize: { kind: "int", min: 2, max: 1024 },
  fps: { kind: "number", min: -1, max: 120 },
  start: { kind: "number", min: 0, max: 86400, modes: VIDEO_MODES },
  end: { kind: "number", min: -1, max: 86400, modes: VIDEO_MODES },
  precision: { kind: "string", values: ["f32", "f16"] },
  format: { kind: "string", values: ["mp4", "gif", "webm"] },
  lowThreshold: { kind: "number", min: 0, max: 255, modes: ["canny"] },
  highThreshold: { kind: "number", min: 0, max: 255, modes: ["canny"] },
  poseModel: { kind: "string", modes: ["pose"] },
  depthModel: { kind: "string", modes: ["depth"] },
  smoothBackground: { kind: "bool", modes: T2V },
  smoothStrength: { kind: "number", min: 0, max: 1, modes: T2V },
  saliencyModel: { kind: "string", modes: T2V },
};

/** Per-mode defaults (SPEC §1.9, §2, §3 and the official app). */
export const MODE_DEFAULTS: Record<Mode, Partial<JobRequest>> = {
  text2video: {
    videoLength: 8,
    width: 512,
    height: 512,
    steps: 50,
    guidanceScale: 7.5,
    motionX: 12,
    motionY: 12,
    fps: 4,
    chunkSize: 8,
    format: "mp4",
  },
  // O: Euler-a, 50 steps, guidance 7.5, image guidance 1.0, frames at [start, end) resampled to fps (-1 = source).
  pix2pix: {
    steps: 50,
    guidanceScale: 7.5,
    imageGuidanceScale: 1.0,
    resolution: 512,
    start: 0,
    end: -1,
    chunkSize: 8,
    format: "mp4",
  },
  // O: skeleton videos resampled to 4 fps, written as a GIF at 4 fps.
  pose: { steps: 20, guidanceScale: 9.0, controlScale: 1.0, resolution: 512, fps: 4, chunkSize: 8, format: "gif" },
  // O: every source frame at the source fps.
  canny: {
    steps: 20,
    guidanceScale: 9.0,
    controlScale: 1.0,
    resolution: 512,
    lowThreshold: 100,
    highThreshold: 200,
    chunkSize: 8,
    format: "mp4",
  },
  depth: { steps: 20, guidanceScale: 9.0, controlScale: 1.0, resolution: 512, chunkSize: 8, format: "mp4" },
};

/**
 * The demo model's defaults where they differ: its UNet is sized for 64x64 frames (diffusers' default size is
 * unet.sample_size * 8), and its output is noise whatever the step count, so `deno task demo` stays short on a CPU.
 */
export const DEMO_DEFAULTS: Record<Mode, Partial<JobRequest>> = {
  text2video: { width: 64, height: 64, steps: 10 },
  pix2pix: { resolution: 64, steps: 10 },
  pose: { resolution: 64, steps: 10 },
  canny: { resolution: 64, steps: 10 },
  depth: { resolution: 64, steps: 10 },
};

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return String(v);
}

function checkField(field: string, spec: FieldSpec, v: unknown): void {
  const range = spec.min !== undefined && spec.max !== undefined ? ` in [${spec.min}, ${spec.max}]` : "";
  switch (spec.kind) {
    case "int":
      if (typeof v !== "number" || !Number.isInteger(v)) {
        throw new RequestError(field, `expected an integer${range}, got ${describe(v)}`);
      }
      break;
    case "number":
      if (typeof v !== "number" || !Number.isFinite(v)) {
        throw new RequestError(field, `expected a number${range}, got ${describe(v)}`);
      }
      break;
    case "string":
      if (typeof v !== "string") throw new RequestError(field, `expected a string, got ${describe(v)}`);
      if (spec.values && !spec.values.includes(v)) {
        throw new RequestError(field, `expected one of ${spec.values.join(", ")}, got ${describe(v)}`);
      }
      return;
    case "bool":
      if (typeof v !== "boolean") throw new RequestError(field, `expected true or false, got ${describe(v)}`);
      return;
    case "bytes":
      if (!(v instanceof Uint8Array)) throw new RequestError(field, `expected the file's bytes, got ${typeof v}`);
      if (v.length === 0) throw new RequestError(field, "is empty (0 bytes)");
      return;
  }
  const n = v as number;
  if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
    throw new RequestError(field, `expected ${spec.kind === "int" ? "an integer" : "a number"}${range}, got ${n}`);
  }
}

/**
 * Checks a request and fills in every default for its mode (model, seed, t0/t1, ...). Throws RequestError naming
 * the first bad field and what was expected. `device` decides the default precision (f16 with shader-f16).
 */
export function validateRequest(req: JobRequest, device?: { f16: boolean }): JobRequest {
  if (req === null || typeof req !== "object") throw new RequestError("mode", "expected a request object");
  const mode = req.mode;
  if (!MODES.includes(mode)) {
    throw new RequestError("mode", `expected one of ${MODES.join(", ")}, got ${describe(mode)}`);
  }
  const out: Record<string, unknown> = { mode };
  for (const [field, v] of Object.entries(req)) {
    if (field === "mode" || v === undefined || v === null) continue;
    const spec = (FIELDS as Record<string, FieldSpec>)[field];
    if (!spec) throw new RequestError(field, "unknown field");
    if (spec.modes && !spec.modes.includes(mode)) {
      throw new RequestError(field, `does not apply to mode ${mode} (only ${spec.modes.join(", ")})`);
    }
    checkField(field, spec, v);
    out[field] = v;
  }
  const model = (out.model as string | undefined) ?? defaultModel(mode);
  const demo = model === DEMO_MODEL ? DEMO_DEFAULTS[mode] : {};
  const r = { ...MODE_DEFAULTS[mode], ...demo, ...out, model } as JobRequest;

  if (typeof r.prompt !== "string") throw new RequestError("prompt", "is required (the text to generate from)");
  r.negativePrompt ??= "";
  if (CONTROL_MODES.includes(mode)) {
    r.controlnet ??= r.model === DEMO_MODEL ? DEMO_MODEL : DEFAULT_CONTROLNETS[mode];
  }
  if (r.config !== undefined && r.model === DEMO_MODEL) {
    throw new RequestError("config", "does not apply to the built-in demo model");
  }
  r.seed ??= crypto.getRandomValues(new Uint32Array(1))[0];
  r.precision ??= (device?.f16 ? "f16" : "f32") as Precision;

  const isVideo = VIDEO_MODES.includes(mode);
  if (isVideo && !r.video) throw new RequestError("video", `mode ${mode} needs an input video`);
  if (isVideo) r.videoName ??= "video";

  for (const f of ["width", "height"] as const) {
    const v = r[f];
    if (v !== undefined && v % 8 !== 0) throw new RequestError(f, `expected a multiple of 8, got ${v}`);
  }
  if (isVideo && (r.width === undefined) !== (r.height === undefined)) {
    const missing = r.width === undefined ? "width" : "height";
    throw new RequestError(missing, "give both width and height for an exact frame size, or neither (resolution)");
  }

  if (mode === "text2video") {
    if (r.steps! < 2) throw new RequestError("steps", `text2video needs at least 2 steps, got ${r.steps}`);
    const d = defaultT0T1(r.steps!);
    r.t1 ??= r.t0 !== undefined && r.t0 >= d.t1 ? Math.min(r.t0 + 1, r.steps! - 1) : d.t1;
    r.t0 ??= Math.min(d.t0, r.t1 - 1);
    if (!(0 <= r.t0 && r.t0 < r.t1 && r.t1 < r.steps!)) {
      const bad = r.t1 >= r.steps! || (out.t0 === undefined && out.t1 !== undefined) ? "t1" : "t0";
      throw new RequestError(bad, `need 0 <= t0 < t1 < steps (${r.steps}), got t0=${r.t0}, t1=${r.t1}`);
    }
    if (r.smoothBackground) {
      r.smoothStrength ??= 0.4; // O's smooth_bg_strength
      if (!r.saliencyModel) {
        throw new RequestError("saliencyModel", "background smoothing needs a salient-object model (an .onnx file)");
      }
    } else if (r.smoothStrength !== undefined || r.saliencyModel !== undefined) {
      const f = r.smoothStrength !== undefined ? "smoothStrength" : "saliencyModel";
      throw new RequestError(f, "only applies with smoothBackground");
    }
  }
  if (r.fps !== undefined && r.fps !== -1 && r.fps < 0.1) {
    throw new RequestError("fps", `expected 0.1 to 120 frames per second${isVideo ? " (or -1: the source's)" : ""}`);
  }
  if (r.fps === -1 && !isVideo) throw new RequestError("fps", "expected 0.1 to 120 frames per second, got -1");
  if (isVideo && r.end !== undefined && r.end !== -1) {
    if (r.end < 0) throw new RequestError("end", `expected seconds > start or -1 (the whole clip), got ${r.end}`);
    if (r.end <= (r.start ?? 0)) {
      throw new RequestError("end", `must be after start (${r.start ?? 0} s), got ${r.end} s`);
    }
  }
  if (mode === "canny" && r.lowThreshold! > r.highThreshold!) {
    throw new RequestError("lowThreshold", `must not exceed highThreshold (${r.highThreshold}), got ${r.lowThreshold}`);
  }
  if (mode === "depth" && !r.depthModel) {
    throw new RequestError("depthModel", "depth mode needs a MiDaS/DPT depth model (an .onnx file)");
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// Model resolution

function fieldError(field: string, e: unknown): unknown {
  if (e instanceof HubError && !/cannot reach/.test(e.message)) return new RequestError(field, e.message);
  return e;
}

type Location = Awaited<ReturnType<typeof resolveModel>>;

/** A model argument -> a local location: an existing path, a name under a model root, or a hub id. */
async function locate(env: JobEnv, spec: string, field: string, hubOpts: HubOptions = {}): Promise<Location> {
  try {
    const candidates = [spec];
    if (!spec.startsWith("/") && !spec.startsWith(".")) {
      for (const root of env.modelRoots ?? []) candidates.push(join(root, spec));
    }
    for (const c of candidates) {
      if (await Deno.stat(c).then(() => true, () => false)) return await resolveModel(c);
    }
    if (spec.startsWith("/") || spec.startsWith(".") || /\.safetensors$/i.test(spec)) {
      throw new RequestError(field, `${spec}: no such file or folder`);
    }
    return await resolveModel(spec, { ...env.hub, ...hubOpts });
  } catch (e) {
    throw fieldError(field, e);
  }
}

async function resolveSD(env: JobEnv, r: JobRequest, hubOpts: HubOptions): Promise<SDSpec> {
  const variant = r.precision === "f16" ? "fp16" : undefined;
  if (r.model === DEMO_MODEL) return { kind: "demo", variant: r.mode === "pix2pix" ? "pix2pix" : "sd" };
  const loc = await locate(env, r.model!, "model", { ...hubOpts, variant });
  if (loc.kind === "diffusers") {
    if (r.config !== undefined) throw new RequestError("config", "only applies to a single-file (.safetensors) model");
    return { kind: "diffusers", dir: loc.dir, variant };
  }
  if (loc.kind === "model") {
    throw new RequestError("model", `${r.model} holds one model (config.json), not a pipeline (model_index.json)`);
  }
  let configDir: string | undefined;
  if (r.config !== undefined) {
    const c = await locate(env, r.config, "config", { ...hubOpts, configOnly: true });
    if (c.kind === "single_file") throw new RequestError("config", "expected a diffusers folder or hub id, got a file");
    configDir = c.dir;
  }
  return { kind: "single_file", path: loc.path, configDir, variant };
}

async function resolveControlNet(env: JobEnv, r: JobRequest, hubOpts: HubOptions): Promise<ControlNetSpec> {
  if (r.controlnet === DEMO_MODEL) return { kind: "demo" };
  const loc = await locate(env, r.controlnet!, "controlnet", {
    ...hubOpts,
    variant: r.precision === "f16" ? "fp16" : undefined,
  });
  if (loc.kind === "model") return { kind: "dir", dir: loc.dir };
  if (loc.kind === "diffusers") {
    // A pipeline folder with a controlnet/ component.
    if (await Deno.stat(join(loc.dir, "controlnet", "config.json")).then(() => true, () => false)) {
      return { kind: "dir", dir: join(loc.dir, "controlnet") };
    }
    throw new RequestError("controlnet", `${r.controlnet} is a pipeline folder without a controlnet/ component`);
  }
  throw new RequestError("controlnet", "single-file ControlNets are not supported: give a diffusers ControlNet folder");
}

// ---------------------------------------------------------------------------------------------------------------
// Running

/** [F, H, W, 3] bytes -> [F, 3, H, W] floats in [0, 1]. */
export function framesToNCHW(f: Frames): Float32Array {
  const { count: F, height: H, width: W, data } = f;
  const out = new Float32Array(F * 3 * H * W);
  const plane = H * W;
  for (let k = 0; k < F; k++) {
    const src = k * plane * 3, dst = k * plane * 3;
    for (let i = 0; i < plane; i++) {
      out[dst + i] = data[src + 3 * i] / 255;
      out[dst + plane + i] = data[src + 3 * i + 1] / 255;
      out[dst + 2 * plane + i] = data[src + 3 * i + 2] / 255;
    }
  }
  return out;
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new Cancelled();
}

/** The request as run, without the video bytes: every default filled in, so the job can be repeated. */
export function resolvedParams(r: JobRequest): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (k !== "video" && v !== undefined) p[k] = v;
  return p;
}

export async function runJob(env: JobEnv, req: JobRequest, hooks: JobHooks = {}): Promise<JobResult> {
  const r = validateRequest(req, env.dev);
  const started = performance.now();
  const timings: Record<string, number> = {};
  const add = (k: string, ms: number) => timings[k] = (timings[k] ?? 0) + ms / 1000;
  const report = (p: JobProgress) => hooks.onProgress?.(p);
  const timed = async <T>(phase: string, fn: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      add(phase, performance.now() - t);
    }
  };
  const signal = hooks.signal;
  const dtype: DType = env.dev.dtypeFor(r.precision as DType);
  const hubOpts: HubOptions = {
    onProgress: (p) => report({ stage: "download", step: p.loaded, total: p.total ?? 0 }),
  };
  const leases: Lease<StableDiffusion | ControlNet>[] = [];
  try {
    // Input video first: a bad file fails before any model is downloaded or loaded.
    let input: Frames | null = null;
    if (r.video) {
      report({ stage: "decode_video", step: 0, total: 1 });
      const opts: DecodeOptions = { start: r.start, end: r.end, fps: r.fps, maxFrames: r.videoLength };
      if (r.mode === "pix2pix") opts.fps ??= -1;
      if (r.width !== undefined && r.height !== undefined) {
        opts.width = r.width;
        opts.height = r.height;
      } else opts.resolution = r.resolution;
      input = await timed("decode_video", () =>
        decodeVideo(r.video!, opts, r.videoName).catch((e) => {
          throw new RequestError("video", (e as Error).message);
        }));
      report({ stage: "decode_video", step: 1, total: 1, frames: input.count });
      checkAborted(signal);
    }

    // Models.
    report({ stage: "load", step: 0, total: 1 });
    const sdSpec = await timed("resolve", () => resolveSD(env, r, hubOpts));
    const cnSpec = CONTROL_MODES.includes(r.mode)
      ? await timed("resolve", () => resolveControlNet(env, r, hubOpts))
      : null;
    checkAborted(signal);
    const sdLease = await timed("load", () => env.models.stableDiffusion(sdSpec, dtype).catch(loadError("model")));
    leases.push(sdLease);
    const sd = sdLease.model;
    let cn: ControlNet | null = null;
    if (cnSpec) {
      const l = await timed("load", () => env.models.controlNet(cnSpec, dtype).catch(loadError("controlnet")));
      leases.push(l);
      cn = l.model;
    }
    report({ stage: "load", step: 1, total: 1 });
    checkModels(r.mode, sd, cn);
    checkAborted(signal);

    // The mode, with its progress attributed to phases (time since the previous report goes to this stage).
    const noise = new SeededNoise(r.seed!);
    let last = performance.now();
    const tick = (p: StepInfo) => {
      const now = performance.now();
      add(p.stage, now - last);
      last = now;
      report(p);
    };
    const modeHooks: RunHooks = { signal, onProgress: tick };
    let frames: Float32Array, F: number, H: number, W: number, fps: number;
    if (r.mode === "text2video") {
      [F, H, W, fps] = [r.videoLength!, r.height!, r.width!, r.fps!];
      last = performance.now();
      frames = (await text2video(
        sd,
        {
          prompt: r.prompt,
          negativePrompt: r.negativePrompt,
          videoLength: F,
          width: W,
          height: H,
          steps: r.steps!,
          guidanceScale: r.guidanceScale!,
          t0: r.t0,
          t1: r.t1,
          motionX: r.motionX!,
          motionY: r.motionY!,
          chunkSize: r.chunkSize,
          smoothing: r.smoothBackground
            ? { saliency: await saliencyFn(r.saliencyModel!, tick), strength: r.smoothStrength! }
            : undefined,
        },
        noise,
        modeHooks,
      )).frames;
    } else {
      const v = input!;
      [F, H, W, fps] = [v.count, v.height, v.width, v.fps];
      if (H % 8 || W % 8) throw new RequestError("video", `frames of ${W}x${H} are not multiples of 8`);
      if (r.mode === "pix2pix") {
        last = performance.now();
        frames = (await pix2pix(
          sd,
          { data: framesToNCHW(v), frames: F, height: H, width: W },
          {
            prompt: r.prompt,
            negativePrompt: r.negativePrompt,
            steps: r.steps!,
            guidanceScale: r.guidanceScale!,
            imageGuidanceScale: r.imageGuidanceScale!,
            chunkSize: r.chunkSize,
          },
          noise,
          modeHooks,
        )).frames;
      } else {
        report({ stage: "annotate", step: 0, total: 1, frames: F });
        const control = await timed(
          "annotate",
          () => annotate(env.dev, r, v).catch(onnxError(r.mode === "depth" ? "depthModel" : "poseModel")),
        );
        report({ stage: "annotate", step: 1, total: 1, frames: F });
        checkAborted(signal);
        last = performance.now();
        frames = (await controlVideo(
          sd,
          cn!,
          { data: control, frames: F, height: H, width: W },
          {
            prompt: r.prompt,
            negativePrompt: r.negativePrompt,
            steps: r.steps!,
            guidanceScale: r.guidanceScale!,
            controlScale: r.controlScale!,
            chunkSize: r.chunkSize,
          },
          noise,
          modeHooks,
        )).frames;
      }
    }
    for (const l of leases.splice(0)) l.release();
    hooks.onFrames?.(frames, { count: F, width: W, height: H, fps });
    checkAborted(signal);

    // Output file.
    const format = r.format as Format;
    report({ stage: "encode_video", step: 0, total: F });
    const bytes = await timed("encode_video", () =>
      encodeVideo(floatToFrames(frames, F, H, W, fps), format, {
        onProgress: (f) => report({ stage: "encode_video", step: Math.round(f * F), total: F }),
      }));
    timings.total = (performance.now() - started) / 1000;
    return {
      bytes,
      format,
      contentType: CONTENT_TYPES[format],
      params: resolvedParams(r),
      frames: F,
      width: W,
      height: H,
      fps,
      timings,
    };
  } finally {
    for (const l of leases) l.release();
  }
}

/** A model of the wrong kind for the mode fails here with a clear message, not with a shape error mid-run. */
function checkModels(mode: Mode, sd: StableDiffusion, cn: ControlNet | null): void {
  const latent = sd.vae.cfg.latent_channels, inC = sd.unet.cfg.in_channels;
  if (mode !== "pix2pix" && inC !== latent) {
    throw new RequestError(
      "model",
      `${sd.source} has a ${inC}-channel UNet (an Instruct-Pix2Pix model?): ${mode} needs a plain Stable Diffusion model`,
    );
  }
  if (!cn) return;
  const u = sd.unet.cfg, c = cn.cfg;
  const cross = (x: number | number[]) => Array.isArray(x) ? x[0] : x;
  if (
    cross(u.cross_attention_dim) !== cross(c.cross_attention_dim) ||
    u.block_out_channels.join() !== c.block_out_channels.join()
  ) {
    throw new RequestError(
      "controlnet",
      `does not fit the base model (ControlNet channels [${c.block_out_channels}], text dim ${
        cross(c.cross_attention_dim)
      }; UNet [${u.block_out_channels}], ${cross(u.cross_attention_dim)})`,
    );
  }
}

/** Weight files that do not fit (missing tensors, wrong shapes, bad JSON) are bad input, not a crash. */
function loadError(field: string): (e: unknown) => never {
  return (e) => {
    const name = (e as Error)?.name;
    if (name === "WeightError" || name === "TokenizerError" || name === "SchedulerError" || name === "NotFound") {
      throw new RequestError(field, (e as Error).message);
    }
    if (e instanceof Error && /^model not found/.test(e.message)) throw new RequestError(field, e.message);
    throw e;
  };
}

/** An ONNX file that is not a usable model (not ONNX, wrong inputs or outputs) is bad input for its field. */
function onnxError(field: string): (e: unknown) => never {
  return (e) => {
    if ((e as Error)?.name === "OnnxError") throw new RequestError(field, (e as Error).message);
    throw e;
  };
}

/** Control images [F, 3, H, W] in [0, 1] for a ControlNet mode. */
async function annotate(dev: Device, r: JobRequest, frames: Frames): Promise<Float32Array> {
  switch (r.mode) {
    case "canny": {
      const { cannyVideo } = await import("./annotators/canny.ts");
      return await cannyVideo(dev, frames, r.lowThreshold!, r.highThreshold!);
    }
    case "depth": {
      const { depthVideo } = await import("./annotators/depth.ts");
      return await depthVideo(frames, await localFile(r.depthModel!, "depthModel"));
    }
    case "pose": {
      if (!r.poseModel) return framesToNCHW(frames); // a rendered skeleton video is the control itself (SPEC §3)
      const path = await localFile(r.poseModel, "poseModel");
      const { poseVideo } = await import("./annotators/pose.ts");
      return await poseVideo(frames, path);
    }
    default:
      throw new Error(`annotate: mode ${r.mode} has no control images`);
  }
}

/** Salient-object masks of decoded frames for background smoothing (SPEC §1.7), from an ONNX model. */
async function saliencyFn(
  modelPath: string,
  report: (p: JobProgress) => void,
): Promise<(frames: Float32Array, count: number, height: number, width: number) => Promise<Float32Array>> {
  const path = await localFile(modelPath, "saliencyModel");
  const { saliencyMasks } = await import("./annotators/saliency.ts");
  return async (frames, count, height, width) => {
    report({ stage: "saliency", step: 0, total: 1, frames: count });
    const masks = await saliencyMasks(floatToFrames(frames, count, height, width, 1), path).catch(
      onnxError("saliencyModel"),
    );
    report({ stage: "saliency", step: 1, total: 1, frames: count });
    return masks;
  };
}

async function localFile(path: string, field: string): Promise<string> {
  const st = await Deno.stat(path).catch(() => null);
  if (!st?.isFile) throw new RequestError(field, `${path}: no such file`);
  return resolvePath(path);
}
