// Data movement: nearest upsampling (shaders/upsample.wgsl, shaders/upsample2x.wgsl), concat and row gathers
// (shaders/copy.wgsl), batched transpose (shaders/transpose.wgsl).
import upsampleSrc from "../../shaders/upsample.wgsl" with { type: "text" };
import upsample2xSrc from "../../shaders/upsample2x.wgsl" with { type: "text" };
import copySrc from "../../shaders/copy.wgsl" with { type: "text" };
import transposeSrc from "../../shaders/transpose.wgsl" with { type: "text" };
import { type Binding, BYTES, GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { assertSameDType, grid1d, splitItems } from "./launch.ts";
import { vecConsts, vecSource, widthFor } from "./vec.ts";

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
  if (y.numel === 0) return y;
  // Exactly 2x with rows of whole vec4s (the models' upsamplers): a vec4 read and four vec4 writes per invocation
  // (shaders/upsample2x.wgsl). Otherwise vec4 stores when Wo allows, scalar reads (shaders/upsample.wgsl).
  const twice = Ho === 2 * H && Wo === 2 * W && W % 4 === 0;
  const w = widthFor(Wo);
  const k = twice
    ? dev.kernel("upsample2x", upsample2xSrc, {}, x.dtype)
    : dev.kernel("upsample", vecSource(upsampleSrc, w), vecConsts(w), x.dtype);
  // Channel planes are independent: split them past the binding limit.
  const planes = N * C, eb = BYTES[x.dtype];
  const per = splitItems("upsampleNearest", dev, "channel planes", planes, [H * W * eb, Ho * Wo * eb]);
  for (let c0 = 0; c0 < planes; c0 += per) {
    const m = Math.min(per, planes - c0);
    const xs = m === planes ? x : x.view([m, H, W], c0 * (H * W));
    const ys = m === planes ? y : y.view([m, Ho, Wo], c0 * (Ho * Wo));
    const n = twice ? m * H * W / 4 : m * Ho * Wo / w;
    const { groups, row } = grid1d(n, 256);
    const p = twice ? new Params().u(n, W / 4, row, 0) : new Params().u(n, H, W, Ho, Wo, row, 0, 0);
    dev.dispatch(k, p, [xs.binding(), ys.binding()], groups);
  }
  return y;
}

/** A binding of elements [first, first + count) of `t` that starts at the aligned byte offset at or below the first,
 *  and the first's index from there: lets the copy kernel read and write at any element offset. */
function rangeBinding(t: Tensor, first: number, count: number): { b: Binding; at: number } {
  const eb = BYTES[t.dtype];
  const start = t.offset + first * eb;
  const base = start - (start % t.dev.align);
  return {
    b: { buffer: t.buffer, offset: base, size: Math.ceil((start - base + count * eb) / 4) * 4 },
    at: (start - base) / eb,
  };
}

/** Record a strided block copy (see shaders/copy.wgsl); all counts in elements, vectorised when they allow. Splits
 *  between blocks, and inside a block, so that no binding exceeds the limit. */
export function blockCopy(
  src: Tensor,
  dst: Tensor,
  c: { n: number; blk: number; ss: number; ds: number; so: number; do: number },
): void {
  if (c.n === 0) return;
  const dev = src.dev;
  const blocks = c.n / c.blk;
  // Elements a binding of `k` blocks spans, plus the slack of rounding its start down to an aligned offset.
  const span = (k: number, stride: number) => ((k - 1) * stride + c.blk) * BYTES[src.dtype] + dev.align;
  const fits = (k: number) => span(k, c.ss) <= dev.maxBinding && span(k, c.ds) <= dev.maxBinding;
  if (!fits(blocks)) {
    let k = blocks;
    while (k > 1 && !fits(k)) k = Math.floor(k / 2);
    if (fits(k)) {
      for (let b0 = 0; b0 < blocks; b0 += k) {
        const m = Math.min(k, blocks - b0);
        blockCopy(src, dst, { ...c, n: m * c.blk, so: c.so + b0 * c.ss, do: c.do + b0 * c.ds });
      }
    } else {
      // One block is too large: copy it in contiguous pieces of whole 16-byte words (the widest copy unit).
      const piece = Math.floor((dev.maxBinding - dev.align) / 16) * (16 / BYTES[src.dtype]);
      for (let b = 0; b < blocks; b++) {
        for (let j0 = 0; j0 < c.blk; j0 += piece) {
          const len = Math.min(piece, c.blk - j0);
          blockCopy(src, dst, {
            n: len,
            blk: len,
            ss: len,
            ds: len,
            so: c.so + b * c.ss + j0,
            do: c.do + b * c.ds + j0,
          });
        }
      }
    }
    return;
  }
  const s = rangeBinding(src, c.so, (blocks - 1) * c.ss + c.blk),
    d = rangeBinding(dst, c.do, (blocks - 1) * c.ds + c.blk);
  const so = s.at, doff = d.at;
  const { type, w } = copyUnit(BYTES[src.dtype], [c.n, c.blk, c.ss, c.ds, so, doff]);
  const k = dev.kernel("copy", copySrc, { V: { type } }, src.dtype);
  const { groups, row } = grid1d(c.n / w, 256);
  const p = new Params().u(c.n / w, c.blk / w, c.ss / w, c.ds / w, so / w, doff / w, row, 0);
  dev.dispatch(k, p, [s.b, d.b], groups);
}

/** The copy kernel's unit: the widest word (16, 8 or 4 bytes) that every count (in elements of `eb` bytes) fills
 *  whole, else one element; `w` elements a unit. A copy moves bits, so f16 data moves as vec4<u32>: 16 bytes an
 *  invocation, as f32 does (a scalar f16 is a 2-byte access, which GPUs stream far below their bandwidth). */
export function copyUnit(eb: number, counts: number[]): { type: string; w: number } {
  for (const [bytes, type] of [[16, "vec4u"], [8, "vec2u"], [4, "u32"]] as const) {
    const w = bytes / eb;
    if (Number.isInteger(w) && counts.every((n) => n % w === 0)) return { type, w };
  }
  return { type: "T", w: 1 };
}

/** `t` when its offset can be bound, else a pooled copy (`copyIn`: with its data; for an output the caller copies
 *  the result back with blockCopy). */
export function bindable(t: Tensor, copyIn = true): Tensor {
  if (t.offset % t.dev.align === 0) return t;
  const c = empty(t.dev, t.shape, t.dtype);
  if (copyIn) blockCopy(t, c, { n: t.numel, blk: t.numel, ss: 0, ds: 0, so: 0, do: 0 });
  return c;
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
  // vec4 units along both rows and columns when A and C allow (matrices start at multiples of A * C).
  const w = widthFor(A, C);
  const k = dev.kernel("transpose", vecSource(transposeSrc, w), vecConsts(w), x.dtype);
  const gx = Math.ceil(C / 32), gy = Math.ceil(A / 32);
  // Matrices are independent: split them past the binding limit (one matrix must fit).
  const per = Math.min(MAX_GROUPS, splitItems("transposeLast2", dev, "matrices", B, [A * C * BYTES[x.dtype]]));
  for (let b0 = 0; b0 < B; b0 += per) {
    const gz = Math.min(per, B - b0);
    const xs = gz === B ? x : x.view([gz, A, C], b0 * (A * C)),
      ys = gz === B ? y : y.view([gz, C, A], b0 * (A * C));
    dev.dispatch(k, new Params().u(A, C, 0, 0), [xs.binding(), ys.binding()], [gx, gy, gz]);
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
