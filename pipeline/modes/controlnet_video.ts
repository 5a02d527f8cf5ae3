// ControlNet-guided video (METHOD §3): one initial noise shared by every frame, DDIM with classifier-free guidance,
// ControlNet residuals into the UNet, cross-frame attention on both models. Long videos run anchor-first per step
// (recorded K/V for both models), then chunks, as text-to-video does.
import { consume, empty, scoped, type Tensor, upload, withTensorScope } from "../gpu/tensor.ts";
import type { ControlNet } from "../models/controlnet.ts";
import { free } from "../models/layers.ts";
import type { StableDiffusion } from "../models/sd.ts";
import { gather0 } from "../ops/layout.ts";
import { DDIM } from "../schedulers/ddim.ts";
import { cfg } from "../schedulers/guidance.ts";
import { concatF32, encodePrompts, framesInChunks, type NoiseSource, Pacer, type RunHooks } from "./common.ts";
import { decodeFrames, precompileDecode } from "./decode.ts";
import type { Embedding } from "../weights/embeddings.ts";

export interface ControlVideoParams {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  guidanceScale: number;
  /** controlnet_conditioning_scale */
  controlScale: number;
  /** Frames per model call, the anchor included (>= 2); default: all frames. */
  chunkSize?: number;
  /** Textual-inversion embeddings usable in the prompts. */
  embeddings?: readonly Embedding[];
}

export interface ControlVideoResult {
  frames: Float32Array;
  stages?: Record<string, Float32Array | Int32Array>;
}

/** `control` is [F, 3, H, W] in [0, 1] (edges, pose skeleton or depth as RGB), H and W multiples of 8. */
export function controlVideo(
  sd: StableDiffusion,
  cn: ControlNet,
  control: { data: Float32Array; frames: number; height: number; width: number },
  p: ControlVideoParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
  opts: { keepStages?: boolean } = {},
): Promise<ControlVideoResult> {
  return withTensorScope(sd.dev, () => controlVideoScoped(sd, cn, control, p, noise, hooks, opts));
}

async function controlVideoScoped(
  sd: StableDiffusion,
  cn: ControlNet,
  control: { data: Float32Array; frames: number; height: number; width: number },
  p: ControlVideoParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
  opts: { keepStages?: boolean } = {},
): Promise<ControlVideoResult> {
  const dev = sd.dev, dtype = sd.dtype;
  const { frames: F, height: H, width: W } = control;
  if (F < 1) throw new Error(`controlVideo: video has no frames`);
  if (H % 8 || W % 8) throw new Error(`controlVideo: video control frames must be multiples of 8, got ${W}x${H}`);
  if (control.data.length !== F * 3 * H * W) {
    throw new Error(`controlVideo: video control data does not match its shape`);
  }
  if (!Number.isInteger(p.steps) || p.steps < 1) {
    throw new Error(`controlVideo: steps must be an integer >= 1, got ${p.steps}`);
  }
  if (p.chunkSize !== undefined && (!Number.isInteger(p.chunkSize) || p.chunkSize < 2)) {
    throw new Error(`controlVideo: chunkSize must be an integer >= 2, got ${p.chunkSize}`);
  }
  const h = H / 8, w = W / 8, C = sd.unet.cfg.in_channels;
  const pacer = new Pacer(dev, hooks);
  const stages: Record<string, Float32Array | Int32Array> = {};

  const sched = new DDIM(sd.scheduler);
  const ts = sched.setTimesteps(p.steps);
  const context = encodePrompts(sd.tokenizer, sd.textEncoder, [p.negativePrompt ?? "", p.prompt], p.embeddings);
  const cond = upload(dev, control.data, [F, 3, H, W], dtype);
  const z = upload(dev, noise.normal("latents", 0, C * h * w), [1, C, h, w], dtype);
  let latents = gather0(z, new Array(F).fill(0));
  free(z);
  if (opts.keepStages) {
    stages.timesteps = ts;
    stages.prompt_embeds = await context.read();
  }
  const perStep: Float32Array[] = [];

  /** One DDIM step of all frames: ControlNet residuals into the UNet, CFG, cross-frame attention on both. */
  const videoStep = (latents: Tensor, t: number, show?: [number, number]): Tensor =>
    scoped(dev, () => {
      const eps = framesInChunks(F, p.chunkSize, 2, 2, (rows, [attnU, attnC]) =>
        scoped(dev, () => {
          const sample = gather0(latents, [...rows, ...rows]);
          const c = gather0(cond, [...rows, ...rows]);
          const r = cn.forward({ sample, timesteps: [t], context, cond: c, scale: p.controlScale, attn: attnC });
          const e = sd.unet.forward({
            sample,
            timesteps: [t],
            context,
            downResiduals: r.down,
            midResidual: r.mid,
            attn: attnU,
          });
          return cfg(e, p.guidanceScale);
        }));
      const { prev, x0 } = sched.step(eps, t, latents);
      if (show) pacer.preview(x0, ...show);
      return prev;
    });
  dev.precompile(() => {
    const x = empty(dev, [F, C, h, w], dtype);
    pacer.warmPreview(x);
    videoStep(x, ts[0]);
    precompileDecode(sd, gather0(x, [0]), pacer);
  });

  for (let i = 0; i < ts.length; i++) {
    const show = pacer.previewDue(i + 1, ts.length) ? [i + 1, ts.length] as [number, number] : undefined;
    const t = ts[i];
    latents = consume(latents, (l) => videoStep(l, t, show));
    if (opts.keepStages) perStep.push(await latents.read());
    await pacer.stepDone({ stage: "denoise", step: i + 1, total: ts.length });
  }
  await pacer.previewsDone();
  free(context, cond);
  if (opts.keepStages) {
    stages.latents_per_step = concatF32(perStep);
    stages.final_latents = await latents.read();
  }
  const frames = await decodeFrames(sd, latents, pacer);
  free(latents);
  return { frames, stages: opts.keepStages ? stages : undefined };
}
