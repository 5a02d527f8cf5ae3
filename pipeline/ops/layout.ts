// Data movement: nearest upsampling (shaders/upsample.wgsl), concat and row gathers (shaders/copy.wgsl), batched
// transpose (shaders/transpose.wgsl).
import upsampleSrc from "../../shaders/upsample.wgsl" with { type: "text" };
import copySrc from "../../shaders/copy.wgsl" with { type: "text" };
import transposeSrc from "../../shaders/transpose.wgsl" with { type: "text" };
import { type Binding, BYTES, GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { assertSameDType, grid1d } from "./launch.ts";
import { vecConsts, vecSource, type Width, widthFor } from "./vec.ts";

const MAX_GROUPS = 65535;

/** torch nearest interpolate: x [N, C, H, W] -> [N, C, Ho, Wo], src = floor(dst * H / Ho)
 *  (exact for x2 and for size=...). */
export function upsampleNearest(x: Tensor, Ho: number, Wo: number): Tensor {
  if (x.shape.length !== 4) throw new GpuError(`upsampleNearest: x has shape [${x.shape}], expected [N, C, H, W]`);
  if (!(Number.isInteger(Ho) && Number.isInteger(Wo) && Ho > 0 && Wo > 0)) {
    throw new GpuError(`upsampleNearest: output size ${Ho}x${Wo} is not a positive integer size`);
  }
  const [N, C, H, W] = x.shape;
  const dev = x.dev;
  const y = empty(dev, [N, C, Ho, Wo], x.dtype);
  const w = widthFor(Wo);
  const n = y.numel / w;
  const k = dev.kernel("upsample", vecSource(upsampleSrc, w), vecConsts(w), x.dtype);
  const { groups, row } = grid1d(n, 256);
  dev.dispatch(k, new Params().u(n, H, W, Ho, Wo, row, 0, 0), [x.binding(), y.binding()], groups);
  return y;
}

/** A binding that starts at the 256-aligned byte offset at or below `t`'s, and `t`'s start in elements from there:
 *  lets the copy kernel read and write views at any element offset. */
function alignedBinding(t: Tensor): { b: Binding; at: number } {
  const base = t.offset - (t.offset % t.dev.align);
  const extra = t.offset - base;
  return {
    b: { buffer: t.buffer, offset: base, size: Math.ceil((extra + t.bytes) / 4) * 4 },
    at: extra / BYTES[t.dtype],
  };
}

/** Record a strided block copy (see shaders/copy.wgsl); all counts in elements, vectorised when they allow. */
function blockCopy(
  src: Tensor,
  dst: Tensor,
  c: { n: number; blk: number; ss: number; ds: number; so: number; do: number },
): void {
  if (c.n === 0) return;
  const dev = src.dev;
  const s = alignedBinding(src), d = alignedBinding(dst);
  const so = c.so + s.at, doff = c.do + d.at;
  const w: Width = widthFor(c.n, c.blk, c.ss, c.ds, so, doff);
  const k = dev.kernel("copy", vecSource(copySrc, w), vecConsts(w), src.dtype);
  const { groups, row } = grid1d(c.n / w, 256);
  const p = new Params().u(c.n / w, c.blk / w, c.ss / w, c.ds / w, so / w, doff / w, row, 0);
  dev.dispatch(k, p, [s.b, d.b], groups);
}

/** Concatenate along dim 1: [N, Ci, ...rest] each -> [N, sum Ci, ...rest]
 *  (UNet skip concat; also works for 2-D/3-D). */
export function concat(xs: Tensor[]): Tensor {
  if (xs.length === 0) throw new GpuError("concat: no inputs");
  const first = xs[0];
  if (first.shape.length < 2) throw new GpuError(`concat: input 0 has shape [${first.shape}], expected [N, C, ...]`);
  assertSameDType("concat", ...xs);
  const N = first.shape[0], rest = first.shape.slice(2);
  xs.forEach((t, i) => {
    if (t.shape.length !== first.shape.length || t.shape[0] !== N || t.shape.slice(2).some((d, j) => d !== rest[j])) {
      throw new GpuError(`concat: input ${i} has shape [${t.shape}], expected [${N}, ?, ${rest.join(", ")}]`);
    }
  });
  const R = rest.reduce((p, d) => p * d, 1);
  const Ct = xs.reduce((s, t) => s + t.shape[1], 0);
  const y = empty(first.dev, [N, Ct, ...rest], first.dtype);
  let off = 0;
  for (const t of xs) {
    const blk = t.shape[1] * R;
    blockCopy(t, y, { n: t.numel, blk, ss: blk, ds: Ct * R, so: 0, do: off * R });
    off += t.shape[1];
  }
  return y;
}

/** [B, C, L] -> [B, L, C] (NCHW -> tokens) and its inverse permute. */
export function transposeLast2(x: Tensor): Tensor { // [B, A, C] -> [B, C, A] generally
  if (x.shape.length < 2) throw new GpuError(`transposeLast2: x has shape [${x.shape}], expected [..., A, C]`);
  const lead = x.shape.slice(0, -2);
  const [A, C] = x.shape.slice(-2);
  const B = lead.reduce((p, d) => p * d, 1);
  const dev = x.dev;
  const y = empty(dev, [...lead, C, A], x.dtype);
  if (x.numel === 0) return y;
  const k = dev.kernel("transpose", transposeSrc, {}, x.dtype);
  const gx = Math.ceil(C / 32), gy = Math.ceil(A / 32);
  for (let b0 = 0; b0 < B; b0 += MAX_GROUPS) {
    const gz = Math.min(MAX_GROUPS, B - b0);
    dev.dispatch(k, new Params().u(A, C, b0, 0), [x.binding(), y.binding()], [gx, gy, gz]);
  }
  return y;
}

/** Copy rows: out[i] = x[index[i]] along dim 0 (index given as a host array; used to gather anchor frames). */
export function gather0(x: Tensor, index: number[]): Tensor {
  if (x.shape.length < 1) throw new GpuError(`gather0: x has shape [${x.shape}], expected [rows, ...]`);
  const rows = x.shape[0];
  index.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0 || r >= rows) {
      throw new GpuError(`gather0: index[${i}] = ${r} is outside [0, ${rows})`);
    }
  });
  const dev = x.dev;
  const y = empty(dev, [index.length, ...x.shape.slice(1)], x.dtype);
  const inner = rows === 0 ? 0 : x.numel / rows;
  const eb = BYTES[x.dtype];
  // Runs of consecutive source rows become one copy each.
  for (let i = 0; i < index.length;) {
    let len = 1;
    while (i + len < index.length && index[i + len] === index[i] + len) len++;
    const n = len * inner, so = index[i] * inner, doff = i * inner;
    const srcByte = x.offset + so * eb, dstByte = y.offset + doff * eb, size = n * eb;
    if (size === 0) {
      // nothing to move
    } else if (srcByte % 4 === 0 && dstByte % 4 === 0 && size % 4 === 0) {
      dev.copy({ buffer: x.buffer, offset: srcByte, size }, { buffer: y.buffer, offset: dstByte, size });
    } else {
      // copyBufferToBuffer needs 4-byte alignment (odd f16 rows): copy elementwise instead.
      blockCopy(x, y, { n, blk: n, ss: n, ds: n, so, do: doff });
    }
    i += len;
  }
  return y;
}
