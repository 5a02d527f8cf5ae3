// Video Instruct-Pix2Pix (METHOD §2): each frame's VAE posterior mean conditions the 8-channel UNet; Euler-ancestral
// with text and image guidance over the batch [text+image, uncond+image, uncond+zero], cross-frame attention in
// 3 groups. Anchor-first per step, then chunks, as text-to-video does.
import { consume, empty, scoped, type Tensor, upload, withTensorScope } from "../gpu/tensor.ts";
import { free } from "../models/layers.ts";
import type { StableDiffusion } from "../models/sd.ts";
import { unary } from "../ops/elementwise.ts";
import { concat, gather0 } from "../ops/layout.ts";
import { EulerAncestral } from "../schedulers/euler_ancestral.ts";
import { cfgPix2Pix } from "../schedulers/guidance.ts";
import {
  concatF32,
  encodePrompts,
  frameNoise,
  framesInChunks,
  type NoiseSource,
  Pacer,
  type RunHooks,
} from "./common.ts";
import { decodeFrames, precompileDecode } from "./decode.ts";
import { encodeInBands } from "../models/vae_bands.ts";
import type { Embedding } from "../weights/embeddings.ts";

export interface Pix2PixParams {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  guidanceScale: number;
  imageGuidanceScale: number;
  chunkSize?: number;
  /** Textual-inversion embeddings usable in the prompts. */
  embeddings?: readonly Embedding[];
}

export interface Pix2PixResult {
  frames: Float32Array;
  stages?: Record<string, Float32Array | Int32Array>;
}

/** `video` is [F, 3, H, W] in [0, 1], H and W multiples of 8. */
export function pix2pix(
  sd: StableDiffusion,
  video: { data: Float32Array; frames: number; height: number; width: number },
  p: Pix2PixParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
  opts: { keepStages?: boolean } = {},
): Promise<Pix2PixResult> {
  return withTensorScope(sd.dev, () => pix2pixScoped(sd, video, p, noise, hooks, opts));
}

async function pix2pixScoped(
  sd: StableDiffusion,
  video: { data: Float32Array; frames: number; height: number; width: number },
  p: Pix2PixParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
  opts: { keepStages?: boolean } = {},
): Promise<Pix2PixResult> {
  const dev = sd.dev, dtype = sd.dtype;
  const { frames: F, height: H, width: W } = video;
  if (F < 1) throw new Error(`pix2pix: video has no frames`);
  if (H % 8 || W % 8) throw new Error(`pix2pix: video frames must be multiples of 8, got ${W}x${H}`);
  if (sd.unet.cfg.in_channels !== 2 * sd.vae.cfg.latent_channels) {
    throw new Error(`pix2pix: not an Instruct-Pix2Pix model (UNet in_channels ${sd.unet.cfg.in_channels}, need 8)`);
  }
  if (!Number.isInteger(p.steps) || p.steps < 1) {
    throw new Error(`pix2pix: steps must be an integer >= 1, got ${p.steps}`);
  }
  if (p.chunkSize !== undefined && (!Number.isInteger(p.chunkSize) || p.chunkSize < 2)) {
    throw new Error(`pix2pix: chunkSize must be an integer >= 2, got ${p.chunkSize}`);
  }
  const h = H / 8, w = W / 8, C = sd.vae.cfg.latent_channels;
  const pacer = new Pacer(dev, hooks);
  const stages: Record<string, Float32Array | Int32Array> = {};

  // Image latents: the posterior mean of 2*video - 1, unscaled; a zero row F serves the unconditional group.
  const lat: Tensor[] = [];
  for (let f = 0; f < F; f++) {
    const frame = upload(dev, video.data.subarray(f * 3 * H * W, (f + 1) * 3 * H * W), [1, 3, H, W], dtype);
    const img = unary("identity", frame, { alpha: 2, beta: -1 });
    const bands = hooks.vae?.encodeBandBytes;
    const post = bands === undefined ? sd.vae.encode(img) : await encodeInBands(sd.vae, img, bands);
    lat.push(post.mean);
    free(frame, img, post.logvar, post.std);
    pacer.check();
  }
  lat.push(upload(dev, new Float32Array(C * h * w), [1, C, h, w], dtype));
  const imgLat = concat(lat.map((t) => t.view([1, t.numel]))).reshape([F + 1, C, h, w]);
  free(...lat);

  const sched = new EulerAncestral(sd.scheduler);
  const ts = sched.setTimesteps(p.steps);
  const context = encodePrompts(sd.tokenizer, sd.textEncoder, [
    p.prompt,
    p.negativePrompt ?? "",
    p.negativePrompt ?? "",
  ], p.embeddings);
  const all = Array.from({ length: F }, (_, f) => f);
  const z = frameNoise(dev, noise, "latents", all, [C, h, w], dtype);
  let latents = sched.scaleInitNoise(z);
  free(z);
  if (opts.keepStages) {
    stages.timesteps = ts;
    stages.sigmas = sched.sigmas;
    stages.prompt_embeds = await context.read();
    stages.image_latents = await imgLat.read();
  }
  const perStep: Float32Array[] = [];

  /** One Euler-ancestral step of all frames: [text+image, uncond+image, uncond+zero] guidance, 3 groups; with a
   * preview of the predicted clean latents when `show` is set. */
  const videoStep = (latents: Tensor, i: number, stepNoise: Tensor, show = false): Tensor =>
    scoped(dev, () => {
      const t = ts[i];
      const eps = framesInChunks(F, p.chunkSize, 3, 1, (rows, [attn]) =>
        scoped(dev, () => {
          const scaled = sched.scaleModelInput(gather0(latents, [...rows, ...rows, ...rows]), i);
          const img = gather0(imgLat, [...rows, ...rows, ...rows.map(() => F)]);
          const e = sd.unet.forward({ sample: concat([scaled, img]), timesteps: [t], context, attn });
          return cfgPix2Pix(e, p.guidanceScale, p.imageGuidanceScale);
        }));
      const next = sched.step(eps, i, latents, stepNoise);
      if (show) pacer.preview(sched.predictX0(eps, i, latents), i + 1, ts.length);
      return next;
    });
  dev.precompile(() => {
    const x = empty(dev, [F, C, h, w], dtype);
    if (hooks.preview) free(sched.predictX0(x, 0, x));
    pacer.warmPreview(x);
    videoStep(x, 0, x);
    precompileDecode(sd, gather0(x, [0]), pacer);
  });

  for (let i = 0; i < ts.length; i++) {
    // Uploaded before the step is recorded, so the step stays one command buffer.
    const stepNoise = frameNoise(dev, noise, `step${i}`, all, [C, h, w], dtype);
    const show = pacer.previewDue(i + 1, ts.length);
    latents = consume(latents, (l) => consume(stepNoise, (n) => videoStep(l, i, n, show)));
    if (opts.keepStages) perStep.push(await latents.read());
    await pacer.stepDone({ stage: "denoise", step: i + 1, total: ts.length });
  }
  await pacer.previewsDone();
  free(context, imgLat);
  if (opts.keepStages) {
    stages.latents_per_step = concatF32(perStep);
    stages.final_latents = await latents.read();
  }
  const frames = await decodeFrames(sd, latents, pacer);
  free(latents);
  return { frames, stages: opts.keepStages ? stages : undefined };
}
