// Text2Video-Zero text-to-video (METHOD §1): DDIM on the anchor frame to T1 and T0, motion-field warp of its T0
// latent, DDPM forward jump back to T1, then DDIM with cross-frame attention and classifier-free guidance.
//
// Long videos, done right: every denoising step first runs the anchor (frame 0, one sample per guidance group) and
// records its self-attention keys/values; the other frames then run in chunks that attend to those recorded K/V.
// Memory is bounded by the chunk size, no frame is computed twice, and the frames do not depend on the chunking
// (noise is addressed by global frame index). When all frames fit in one chunk they run in one call instead.
import type { Tensor } from "../gpu/tensor.ts";
import { consume, empty, scoped, upload, withTensorScope } from "../gpu/tensor.ts";
import type { AttnContext } from "../models/blocks.ts";
import type { StableDiffusion } from "../models/sd.ts";
import { DDIM } from "../schedulers/ddim.ts";
import { ddpmForward } from "../schedulers/ddpm_forward.ts";
import { cfg } from "../schedulers/guidance.ts";
import { concat, gather0 } from "../ops/layout.ts";
import { free } from "../models/layers.ts";
import {
  encodePrompts,
  frameNoise,
  framesInChunks,
  type NoiseSource,
  Pacer,
  type RunHooks,
  scaleStepIndex,
} from "./common.ts";
import { decodeFrames, precompileDecode } from "./decode.ts";
import { warpLatents } from "./motion.ts";
import { blendBackground, type SaliencyFn } from "./smoothing.ts";
import type { Embedding } from "../weights/embeddings.ts";

export interface Text2VideoParams {
  prompt: string;
  negativePrompt?: string;
  videoLength: number;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  /** DDIM step indices counted from the end (defaults 44 and 47 of 50, scaled to other step counts). */
  t0?: number;
  t1?: number;
  motionX: number;
  motionY: number;
  /** Frames per UNet call, the anchor included (>= 2); default: all frames in one call. */
  chunkSize?: number;
  /** diffusers' frame_ids: the motion-field index of each output frame (default 0..videoLength-1). The first
   * frame is the anchor; a repeated 0 gives a second, re-noised copy of it (the reference chunking recipe). */
  frameIds?: number[];
  /** Background smoothing with a salient-object model; `strength` is the original's smooth_bg_strength (0.4). */
  smoothing?: { saliency: SaliencyFn; strength: number };
  /** Textual-inversion embeddings usable in the prompts. */
  embeddings?: readonly Embedding[];
}

export interface Text2VideoResult {
  /** [frames, height, width, 3] in [0, 1] */
  frames: Float32Array;
  /** Debug/golden outputs (only with keepStages). */
  stages?: Record<string, Float32Array | Int32Array>;
}

/** The default t0/t1 for a step count (>= 2): 44 and 47 of 50, scaled, and kept inside 0 <= t0 < t1 < steps. */
export function defaultT0T1(steps: number): { t0: number; t1: number } {
  const t1 = Math.max(1, Math.min(scaleStepIndex(47, steps), steps - 1));
  const t0 = Math.max(0, Math.min(scaleStepIndex(44, steps), t1 - 1));
  return { t0, t1 };
}

export function resolveT0T1(steps: number, t0?: number, t1?: number): { t0: number; t1: number } {
  const d = defaultT0T1(steps);
  const r = { t0: t0 ?? d.t0, t1: t1 ?? d.t1 };
  if (!Number.isInteger(r.t0) || !Number.isInteger(r.t1) || !(0 <= r.t0 && r.t0 < r.t1 && r.t1 < steps)) {
    throw new Error(`text2video: need integers 0 <= t0 < t1 < steps (${steps}); got t0=${r.t0}, t1=${r.t1}`);
  }
  return r;
}

export function checkSize(width: number, height: number): void {
  for (const [field, v] of [["width", width], ["height", height]] as const) {
    if (!Number.isInteger(v) || v < 8 || v % 8 !== 0) throw new Error(`${field} must be a multiple of 8, got ${v}`);
  }
}

export function text2video(
  sd: StableDiffusion,
  p: Text2VideoParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
  opts: { keepStages?: boolean } = {},
): Promise<Text2VideoResult> {
  return withTensorScope(sd.dev, () => text2videoScoped(sd, p, noise, hooks, opts));
}

