// Deterministic random values generated on the GPU (shaders/random_fill.wgsl) and their bit-exact TypeScript twin:
// random model weights (pipeline/weights/random.ts) are written where they live instead of made on the host and
// uploaded, and a host copy (`randomValues`) holds the same numbers.
import randomFillSrc from "../../shaders/random_fill.wgsl" with { type: "text" };
import { BYTES, GpuError, Params } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { grid1d } from "./launch.ts";
import { vecConsts, vecSource, widthFor } from "./vec.ts";

/** A generated tensor: value j is uniform in about [offset - scale, offset + scale), from the u32 stream `seed`. */
export interface RandomSpec {
  seed: number;
  offset: number;
  scale: number;
}

/** "lowbias32" (the kernel's hash32): a u32 -> u32 mix. */
function hash32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * The affine map's f32 constants: `step` = 2 * scale / 2^16 rounded to 8 significant bits (so that step times a
 * 16-bit integer is an exact f32: see the shader), `lo` = offset - 32768 * step. Values: lo + step * u, u in
 * [0, 65535], i.e. [offset - 32768 step, offset + 32767 step] with 32768 step within 0.2 % of scale.
 */
export function randomAffine(spec: RandomSpec): { lo: number; step: number } {
  const { offset, scale } = spec;
  if (!(Number.isFinite(offset) && Number.isFinite(scale) && scale >= 0)) {
    throw new GpuError(`randomFill: offset ${offset} and scale ${scale} must be finite, the scale >= 0`);
  }
  const want = 2 * scale / 65536;
  let step = 0;
  if (want > 0) {
    const e = Math.floor(Math.log2(want)) - 7;
    step = Math.min(256, Math.round(want / 2 ** e)) * 2 ** e;
    if (Math.fround(step) !== step) throw new GpuError(`randomFill: scale ${scale} is outside the f32 range`);
  }
  return { lo: Math.fround(offset - 32768 * step), step };
}

/** Values [0, count) of the stream `spec`, exactly as `randomFill` writes them in f32. */
export function randomValues(spec: RandomSpec, count: number): Float32Array {
  const { lo, step } = randomAffine(spec);
  const key = hash32(spec.seed >>> 0);
  const out = new Float32Array(count);
  // lo + step * u: the product is exact and one f32 rounding (the store) makes the add's (see the shader).
  for (let j = 0; j < count; j++) out[j] = lo + step * (hash32(hash32(j ^ key) + key) >>> 16);
  return out;
}

/**
 * Write values [0, count) of the stream `spec` into elements [start, start + count) of `out` (default: all of it),
 * in its dtype (f16: the f32 value rounded once). Nothing else in `out` is written; the range may start at any
 * element. Splits past the binding limit.
 */
export function randomFill(out: Tensor, spec: RandomSpec, range: { start?: number; count?: number } = {}): Tensor {
  const dev = out.dev;
  const start = range.start ?? 0, count = range.count ?? out.numel - start;
  if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= out.numel)) {
    throw new GpuError(`randomFill: elements [${start}, ${start + count}) are outside [${out.shape}]`);
  }
  if (count > 2 ** 32) throw new GpuError(`randomFill: ${count} values exceed the u32 counter`);
  const { lo, step } = randomAffine(spec);
  const eb = BYTES[out.dtype];
  if (!out.alive) throw new GpuError("randomFill: use of a released tensor");
  // Each dispatch binds from the aligned byte offset at or below its first element and covers whole 16-byte words,
  // so every piece after the first starts where the first's vec4 grid continues.
  const per = Math.floor((dev.maxBinding - dev.align) / 16) * 16 / eb;
  if (per <= 0) {
    throw new GpuError(`randomFill: the storage binding limit (${dev.maxBinding} bytes) leaves no room past alignment`);
  }
  for (let j0 = 0; j0 < count; j0 += per) {
    const m = Math.min(per, count - j0);
    const first = out.offset + (start + j0) * eb;
    const base = first - (first % dev.align);
    const at = (first - base) / eb;
    const w = widthFor(m, at);
    const k = dev.kernel("random_fill", vecSource(randomFillSrc, w), vecConsts(w), out.dtype);
    const { groups, row } = grid1d(m / w, 256);
    const p = new Params().u(m / w, row, at / w, j0, spec.seed).f(lo, step).u(0);
    const size = Math.ceil((first - base + m * eb) / 4) * 4;
    dev.dispatch(k, p, [{ buffer: out.buffer, offset: base, size }], groups);
  }
  return out;
}
