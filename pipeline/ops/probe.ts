// Ceiling probes for gpu-check (shaders/probe_fma.wgsl, shaders/probe_copy.wgsl): the adapter's own multiply-add
// rate and copy bandwidth, the yardsticks for the kernels' measured rates. Not used by the pipeline.
import fmaSrc from "../../shaders/probe_fma.wgsl" with { type: "text" };
import copySrc from "../../shaders/probe_copy.wgsl" with { type: "text" };
import { BYTES, GpuError, Params } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { grid1d } from "./launch.ts";

/** Multiply-adds per thread and iteration: 4 chains of vec4. */
export const FMA_PER_ITER = 16;

/** Steps per loop iteration the FMA probe can run (shaders/probe_fma.wgsl UNROLL). */
export const FMA_UNROLLS = [1, 8] as const;

/**
 * Each vec4 of `out` (numel a multiple of 4) gets the sum of 4 chains of `iters` steps x = x * a + b, started
 * from (i % 7) / 8 + (0, 0.25, 0.5, 0.75) + chain * 0.0625 for vec4 index i, `unroll` steps per loop iteration (the
 * same values either way). FLOPs: 2 * FMA_PER_ITER * iters per vec4.
 */
export function probeFma(
  out: Tensor,
  iters: number,
  a: number,
  b: number,
  unroll: (typeof FMA_UNROLLS)[number] = 8,
): Tensor {
  if (out.numel % 4 !== 0) throw new GpuError(`probeFma: out has ${out.numel} elements, need a multiple of 4`);
  if (!Number.isInteger(iters) || iters < 1) throw new GpuError(`probeFma: iters must be an integer >= 1`);
  if (!FMA_UNROLLS.includes(unroll)) throw new GpuError(`probeFma: unroll must be one of ${FMA_UNROLLS.join(", ")}`);
  const dev = out.dev;
  const k = dev.kernel("probe_fma", fmaSrc, { UNROLL: unroll }, out.dtype);
  const { groups, row } = grid1d(out.numel / 4, 256);
  dev.dispatch(k, new Params().u(out.numel / 4, iters, row).f(a, b), [out.binding()], groups);
  return out;
}

/** y = x, as raw 16-byte words (both the same dtype and size; byte size a multiple of 16). */
export function probeCopy(x: Tensor, y: Tensor): Tensor {
  const bytes = x.numel * BYTES[x.dtype];
  if (x.dtype !== y.dtype || x.numel !== y.numel) {
    throw new GpuError(`probeCopy: x [${x.shape}] ${x.dtype} and y [${y.shape}] ${y.dtype} differ`);
  }
  if (bytes % 16 !== 0) throw new GpuError(`probeCopy: ${bytes} bytes, need a multiple of 16`);
  const dev = x.dev;
  const k = dev.kernel("probe_copy", copySrc, {}, x.dtype);
  const n = bytes / 16;
  const { groups, row } = grid1d(n, 256);
  dev.dispatch(k, new Params().u(n, row), [x.binding(), y.binding()], groups);
  return y;
}
