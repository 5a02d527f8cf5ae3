// Classifier-free guidance on a stacked noise batch, and the weighted sum (shaders/scale_add.wgsl) that it, the
// DDPM forward jump and the Euler-ancestral update share. All record GPU work only: no readback.
import scaleAddSrc from "../../shaders/scale_add.wgsl" with { type: "text" };
import { GpuError, Params } from "../gpu/device.ts";
import { empty, numel, type Tensor } from "../gpu/tensor.ts";
import { assertShape, grid1d } from "../ops/launch.ts";
import { vecConsts, vecSource, widthFor } from "../ops/vec.ts";

export interface Term {
  x: Tensor;
  w: number;
  /** Element offset into `x` (default 0): lets one stacked tensor supply several terms without aligned views. */
  at?: number;
}

/** y[shape] = sum_k w_k * x_k[at_k : at_k + numel(shape)], 1 to 3 terms, computed in f32. */
export function scaleAdd(shape: readonly number[], terms: Term[], opts: { out?: Tensor } = {}): Tensor {
  const op = "scaleAdd";
  if (terms.length < 1 || terms.length > 3) throw new GpuError(`${op}: takes 1 to 3 terms, got ${terms.length}`);
  const n = numel(shape), dtype = terms[0].x.dtype, dev = terms[0].x.dev;
  terms.forEach((t, k) => {
    const at = t.at ?? 0;
    if (t.x.dtype !== dtype) throw new GpuError(`${op}: term ${k} is ${t.x.dtype}, term 0 is ${dtype}`);
    if (!Number.isInteger(at) || at < 0 || at + n > t.x.numel) {
      throw new GpuError(`${op}: term ${k} range [${at}, ${at + n}) is outside its tensor [${t.x.shape}]`);
    }
    if (!Number.isFinite(t.w)) throw new GpuError(`${op}: term ${k} weight is ${t.w}`);
  });
  const y = opts.out ?? empty(dev, shape, dtype);
  if (opts.out) {
    assertShape(op, "out", y, shape);
    if (y.dtype !== dtype) throw new GpuError(`${op}: out is ${y.dtype}, inputs are ${dtype}`);
    // WebGPU forbids a buffer bound read-only and read-write in one dispatch.
    if (terms.some((t) => t.x.buffer === y.buffer)) {
      throw new GpuError(`${op}: out must not share a buffer with an input`);
    }
  }
  if (n === 0) return y;
  const t = [0, 1, 2].map((i) => terms[i] ?? { x: terms[0].x, w: 0, at: 0 });
  const at = t.map((u) => u.at ?? 0);
  // vec4 units when the count and every offset allow (a term's tensor then holds whole vec4s up to its range's end).
  const w = widthFor(n, ...at);
  const k = dev.kernel("scale_add", vecSource(scaleAddSrc, w), vecConsts(w, { TERMS: terms.length }), dtype);
  const { groups, row } = grid1d(n / w, 256);
  const p = new Params().u(n / w, row, at[0] / w, at[1] / w, at[2] / w).f(t[0].w, t[1].w, t[2].w);
  dev.dispatch(k, p, [t[0].x.binding(), t[1].x.binding(), t[2].x.binding(), y.binding()], groups);
  return y;
}

function groupsOf(op: string, noise: Tensor, count: number): { shape: number[]; n: number } {
  const b = noise.shape[0];
  if (noise.shape.length < 2 || b % count !== 0) {
    throw new GpuError(
      `${op}: noise has shape [${noise.shape}], expected [${count}F, ...] (${count} groups of F frames)`,
    );
  }
  const shape = [b / count, ...noise.shape.slice(1)];
  return { shape, n: numel(shape) };
}

/**
 * Classifier-free guidance as the Text2Video-Zero / ControlNet pipelines lay out the batch:
 * noise = [uncond x F, cond x F] -> u + g*(c - u), shape [F, ...].
 */
export function cfg(noise: Tensor, g: number, opts: { out?: Tensor } = {}): Tensor {
  const { shape, n } = groupsOf("cfg", noise, 2);
  return scaleAdd(shape, [{ x: noise, w: 1 - g, at: 0 }, { x: noise, w: g, at: n }], opts);
}

/**
 * InstructPix2Pix guidance (diffusers StableDiffusionInstructPix2PixPipeline): the batch is
 * [text+image x F, uncond+image x F, uncond+zero-image x F] (prompt embeddings [cond, uncond, uncond], image
 * latents [image, image, zeros]), chunked as (t, i, u):  u + g*(t - i) + gImg*(i - u), shape [F, ...].
 * diffusers applies this to x0 = x - sigma*noise under Euler-ancestral and converts back; the guidance weights sum
 * to 1, so that round trip equals guiding the noise directly (up to float rounding, which this form reduces).
 */
export function cfgPix2Pix(noise: Tensor, g: number, gImg: number, opts: { out?: Tensor } = {}): Tensor {
  const { shape, n } = groupsOf("cfgPix2Pix", noise, 3);
  return scaleAdd(shape, [
    { x: noise, w: g, at: 0 },
    { x: noise, w: gImg - g, at: n },
    { x: noise, w: 1 - gImg, at: 2 * n },
  ], opts);
}
