// Plain Stable Diffusion text-to-image: DDIM with classifier-free guidance from one latent of noise, then the VAE.
// Text2Video-Zero's frame 0 follows exactly this trajectory (METHOD §1.2, "test invariant"): it draws the same noise
// (stream "latents", frame 0), so with the same seed, prompt and steps the two agree.
import { upload, withTensorScope } from "../gpu/tensor.ts";
import { free } from "../models/layers.ts";
import type { StableDiffusion } from "../models/sd.ts";
import { gather0 } from "../ops/layout.ts";
import { DDIM } from "../schedulers/ddim.ts";
import { cfg } from "../schedulers/guidance.ts";
import type { Embedding } from "../weights/embeddings.ts";
import { encodePrompts, type NoiseSource, Pacer, type RunHooks } from "./common.ts";
import { decodeFrames } from "./decode.ts";
import { checkSize } from "./text2video.ts";

export interface Text2ImageParams {
  prompt: string;
  negativePrompt?: string;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  /** Textual-inversion embeddings usable in the prompts. */
  embeddings?: readonly Embedding[];
}

/** Returns the image as [1, height, width, 3] in [0, 1]. */
export function text2image(
  sd: StableDiffusion,
  p: Text2ImageParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
): Promise<{ frames: Float32Array }> {
  return withTensorScope(sd.dev, () => text2imageScoped(sd, p, noise, hooks));
}

async function text2imageScoped(
  sd: StableDiffusion,
  p: Text2ImageParams,
  noise: NoiseSource,
  hooks: RunHooks = {},
): Promise<{ frames: Float32Array }> {
  const dev = sd.dev, dtype = sd.dtype;
  checkSize(p.width, p.height);
  if (!Number.isInteger(p.steps) || p.steps < 1) {
    throw new Error(`text2image: steps must be an integer >= 1, got ${p.steps}`);
  }
  const h = p.height / 8, w = p.width / 8, C = sd.unet.cfg.in_channels;
  const pacer = new Pacer(dev, hooks);
  const sched = new DDIM(sd.scheduler);
  const ts = sched.setTimesteps(p.steps);
  const context = encodePrompts(sd.tokenizer, sd.textEncoder, [p.negativePrompt ?? "", p.prompt], p.embeddings);
  let x = upload(dev, noise.normal("latents", 0, C * h * w), [1, C, h, w], dtype);
  try {
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i];
      const pair = gather0(x, [0, 0]);
      const e = sd.unet.forward({ sample: pair, timesteps: [t], context });
      const g = cfg(e, p.guidanceScale);
      const { prev, x0 } = sched.step(g, t, x);
      pacer.preview(x0, i + 1, ts.length);
      free(pair, e, g, x0, x);
      x = prev;
      await pacer.stepDone({ stage: "denoise", step: i + 1, total: ts.length });
    }
  } catch (e) {
    free(x, context);
    throw e;
  }
  await pacer.previewsDone();
  free(context);
  const frames = await decodeFrames(sd, x, pacer);
  free(x);
  return { frames };
}
