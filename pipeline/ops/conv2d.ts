// 2-D convolution as an implicit GEMM (shaders/conv2d.wgsl) on matmul's tiles: no im2col buffer; small outputs over deep
// reductions split K across workgroups and add the slices in a second pass (shaders/splitk_sum.wgsl). Where the adapter's
// table says so, 3x3 stride-1 convolutions run by Winograd instead (./winograd.ts), and tiny outputs on a thread per
// output (shaders/conv2d_direct.wgsl).
import gemmSrc from "../../shaders/gemm.wgsl" with { type: "text" };
import conv2dSrc from "../../shaders/conv2d.wgsl" with { type: "text" };
import conv2dDirectSrc from "../../shaders/conv2d_direct.wgsl" with { type: "text" };
import splitkSumSrc from "../../shaders/splitk_sum.wgsl" with { type: "text" };
import epilogueSrc from "../../shaders/conv_epilogue.wgsl" with { type: "text" };
import { BYTES, GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { assertSameDType, assertShape, grid1d, itemsPerBinding, splitItems, vecBinding } from "./launch.ts";
import { blockCopy } from "./layout.ts";
import { conv2dWinograd, useWinograd, winogradPasses } from "./winograd.ts";
import {
  adapterTiles,
  chunkItems,
  gemmConsts,
  gemmHooks,
  kSlices,
  pickTile,
  sameRange,
  threads,
  tileGrid,
} from "./matmul.ts";

type Pad = [number, number, number, number];

export interface Conv2dOpts {
  stride?: number;
  /** Zero padding: one number or [top, bottom, left, right]. */
  padding?: number | [number, number, number, number];
  /** [N, Cout, Ho, Wo], added after the bias (ResNet skip). */
  residual?: Tensor;
  /** A bias per image and output channel: columns [offset, offset + Cout) of row row0 + n of `t` [N or 1, >= offset
   *  + Cout] (one row: shared by all images; row0 default 0). ResnetBlock2D adds its time-embedding projection
   *  this way. */
  imageBias?: { t: Tensor; offset: number; row0?: number };
  out?: Tensor;
}

/** x [N, Cin, H, W], w [Cout, Cin, kh, kw] (PyTorch layout), bias [Cout]; stride 1 or 2. Output [N, Cout, Ho, Wo]. */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, opts: Conv2dOpts = {}): Tensor {
  const op = "conv2d";
  if (x.shape.length !== 4) throw new GpuError(`${op}: x has shape [${x.shape}], expected [N, Cin, H, W]`);
  const [B, Cin, H, W] = x.shape;
  assertShape(op, "w", w, [-1, Cin, -1, -1]);
  const [Cout, , KH, KW] = w.shape;
  const stride = opts.stride ?? 1;
  if (!Number.isInteger(stride) || stride < 1) throw new GpuError(`${op}: stride ${stride} must be a positive integer`);
  const pad = opts.padding ?? 0;
  const [pt, pb, pl, pr] = typeof pad === "number" ? [pad, pad, pad, pad] : pad;
  if ([pt, pb, pl, pr].some((v) => !Number.isInteger(v) || v < 0)) {
    throw new GpuError(`${op}: padding [${[pt, pb, pl, pr]}] must be non-negative integers`);
  }
  const Ho = Math.floor((H + pt + pb - KH) / stride) + 1;
  const Wo = Math.floor((W + pl + pr - KW) / stride) + 1;
  if (Ho < 1 || Wo < 1) {
    throw new GpuError(`${op}: a ${KH}x${KW} kernel does not fit input ${H}x${W} with this padding`);
  }
  const outShape = [B, Cout, Ho, Wo];
  const ts = [x, w];
  if (bias) assertShape(op, "bias", bias, [Cout]), ts.push(bias);
  if (opts.residual) assertShape(op, "residual", opts.residual, outShape), ts.push(opts.residual);
  if (opts.out) assertShape(op, "out", opts.out, outShape), ts.push(opts.out);
  const ib = opts.imageBias, ibRow0 = ib?.row0 ?? 0;
  if (ib) {
    const [rows, cols] = ib.t.shape;
    if (
      ib.t.shape.length !== 2 || (rows !== 1 && rows < ibRow0 + B) || !(ib.offset >= 0 && ib.offset + Cout <= cols)
    ) {
      throw new GpuError(
        `${op}: imageBias has shape [${ib.t.shape}] at column ${ib.offset}, expected [${B} or 1, >= ${
          ib.offset + Cout
        }]`,
      );
    }
    ts.push(ib.t);
  }
  assertSameDType(op, ...ts);
  const dev = x.dev;
  const y = opts.out ?? empty(dev, outShape, x.dtype);
  if (y.numel === 0) return y;
  const limit = Math.min(gemmHooks.maxBinding || Infinity, dev.maxBinding);
  const eb = BYTES[x.dtype];
  if (itemsPerBinding(dev, B, [Cin * H * W * eb, Cout * Ho * Wo * eb], limit) === 0) {
    const o = { stride, padding: [pt, pb, pl, pr] as Pad, residual: opts.residual, imageBias: ib };
    return conv2dChannels(x, w, bias, y, o, limit);
  }

  const K = Cin * KH * KW, HWo = Ho * Wo;
  const inPlace = sameRange(opts.residual, y);
  const flags = (bias ? 1 : 0) | (opts.residual ? (inPlace ? 4 : 2) : 0) | (ib ? 8 : 0);
  const ibStride = ib && ib.t.shape[0] > 1 ? ib.t.shape[1] : 0;
  const bytes = BYTES[x.dtype];
  // Images are independent: split the batch when x or y exceeds the binding limit.
  const chunk = chunkItems(op, dev, "images", B, [Cin * H * W * bytes, Cout * HWo * bytes]);
  const slices = (
    fn: (b0: number, nb: number, xs: Tensor, ys: Tensor, rs: Tensor | undefined, ibOff: number) => void,
    per = chunk,
  ) => {
    for (let b0 = 0; b0 < B; b0 += per) {
      const nb = Math.min(per, B - b0);
      const whole = nb === B;
      const xs = whole ? x : x.slice0(b0, nb);
      const ys = whole ? y : y.slice0(b0, nb);
      const rs = opts.residual && !inPlace ? (whole ? opts.residual : opts.residual.slice0(b0, nb)) : undefined;
      fn(b0, nb, xs, ys, rs, ib ? ib.offset + (ibRow0 + b0) * ibStride : 0);
    }
  };
  const directMax = gemmHooks.directConv ?? adapterTiles(dev).directConv?.maxPixels ?? 0;
  if (!gemmHooks.tile && HWo <= directMax) {
    // Few pixels per image: one thread per output, only the taps inside the image (conv2d_direct.wgsl).
    const coFast = HWo * B < Cout;
    const kd = dev.kernel("conv2d_direct", conv2dDirectSrc + epilogueSrc, { KH, KW, COFAST: coFast }, x.dtype);
    slices((_b0, nb, xs, ys, rs, ibOff) => {
      const n = nb * HWo * Cout, { groups, row } = grid1d(n, 64);
      const p = new Params().u(Cout, Cin, H, W, Wo, HWo, nb * HWo, n).i(pt, pl).u(
        stride,
        flags,
        ibOff,
        ibStride,
        row,
        0,
      );
      const xb = xs.binding();
      const ibb = ib ? ib.t.binding() : xb;
      dev.dispatch(
        kd,
        p,
        [xb, w.binding(), bias ? bias.binding() : xb, rs ? rs.binding() : xb, ys.binding(), ibb],
        groups,
      );
    });
    return y;
  }
  gemmHooks.onGemm?.({
    op: "conv2d",
    key: `${Cout}x${B * HWo}x${K}`,
    B,
    Cin,
    Cout,
    H,
    W,
    KH,
    KW,
    stride,
    padding: [pt, pb, pl, pr],
  });
  if (useWinograd(dev, { KH, KW, stride, B, Cin, Cout, HWo })) {
    // 3x3 stride 1: 4/9 (f16) or 1/4 (f32) of the multiplies (pipeline/ops/winograd.ts); the implicit GEMM if not
    // even one row of tiles' scratch fits a binding.
    const passes = winogradPasses(dev, x.shape, y.shape, x.dtype, limit);
    if (passes) {
      slices((_b0, _nb, xs, ys, rs, ebOff) => {
        const c = { x: xs, w, bias, y: ys, padT: pt, padL: pl, res: rs, flags, eb: ib?.t, ebOff, ebStride: ibStride };
        conv2dWinograd(c, passes, limit);
      }, passes.images);
      return y;
    }
  }
  const tile = gemmHooks.tile ?? pickTile(dev, Cout, B * HWo, K, { splitK: true });
  if (threads(tile) % tile.BN !== 0) throw new GpuError(`${op}: tile ${JSON.stringify(tile)} cannot gather`);
  const direct = KH === 1 && KW === 1 && stride === 1 && pt + pb + pl + pr === 0 && HWo % 4 === 0;
  const { BM, BN } = tile;
  const consts = { ...gemmConsts(dev, tile, x.dtype), KH, KW, VEC: K % 4 === 0, DIRECT: direct };
  // Split-K writes f32 partial sums instead of y.
  const kernel = (split: boolean) =>
    dev.kernel(
      "conv2d",
      conv2dSrc + gemmSrc + epilogueSrc,
      { ...consts, OUT: { type: split ? "f32" : x.dtype } },
      x.dtype,
    );
  const wb = vecBinding(op, w);
  slices((_b0, nb, xs, ys, rs, ibOff) => {
    const xb = vecBinding(op, xs);
    const n = nb * Cout * HWo;
    // The partial sums must fit one binding too: fewer slices where they would not.
    let sk = kSlices(K, tile.splitK);
    if (sk.slices > 1 && sk.slices * n * 4 > limit) sk = kSlices(K, Math.floor(limit / (n * 4)));
    const parts = sk.slices > 1 ? empty(dev, [sk.slices * n], "f32") : null;
    const tilesM = Math.ceil(Cout / BM), tilesN = Math.ceil(nb * HWo / BN);
    const g = tileGrid(tilesM, tilesN, sk.slices);
    const p = new Params()
      .u(Cout, Cin, H, W, Wo, HWo, nb * HWo, K)
      .i(pt, pl)
      .u(tilesM, tilesN, g.tiles, g.gx, g.mfast, stride, parts ? 0 : flags)
      .u(ibOff, ibStride, sk.kSplit, parts ? n : 0);
    // Absent bias/residual/imageBias bind x (read-only) as placeholders; the kernel never reads them.
    const ibb = ib ? ib.t.binding() : xb;
    const out = parts ? parts.binding() : ys.binding();
    dev.dispatch(kernel(!!parts), p, [xb, wb, bias ? bias.binding() : xb, rs ? rs.binding() : xb, out, ibb], g.groups);
    if (!parts) return;
    // The slices' sum and the epilogue (absent operands bind the partial sums as placeholders).
    const { groups, row } = grid1d(n, 64);
    const ps = new Params().u(n, sk.slices, Cout, HWo, flags, ibOff, ibStride, row);
    const pb = parts.binding();
    dev.dispatch(
      dev.kernel("splitk_sum", splitkSumSrc + epilogueSrc, {}, x.dtype),
      ps,
      [pb, bias ? bias.binding() : pb, rs ? rs.binding() : pb, ys.binding(), ib ? ib.t.binding() : pb],
      groups,
    );
    parts.release();
  });
  return y;
}

