// Latents -> video frames: the VAE decoder a few frames at a time (bounded memory), read back as NHWC floats; a frame
// too large to decode whole (the run's plan) is decoded in bands of rows.
import type { Tensor } from "../gpu/tensor.ts";
import { free } from "../models/layers.ts";
import type { StableDiffusion } from "../models/sd.ts";
import { VAE } from "../models/vae.ts";
import { decodeInBands } from "../models/vae_bands.ts";
import { gather0 } from "../ops/layout.ts";
import type { Pacer } from "./common.ts";

/** latents [F, C, h, w] -> frames [F, 8h, 8w, 3] in [0, 1]. */
export async function decodeFrames(
  sd: StableDiffusion,
  latents: Tensor,
  pacer: Pacer,
  batch = 1,
): Promise<Float32Array> {
  const [F, , h, w] = latents.shape;
  if (pacer.hooks.vae?.decodeBandBytes !== undefined) batch = 1;
  const per = 8 * h * 8 * w * 3;
  const out = new Float32Array(F * per);
  for (let f = 0; f < F; f += batch) {
    const n = Math.min(batch, F - f);
    const lat = f === 0 && n === F ? latents : gatherRows(latents, f, n);
    const bandBytes = pacer.hooks.vae?.decodeBandBytes;
    const sample = bandBytes === undefined ? sd.vae.decode(lat) : await decodeInBands(sd.vae, lat, bandBytes);
    const img = VAE.toImage(sample, "nhwc");
    free(sample);
    if (lat !== latents) free(lat);
    out.set(await img.read(), f * per);
    free(img);
    pacer.check();
    pacer.hooks.onProgress?.({ stage: "decode", step: f + n, total: F, frame: f + n, frames: F });
  }
  return out;
}

function gatherRows(x: Tensor, start: number, n: number): Tensor {
  return gather0(x, Array.from({ length: n }, (_, k) => start + k));
}

/** Records one frame's decode inside a precompile dry run, so its pipelines are ready. Not when the plan decodes in
 *  bands: a dry run allocates what it records, and the whole decode is what did not fit (the bands compile their
 *  few kernels at the first band, after the denoising loop). */
export function precompileDecode(sd: StableDiffusion, frame: Tensor, pacer: Pacer): void {
  if (pacer.hooks.vae?.decodeBandBytes === undefined) VAE.toImage(sd.vae.decode(frame), "nhwc");
}
