// Live-preview strip from latents (shaders/latent_preview.wgsl): Stable Diffusion's linear latent-to-RGB
// approximation, frames side by side, box-downscaled, RGBA8 packed one 32-bit word per pixel.
import previewSrc from "../../shaders/latent_preview.wgsl" with { type: "text" };
import { GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { grid1d } from "./launch.ts";

export interface PreviewStrip {
  /** [height, frames * frameWidth] packed RGBA8 words (the tensor's f32 dtype is only its storage width). */
  rgba: Tensor;
  frames: number;
  /** Size of one frame in the strip. */
  width: number;
  height: number;
}

/** Frame size in the strip: the latent size, shrunk (aspect kept) so the strip is at most `maxWidth` wide. */
export function previewSize(frames: number, h: number, w: number, maxWidth: number): { width: number; height: number } {
  const s = Math.min(1, maxWidth / (frames * w));
  return { width: Math.max(1, Math.floor(w * s)), height: Math.max(1, Math.floor(h * s)) };
}

/** latents [F, 4, h, w] -> strip of F frames of `size` (default: previewSize with maxWidth 768). */
export function latentPreview(latents: Tensor, size?: { width: number; height: number }): PreviewStrip {
  const op = "latentPreview";
  if (latents.shape.length !== 4 || latents.shape[1] !== 4) {
    throw new GpuError(`${op}: latents have shape [${latents.shape}], expected [F, 4, h, w]`);
  }
  const [F, , h, w] = latents.shape;
  const { width, height } = size ?? previewSize(F, h, w, 768);
  if (!(width >= 1 && height >= 1 && width <= w * 64 && height <= h * 64)) {
    throw new GpuError(`${op}: frame size ${width}x${height} is not a sensible preview of ${w}x${h} latents`);
  }
  const dev = latents.dev;
  const n = F * width * height;
  const rgba = empty(dev, [height, F * width], "f32");
  const k = dev.kernel("latent_preview", previewSrc, {}, latents.dtype);
  const { groups, row } = grid1d(n, 64);
  dev.dispatch(k, new Params().u(F, h, w, height, width, row), [latents.binding(), rgba.binding()], groups);
  return { rgba, frames: F, width, height };
}
