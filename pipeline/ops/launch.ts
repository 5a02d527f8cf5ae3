// Shared dispatch-shape helpers for the op wrappers.
import { GpuError } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";

/** Workgroup grid for `n` threads in groups of `wg`, folded into 2-D when it exceeds the per-dimension limit. */
export function grid1d(n: number, wg: number, maxPerDim = 65535): { groups: [number, number]; row: number } {
  const total = Math.ceil(n / wg);
  if (total <= maxPerDim) return { groups: [Math.max(total, 1), 1], row: total * wg };
  const gx = maxPerDim;
  const gy = Math.ceil(total / gx);
  return { groups: [gx, gy], row: gx * wg };
}

export function assertShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => shape[i] >= 0 && d !== shape[i])) {
    throw new GpuError(`${op}: ${name} has shape [${t.shape}], expected [${shape.map((d) => d < 0 ? "?" : d)}]`);
  }
}

export function assertSameDType(op: string, ...ts: Tensor[]): void {
  const d = ts[0].dtype;
  for (const t of ts) {
    if (t.dtype !== d) throw new GpuError(`${op}: mixed dtypes ${ts.map((x) => x.dtype).join(", ")}`);
  }
}
