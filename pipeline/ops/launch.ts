// Shared dispatch-shape helpers for the op wrappers.
import { type Binding, BYTES, type Device, GpuError } from "../gpu/device.ts";
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

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * How many leading items (rows, images, channels, elements) one dispatch may bind: each bound range holds
 * `itemBytes[i]` per item and must fit `limit` (vec4 bindings round up to 16 bytes), and every chunk must start at
 * an aligned offset; at most `cap` items. `count` when everything fits at once; 0 when not even the smallest
 * aligned chunk fits.
 */
export function itemsPerBinding(
  dev: Device,
  count: number,
  itemBytes: number[],
  limit = dev.maxBinding,
  cap = Infinity,
): number {
  if (count <= cap && itemBytes.every((b) => Math.ceil((count * b) / 16) * 16 <= limit)) return count;
  const align = Math.max(dev.align, 16);
  let step = 1;
  for (const b of itemBytes) {
    if (b <= 0) continue;
    const q = align / gcd(b, align);
    step = (step * q) / gcd(step, q);
  }
  const fit = Math.min(cap, Math.floor(Math.floor(limit / 16) * 16 / Math.max(...itemBytes)));
  return Math.floor(fit / step) * step;
}

/** `itemsPerBinding`, failing with a message that names the op when the work cannot be split finely enough. */
export function splitItems(
  op: string,
  dev: Device,
  what: string,
  count: number,
  itemBytes: number[],
  limit = dev.maxBinding,
  cap = Infinity,
): number {
  const chunk = itemsPerBinding(dev, count, itemBytes, limit, cap);
  if (chunk === 0) {
    throw new GpuError(
      `${op}: its ${what} (${Math.max(...itemBytes)} bytes each) cannot be split to fit the storage binding limit ` +
        `(${limit} bytes) in blocks that start at ${Math.max(dev.align, 16)}-byte aligned offsets`,
    );
  }
  return chunk;
}

/** Binding for a tensor read as array<vec4<T>>: its size rounded up to whole vec4s so the tail stays reachable. */
export function vecBinding(op: string, t: Tensor): Binding {
  const b = t.binding();
  const v = 4 * BYTES[t.dtype];
  const size = Math.ceil(b.size / v) * v;
  if (b.offset % v !== 0 || b.offset + size > b.buffer.size) {
    throw new GpuError(
      `${op}: tensor [${t.shape}] cannot be read as vec4 (offset ${b.offset}, buffer ${b.buffer.size})`,
    );
  }
  return { ...b, size };
}
