// Elementwise activations and broadcast binary ops (shaders/unary.wgsl, shaders/binary.wgsl): vec4 units when the
// element count is a multiple of 4, scalars otherwise (pipeline/ops/vec.ts).
import unarySrc from "../../shaders/unary.wgsl" with { type: "text" };
import binarySrc from "../../shaders/binary.wgsl" with { type: "text" };
import erfSrc from "../../shaders/erf.wgsl" with { type: "text" };
import { BYTES, GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { assertSameDType, grid1d, splitItems } from "./launch.ts";
import { vecConsts, vecSource, widthFor } from "./vec.ts";

export const UNARY = {
  identity: 0,
  silu: 1,
  gelu: 2,
  quick_gelu: 3,
  gelu_tanh: 4,
  exp: 5,
  clamp01: 6,
  clamp: 7,
} as const;
export type UnaryOp = keyof typeof UNARY;

/** y = f(alpha*x + beta). Writes into `out` when given (WebGPU forbids aliasing it with x). */
export function unary(
  op: UnaryOp,
  x: Tensor,
  opts: { alpha?: number; beta?: number; lo?: number; hi?: number; out?: Tensor } = {},
): Tensor {
  const dev = x.dev;
  const y = opts.out ?? empty(dev, x.shape, x.dtype);
  const n = x.numel, eb = BYTES[x.dtype];
  // vec4 units when the count allows (chunks past the binding limit start at aligned offsets: multiples of 4).
  const w = widthFor(n);
  const k = dev.kernel("unary", vecSource(unarySrc + erfSrc, w), vecConsts(w, { OP: UNARY[op] }), x.dtype);
  // Elements are independent: split past the binding limit.
  const chunk = splitItems("unary", dev, "elements", n, [eb, eb]);
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const m = Math.min(chunk, n - i0);
    const xs = m === n ? x : x.view([m], i0), ys = m === n ? y : y.view([m], i0);
    const { groups, row } = grid1d(m / w, 256);
    const p = new Params().u(m / w).f(opts.alpha ?? 1, opts.beta ?? 0).u(row).f(opts.lo ?? -3.4e38, opts.hi ?? 3.4e38);
    dev.dispatch(k, p, [xs.binding(), ys.binding()], groups);
  }
  return y;
}

export const BINARY = { add: 0, mul: 1, sub: 2 } as const;
export type BinaryOp = keyof typeof BINARY;

/**
 * y = a OP alpha*b, with b broadcast: `b` of the same size, or repeated along the innermost `inner` elements
 * (per-channel for NCHW: inner = H*W; per-row bias: inner = 1).
 */
export function binary(
  op: BinaryOp,
  a: Tensor,
  b: Tensor,
  opts: { inner?: number; alpha?: number; out?: Tensor } = {},
): Tensor {
  assertSameDType(op, a, b);
  const inner = opts.inner ?? 1;
  if (a.numel % (b.numel * inner) !== 0 && b.numel !== a.numel) {
    throw new GpuError(`${op}: cannot broadcast [${b.shape}] over [${a.shape}] with inner=${inner}`);
  }
  const dev = a.dev;
  const y = opts.out ?? empty(dev, a.shape, a.dtype);
  const n = a.numel, eb = BYTES[a.dtype];
  // Past the binding limit a and y split anywhere: a same-size b splits with them, a broadcast b is bound whole and
  // the kernel indexes it from the range's first element.
  const same = b.numel === n && inner === 1;
  // vec4 units of a and y when the count allows (chunks start at aligned offsets: multiples of 4); b then goes in
  // step with a (same shape), one value per unit (inner % 4 == 0), or lane by lane (see shaders/binary.wgsl).
  const w = widthFor(n);
  const bmode = same ? 0 : w === 1 || inner % 4 === 0 ? 1 : 2;
  const consts = vecConsts(w, { OP: BINARY[op], BMODE: bmode, BS: { type: w === 4 && same ? "T4" : "T" } });
  const k = dev.kernel("binary", vecSource(binarySrc, w), consts, a.dtype);
  const chunk = splitItems(op, dev, "elements", n, same ? [eb, eb, eb] : [eb, eb]);
  if (!same && b.bytes > dev.maxBinding) {
    throw new GpuError(`${op}: broadcast operand [${b.shape}] exceeds the storage binding limit (${dev.maxBinding})`);
  }
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const m = Math.min(chunk, n - i0);
    const whole = m === n;
    const as = whole ? a : a.view([m], i0), ys = whole ? y : y.view([m], i0);
    const bs = same && !whole ? b.view([m], i0) : b;
    const { groups, row } = grid1d(m / w, 256);
    const p = new Params().u(m / w, inner, same ? m : b.numel, row).f(opts.alpha ?? 1).u(same ? 0 : i0);
    dev.dispatch(k, p, [as.binding(), bs.binding(), ys.binding()], groups);
  }
  return y;
}

export const add = (a: Tensor, b: Tensor, opts?: { inner?: number; alpha?: number; out?: Tensor }) =>
  binary("add", a, b, opts);
export const silu = (x: Tensor, out?: Tensor) => unary("silu", x, { out });