async function text2videoScoped(
  sd: StableDiffusion,
  p: Text2VideoParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
  opts: { keepStages?: boolean } = {},
): Promise<Text2VideoResult> {
  const dev = sd.dev, dtype = sd.dtype;
  const F = p.videoLength;
  if (!Number.isInteger(F) || F < 1) throw new Error(`text2video: videoLength must be a positive integer, got ${F}`);
  checkSize(p.width, p.height);
  if (!Number.isInteger(p.steps) || p.steps < 2) {
    throw new Error(`text2video: steps must be an integer >= 2, got ${p.steps}`);
  }
  const { t0, t1 } = resolveT0T1(p.steps, p.t0, p.t1);
  const frameIds = p.frameIds ?? Array.from({ length: F }, (_, i) => i);
  if (frameIds.length !== F) throw new Error(`text2video: frameIds needs ${F} entries, got ${frameIds.length}`);
  if (p.chunkSize !== undefined && (!Number.isInteger(p.chunkSize) || p.chunkSize < 2)) {
    throw new Error(`text2video: chunkSize must be an integer >= 2, got ${p.chunkSize}`);
  }
  const h = p.height / 8, w = p.width / 8, C = sd.unet.cfg.in_channels;
  const pacer = new Pacer(dev, hooks);
  const stages: Record<string, Float32Array | Int32Array> = {};
  const keep = async (name: string, t: Tensor) => {
    if (opts.keepStages) stages[name] = await t.read();
  };

  const sched = new DDIM(sd.scheduler);
  const ts = sched.setTimesteps(p.steps);
  const N = ts.length, iT1 = N - 1 - t1, iT0 = N - 1 - t0;
  const context = encodePrompts(sd.tokenizer, sd.textEncoder, [p.negativePrompt ?? "", p.prompt], p.embeddings);
  if (opts.keepStages) {
    stages.timesteps = ts;
    stages.prompt_embeds = await context.read();
  }

  const guided = (batch: Tensor, t: number, attn: AttnContext): Tensor =>
    scoped(dev, () => cfg(sd.unet.forward({ sample: batch, timesteps: [t], context, attn }), p.guidanceScale));
  // Previews show the step's predicted clean latents (x0); `show` = [step, total] when this step has one.
  let show: [number, number] | null = null;
  /** One DDIM step of the anchor alone ([1, C, h, w]) with CFG. */
  const anchorStep = (x: Tensor, t: number): Tensor =>
    scoped(dev, () => {
      const { prev, x0 } = sched.step(guided(gather0(x, [0, 0]), t, { crossFrame: { groups: 2 } }), t, x);
      if (show) pacer.preview(x0, ...show);
      return prev;
    });
  /** One DDIM step of all frames with cross-frame attention: anchor first (recording K/V), then chunks. */
  const videoStep = (latents: Tensor, t: number): Tensor =>
    scoped(dev, () => {
      const eps = framesInChunks(
        F,
        p.chunkSize,
        2,
        1,
        (rows, [attn]) => scoped(dev, () => guided(gather0(latents, [...rows, ...rows]), t, attn)),
      );
      const { prev, x0 } = sched.step(eps, t, latents);
      if (show) pacer.preview(x0, ...show);
      return prev;
    });
  dev.precompile(() => {
    pacer.warmPreview(empty(dev, [F, C, h, w], dtype));
    const x = empty(dev, [F, C, h, w], dtype), a = gather0(x, [0]);
    anchorStep(a, ts[0]);
    if (F > 1) {
      const rest = gather0(x, frameIds.slice(1).map((_, k) => k + 1));
      ddpmForward(warpLatents(a, frameIds.slice(1), p.motionX, p.motionY), rest, 1, 2, sd.scheduler);
    }
    videoStep(x, ts[iT1]);
    precompileDecode(sd, a, pacer);
  });

  // 1-2. The anchor alone, with CFG: DDIM to T1 (kept), then on to T0.
  const z = upload(dev, noise.normal("latents", 0, C * h * w), [1, C, h, w], dtype);
  let x = z;
  let xT1: Tensor | null = null;
  const passes = p.smoothing ? 2 : 1;
  const total = iT0 + passes * (N - iT1);
  for (let i = 0; i < iT0; i++) {
    show = pacer.previewDue(i + 1, total) ? [i + 1, total] : null;
    const t = ts[i];
    x = x === z ? anchorStep(x, t) : consume(x, (x) => anchorStep(x, t));
    if (i === iT1 - 1) xT1 = gather0(x, [0]);
    await pacer.stepDone({ stage: "anchor", step: i + 1, total });
  }
  if (iT1 === 0) xT1 = gather0(z, [0]);
  const xT0 = x;
  free(z);
  await keep("x_1_t1", xT1!);
  await keep("x_1_t0", xT0);

  // 3-5. The other frames: warp the anchor's T0 latent by each frame's motion, jump forward to T1.
  let latentsT1: Tensor;
  if (F > 1) {
    const warped = warpLatents(xT0, frameIds.slice(1), p.motionX, p.motionY);
    const eps = frameNoise(dev, noise, "forward", frameIds.slice(1).map((_, k) => k + 1), [C, h, w], dtype);
    const jumped = ddpmForward(warped, eps, ts[iT0], ts[iT1], sd.scheduler);
    await keep("x_2k_t0", warped);
    await keep("x_2k_t1", jumped);
    latentsT1 = concat([xT1!.view([1, C * h * w]), jumped.view([1, (F - 1) * C * h * w])]).reshape([F, C, h, w]);
    free(warped, eps, jumped, xT1!);
  } else {
    latentsT1 = xT1!;
  }
  free(xT0);

  // 6-7. Denoise all frames from T1.
  const denoise = async (start: Tensor, pass: number): Promise<Tensor> => {
    let latents = start;
    for (let i = iT1; i < N; i++) {
      const step = iT0 + pass * (N - iT1) + i - iT1 + 1;
      show = pacer.previewDue(step, total) ? [step, total] : null;
      const t = ts[i];
      latents = latents === start ? videoStep(latents, t) : consume(latents, (l) => videoStep(l, t));
      await pacer.stepDone({ stage: pass ? "smooth" : "denoise", step, total });
    }
    show = null;
    await pacer.previewsDone();
    return latents;
  };
  let final = await denoise(latentsT1, 0);
  let frames = await decodeFrames(sd, final, pacer);

  // Background smoothing (METHOD §1.7): blend each frame's background at T1 with the warped anchor background,
  // using salient-object masks of the first result, then denoise again from T1.
  if (p.smoothing && F > 1) {
    const masks = await p.smoothing.saliency(frames, F, p.height, p.width);
    const blended = await blendBackground(latentsT1, masks, frameIds, p.motionX, p.motionY, p.smoothing.strength);
    free(final);
    final = await denoise(blended, 1);
    free(blended);
    frames = await decodeFrames(sd, final, pacer);
  }
  free(context, latentsT1);
  await keep("final_latents", final);
  free(final);
  return { frames, stages: opts.keepStages ? stages : undefined };
}