/**
 * A convolution whose single image exceeds the binding limit (a large VAE frame in f32): one call per block of
 * output channels and, when the input image does not fit either, per block of input channels, each block's partial
 * sum added in place to the output. Only the summation order changes, so results move by float rounding only.
 */
function conv2dChannels(
  x: Tensor,
  w: Tensor,
  bias: Tensor | undefined,
  y: Tensor,
  o: { stride: number; padding: Pad; residual?: Tensor; imageBias?: Conv2dOpts["imageBias"] },
  limit: number,
): Tensor {
  const op = "conv2d";
  const [B, Cin, H, W] = x.shape, [Cout, , KH, KW] = w.shape, [, , Ho, Wo] = y.shape;
  const dev = x.dev, eb = BYTES[x.dtype], KK = KH * KW, HWo = Ho * Wo;
  // Weight blocks are copied out (no alignment needed), but must fit too.
  const co = splitItems(op, dev, "output channels", Cout, [HWo * eb], limit, Math.floor(limit / (Cin * KK * eb)));
  const ci = splitItems(op, dev, "input channels", Cin, [H * W * eb], limit);
  const inPlace = sameRange(o.residual, y);
  for (let b = 0; b < B; b++) {
    for (let co0 = 0; co0 < Cout; co0 += co) {
      const m = Math.min(co, Cout - co0);
      const ys = y.view([1, m, Ho, Wo], (b * Cout + co0) * HWo);
      const rs = o.residual && (inPlace ? ys : o.residual.view([1, m, Ho, Wo], (b * Cout + co0) * HWo));
      let bs: Tensor | undefined;
      if (bias) {
        bs = empty(dev, [m], bias.dtype);
        blockCopy(bias, bs, { n: m, blk: m, ss: 0, ds: 0, so: co0, do: 0 });
      }
      for (let ci0 = 0; ci0 < Cin; ci0 += ci) {
        const n = Math.min(ci, Cin - ci0);
        const xs = x.view([1, n, H, W], (b * Cin + ci0) * (H * W));
        // w[co0 : co0 + m, ci0 : ci0 + n] as its own [m, n, KH, KW] tensor.
        const ws = empty(dev, [m, n, KH, KW], w.dtype);
        blockCopy(w, ws, { n: m * n * KK, blk: n * KK, ss: Cin * KK, ds: n * KK, so: (co0 * Cin + ci0) * KK, do: 0 });
        const first = ci0 === 0;
        const ib = o.imageBias;
        conv2d(xs, ws, first ? bs : undefined, {
          stride: o.stride,
          padding: o.padding,
          residual: first ? (rs || undefined) : ys,
          imageBias: first && ib ? { t: ib.t, offset: ib.offset + co0, row0: (ib.row0 ?? 0) + b } : undefined,
          out: ys,
        });
        ws.release();
      }
      bs?.release();
    }
  }
  return y;
}
