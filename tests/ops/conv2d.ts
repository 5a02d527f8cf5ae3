import { conv2d } from "../../pipeline/ops/conv2d.ts";
import { gemmHooks, type GemmTile, pickTile, TILES } from "../../pipeline/ops/matmul.ts";
import type { WinogradTile } from "../../pipeline/ops/winograd.ts";
import type { DType } from "../../pipeline/gpu/device.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import { gemmTol, gemmVariant, probeRows, withF16Math } from "./matmul.ts";
import type { OpCase, PerfCase } from "./types.ts";

type Pad = [number, number, number, number];

/** float64 direct convolution (zero padding) + bias + residual over dtype-rounded inputs. */
function convRef(
  x: Float32Array,
  w: Float32Array,
  [B, Cin, H, W]: number[],
  [Cout, KH, KW]: number[],
  stride: number,
  [pt, pb, pl, pr]: Pad,
  bias?: Float32Array,
  res?: Float32Array,
): Float32Array {
  const Ho = Math.floor((H + pt + pb - KH) / stride) + 1, Wo = Math.floor((W + pl + pr - KW) / stride) + 1;
  const y = new Float32Array(B * Cout * Ho * Wo);
  const acc = new Float64Array(Ho * Wo);
  for (let b = 0; b < B; b++) {
    for (let co = 0; co < Cout; co++) {
      acc.fill(bias ? bias[co] : 0);
      for (let ci = 0; ci < Cin; ci++) {
        const xo = (b * Cin + ci) * H * W;
        for (let ky = 0; ky < KH; ky++) {
          for (let kx = 0; kx < KW; kx++) {
            const wv = w[((co * Cin + ci) * KH + ky) * KW + kx];
            for (let oy = 0; oy < Ho; oy++) {
              const iy = oy * stride - pt + ky;
              if (iy < 0 || iy >= H) continue;
              for (let ox = 0; ox < Wo; ox++) {
                const ix = ox * stride - pl + kx;
                if (ix >= 0 && ix < W) acc[oy * Wo + ox] += wv * x[xo + iy * W + ix];
              }
            }
          }
        }
      }
      const yo = (b * Cout + co) * Ho * Wo;
      for (let i = 0; i < Ho * Wo; i++) y[yo + i] = acc[i] + (res ? res[yo + i] : 0);
    }
  }
  return y;
}

interface ConvShape {
  x: [number, number, number, number];
  Cout: number;
  k: number;
  stride?: number;
  pad?: number | Pad;
  bias: boolean;
  res: boolean;
  tile?: GemmTile;
  maxBinding?: number;
  /** Forced workgroups-per-dimension limit (folded grid). */
  maxGroups?: number;
  /** residual passed as `out` too (in-place skip connection). */
  inPlace?: boolean;
  /** Force the direct kernel (a thread per output) instead of the tiled implicit GEMM. */
  direct?: boolean;
  /** Per-image bias: "shared" (one row for all images) or "per-image" (one row each), read at column 3. */
  imageBias?: "shared" | "per-image";
  /** Winograd forced (pipeline/ops/winograd.ts; `tile`: its GEMM's), run in this many passes (0: it must fall back to
   *  the implicit GEMM); every other case pins the implicit GEMM. */
  winograd?: number;
  /** Winograd's tile (F(2x2, 3x3) or F(4x4, 3x3)); unset: both (`tiled`). */
  wtile?: WinogradTile;
}

function convCase(s: ConvShape, dtype: DType): OpCase {
  const [B, Cin, H, W] = s.x;
  const stride = s.stride ?? 1;
  const pad: Pad = typeof s.pad === "object" ? s.pad : [s.pad ?? 0, s.pad ?? 0, s.pad ?? 0, s.pad ?? 0];
  const Ho = Math.floor((H + pad[0] + pad[1] - s.k) / stride) + 1,
    Wo = Math.floor((W + pad[2] + pad[3] - s.k) / stride) + 1;
  const extras = [
    `k=${s.k}`,
    stride !== 1 && `s=${stride}`,
    `pad=${typeof s.pad === "object" ? `[${s.pad}]` : s.pad ?? 0}`,
    s.bias && "bias",
    s.res && (s.inPlace ? "res=out" : "res"),
    s.tile &&
    `tile=${s.tile.BM}x${s.tile.BN}${s.tile.splitK ? ` splitK=${s.tile.splitK}` : ""}${
      s.tile.unroll ? ` unroll=${s.tile.unroll}` : ""
    }`,
    s.maxBinding && `split@${s.maxBinding}B`,
    s.maxGroups && `grid<=${s.maxGroups}`,
    s.imageBias && `imageBias=${s.imageBias}`,
    s.direct && "direct",
    s.winograd !== undefined &&
    (s.winograd
      ? `winograd F(${s.wtile}x${s.wtile})${s.winograd > 1 ? ` in ${s.winograd} passes` : ""}`
      : "winograd asked, u past the limit"),
  ].filter(Boolean);
  return {
    op: "conv2d",
    shape: `x=[${s.x}] Cout=${s.Cout} ${extras.join(" ")}`,
    dtype,
    tol: gemmTol(dtype),
    async run(dev) {
      const K = Cin * s.k * s.k, seed = B * 1000 + Cin * 31 + s.Cout * 7 + H * 3 + W;
      const x = quantize(randn(B * Cin * H * W, seed), dtype);
      const w = quantize(randn(s.Cout * K, seed + 1, 1 / Math.sqrt(K)), dtype);
      const b = s.bias ? quantize(randn(s.Cout, seed + 2, 0.5), dtype) : undefined;
      const r = s.res ? quantize(randn(B * s.Cout * Ho * Wo, seed + 3), dtype) : undefined;
      const tx = up(dev, x, s.x, dtype), tw = up(dev, w, [s.Cout, Cin, s.k, s.k], dtype);
      const tb = b && up(dev, b, [s.Cout], dtype);
      const tr = r && up(dev, r, [B, s.Cout, Ho, Wo], dtype);
      // The bias table has 3 extra columns on each side, as a resnet's slice of the stacked time projections.
      const ebRows = s.imageBias === "per-image" ? B : 1, ebCols = s.Cout + 6;
      const eb = s.imageBias ? quantize(randn(ebRows * ebCols, seed + 4), dtype) : undefined;
      const teb = eb && up(dev, eb, [ebRows, ebCols], dtype);
      gemmHooks.tile = s.tile ?? null;
      gemmHooks.maxBinding = s.maxBinding ?? 0;
      gemmHooks.maxGroups = s.maxGroups ?? 0;
      gemmHooks.directConv = s.direct ? Infinity : 0;
      gemmHooks.winograd = s.winograd !== undefined;
      gemmHooks.winogradTile = s.wtile ?? null;
      const before = dev.dispatches;
      let y;
      try {
        y = conv2d(tx, tw, tb, {
          stride,
          padding: s.pad,
          residual: tr,
          out: s.inPlace ? tr : undefined,
          imageBias: teb && { t: teb, offset: 3 },
        });
      } finally {
        gemmHooks.tile = null;
        gemmHooks.maxBinding = 0;
        gemmHooks.maxGroups = 0;
        gemmHooks.directConv = null;
        gemmHooks.winograd = null;
        gemmHooks.winogradTile = null;
      }
      // Winograd: input transform, GEMMs, output transform per pass (the weight's transform once).
      const ran = dev.dispatches - before;
      if (s.winograd === 0 && ran !== 1) throw new Error(`${ran} dispatches: not the implicit GEMM`);
      if (s.winograd && ran !== 3 * s.winograd && ran !== 3 * s.winograd + 1) {
        throw new Error(`${ran} dispatches: not Winograd in ${s.winograd} passes`);
      }
      if (s.maxBinding && s.winograd !== 0 && dev.dispatches - before < 2) {
        throw new Error("the forced split did not happen");
      }
      if (s.tile?.splitK && dev.dispatches - before < 2) throw new Error("split-K made no partial-sums pass");
      const got = await y.read();
      for (const t of new Set([tx, tw, tb, tr, teb, y])) t?.release();
      const want = convRef(x, w, s.x, [s.Cout, s.k, s.k], stride, pad, b, r);
      if (eb) {
        const HWo = Ho * Wo;
        for (let i = 0; i < want.length; i++) {
          const img = Math.floor(i / (s.Cout * HWo)), co = Math.floor(i / HWo) % s.Cout;
          want[i] += eb[(ebRows > 1 ? img : 0) * ebCols + 3 + co];
        }
      }
      return { got, want: quantize(want, dtype) };
    },
  };
}

const TILE64: GemmTile = { BM: 64, BN: 64, TM: 4, TN: 4 };
const shapes: ConvShape[] = [
  { x: [1, 1, 1, 1], Cout: 1, k: 1, bias: false, res: false },
  { x: [2, 4, 8, 12], Cout: 5, k: 3, pad: 1, bias: true, res: false }, // UNet conv_in-like, tiny
  { x: [3, 19, 5, 7], Cout: 33, k: 3, pad: 1, bias: true, res: true }, // odd spatial, batch 3, K = 171
  { x: [2, 64, 1, 2], Cout: 64, k: 3, pad: 1, bias: true, res: false }, // 1x2: most taps in the padding
  { x: [2, 16, 13, 11], Cout: 24, k: 3, stride: 2, pad: 1, bias: true, res: false }, // downsample
  { x: [2, 8, 8, 8], Cout: 12, k: 3, stride: 2, pad: [0, 1, 0, 1], bias: true, res: false }, // VAE downsample
  { x: [3, 40, 6, 6], Cout: 24, k: 1, bias: true, res: true }, // 1x1, HW % 4 == 0: direct vec4 loads
  { x: [2, 7, 5, 7], Cout: 9, k: 1, bias: false, res: true }, // 1x1, HW % 4 != 0: gathered
  { x: [1, 32, 10, 10], Cout: 4, k: 3, pad: 1, bias: true, res: false }, // conv_out: tiny M
  { x: [2, 64, 16, 16], Cout: 80, k: 3, pad: 1, bias: true, res: true },
  { x: [1, 6, 9, 9], Cout: 8, k: 3, pad: 0, bias: false, res: false }, // valid conv
  { x: [2, 12, 6, 5], Cout: 12, k: 3, pad: 1, bias: true, res: true, inPlace: true },
  // Folded grid: 2 x 5 tiles of 64x64 on a 4 x 3 grid.
  { x: [2, 8, 13, 11], Cout: 70, k: 3, pad: 1, bias: true, res: false, tile: TILE64, maxGroups: 4 },
  // Split into several dispatches by image (binding limit forced down).
  { x: [3, 8, 8, 8], Cout: 16, k: 3, pad: 1, bias: true, res: true, maxBinding: 4096 },
  { x: [5, 16, 4, 4], Cout: 8, k: 1, bias: false, res: false, maxBinding: 1024 },
  // ResnetBlock2D's conv1 with the time-embedding projection in the epilogue (one row or one per image; split).
  { x: [2, 19, 5, 6], Cout: 13, k: 3, pad: 1, bias: true, res: false, imageBias: "shared" },
  { x: [3, 8, 7, 5], Cout: 21, k: 3, pad: 1, bias: true, res: true, imageBias: "per-image" },
  { x: [3, 8, 8, 8], Cout: 16, k: 3, pad: 1, bias: true, res: false, maxBinding: 4096, imageBias: "per-image" },
  // One f32 image exceeds the limit: split by channel blocks (the per-image bias follows image and block).
  { x: [2, 8, 8, 8], Cout: 16, k: 3, pad: 1, bias: true, res: true, maxBinding: 1024, imageBias: "per-image" },
  // Split-K: slices of K summed by a second pass that applies the epilogue (bias, per-image bias, residual, in place),
  // ragged last slice with K % 4 != 0, 1x1 direct loads, folded grid with idle tail workgroups, and partial sums
  // that would exceed the binding limit (fewer slices then).
  {
    x: [2, 40, 5, 6],
    Cout: 33,
    k: 3,
    pad: 1,
    bias: true,
    res: true,
    imageBias: "per-image",
    tile: { ...TILE64, splitK: 3 },
  },
  { x: [2, 19, 4, 5], Cout: 21, k: 3, pad: 1, bias: true, res: false, tile: { ...TILE64, splitK: 4 } },
  { x: [2, 64, 4, 6], Cout: 24, k: 1, bias: true, res: true, tile: { ...TILE64, splitK: 2 } },
  { x: [2, 12, 6, 5], Cout: 12, k: 3, pad: 1, bias: true, res: true, inPlace: true, tile: { ...TILE64, splitK: 2 } },
  { x: [2, 8, 13, 11], Cout: 70, k: 3, pad: 1, bias: true, res: false, tile: { ...TILE64, splitK: 3 }, maxGroups: 4 },
  { x: [3, 32, 4, 4], Cout: 16, k: 3, pad: 1, bias: true, res: true, tile: { ...TILE64, splitK: 8 }, maxBinding: 6144 },
];
// The inner loop unrolled (shaders/gemm.wgsl UNROLL): the whole K-tile with split-K, four steps on 8x4 blocks.
shapes.push(
  { x: [2, 19, 6, 7], Cout: 40, k: 3, pad: 1, bias: true, res: true, tile: { ...TILE64, splitK: 2, unroll: 16 } },
  {
    x: [2, 24, 9, 9],
    Cout: 70,
    k: 3,
    pad: 1,
    bias: true,
    res: false,
    tile: { BM: 128, BN: 64, TM: 8, TN: 4, unroll: 4 },
  },
);
// The direct kernel (small outputs): padding in every direction, stride 2, 1x1, valid, odd shapes, channel-fast and
// pixel-fast thread orders, residual in place, per-image bias, image split.
for (
  const d of [
    { x: [2, 64, 1, 1], Cout: 64, k: 3, pad: 1, bias: true, res: true },
    { x: [2, 19, 2, 3], Cout: 33, k: 3, pad: 1, bias: true, res: false, imageBias: "per-image" },
    { x: [2, 16, 13, 11], Cout: 24, k: 3, stride: 2, pad: 1, bias: true, res: false },
    { x: [2, 8, 8, 8], Cout: 12, k: 3, stride: 2, pad: [0, 1, 0, 1], bias: true, res: false },
    { x: [2, 7, 5, 7], Cout: 9, k: 1, bias: false, res: true, imageBias: "shared" },
    { x: [1, 6, 9, 9], Cout: 8, k: 3, pad: 0, bias: false, res: false },
    { x: [2, 12, 6, 5], Cout: 12, k: 3, pad: 1, bias: true, res: true, inPlace: true },
    { x: [3, 8, 8, 8], Cout: 16, k: 3, pad: 1, bias: true, res: true, maxBinding: 4096, imageBias: "per-image" },
  ] as ConvShape[]
) shapes.push({ ...d, direct: true });
// Every tile variant (alone and with K split in two): gathered 3x3 (K % 4 != 0, strided, asymmetric padding) and direct 1x1.
for (const tile of TILES) {
  shapes.push({ x: [3, 5, 9, 11], Cout: 37, k: 3, stride: 2, pad: [0, 1, 0, 1], bias: true, res: true, tile });
  const split = { ...tile, splitK: 2 };
  shapes.push({ x: [3, 5, 9, 11], Cout: 37, k: 3, stride: 2, pad: [0, 1, 0, 1], bias: true, res: true, tile: split });
  shapes.push({ x: [2, 36, 6, 10], Cout: 70, k: 1, bias: true, res: true, tile });
}

// Winograd, F(2x2, 3x3) and F(4x4, 3x3) (`tiled`, below): odd outputs (partial tiles), K % 4 != 0, valid and
// asymmetric padding, every epilogue (bias, per-image bias, residual, in place), split-K slices summed by the output
// transform, passes of images under a forced binding limit (the per-image bias follows), bands of rows, and each
// candidate tile as its GEMM's. The passes cases pin their tile: the limits that make them are the tile's.
shapes.push(
  { x: [3, 19, 5, 7], Cout: 33, k: 3, pad: 1, bias: true, res: true, winograd: 1 },
  { x: [2, 8, 9, 6], Cout: 12, k: 3, pad: 0, bias: false, res: false, winograd: 1 },
  { x: [2, 12, 7, 8], Cout: 20, k: 3, pad: [0, 1, 1, 0], bias: true, res: false, imageBias: "shared", winograd: 1 },
  { x: [2, 12, 6, 5], Cout: 12, k: 3, pad: 1, bias: true, res: true, inPlace: true, winograd: 1 },
  {
    x: [2, 40, 5, 6],
    Cout: 33,
    k: 3,
    pad: 1,
    bias: true,
    res: true,
    imageBias: "per-image",
    tile: { ...TILE64, splitK: 2 },
    winograd: 1,
  },
  {
    x: [3, 16, 8, 8],
    Cout: 16,
    k: 3,
    pad: 1,
    bias: true,
    res: true,
    imageBias: "per-image",
    maxBinding: 20000,
    winograd: 3,
    wtile: 2,
  },
  // F(4x4, 3x3)'s own: three images in three passes.
  {
    x: [3, 8, 8, 8],
    Cout: 8,
    k: 3,
    pad: 1,
    bias: true,
    res: true,
    imageBias: "per-image",
    maxBinding: 12000,
    winograd: 3,
    wtile: 4,
  },
);
// One image's scratch too big for the (forced) limit: bands of tile rows, one (ragged) row each, then two images in two
// bands each (the per-image bias follows the image).
shapes.push(
  { x: [1, 8, 10, 9], Cout: 8, k: 3, pad: 1, bias: true, res: true, maxBinding: 5000, winograd: 5, wtile: 2 },
  { x: [1, 8, 10, 9], Cout: 8, k: 3, pad: 1, bias: true, res: true, maxBinding: 10000, winograd: 3, wtile: 4 },
  {
    x: [2, 16, 8, 16],
    Cout: 16,
    k: 3,
    pad: 1,
    bias: true,
    res: false,
    imageBias: "per-image",
    maxBinding: 20000,
    winograd: 4,
    wtile: 2,
  },
  {
    x: [2, 8, 8, 16],
    Cout: 8,
    k: 3,
    pad: 1,
    bias: true,
    res: false,
    imageBias: "per-image",
    maxBinding: 10000,
    winograd: 4,
    wtile: 4,
  },
);
// A transformed weight past the (forced) binding limit: the implicit GEMM, however Winograd is asked for.
shapes.push({ x: [1, 32, 4, 4], Cout: 32, k: 3, pad: 1, bias: true, res: false, maxBinding: 30000, winograd: 0 });
for (const tile of TILES) {
  shapes.push({ x: [2, 24, 9, 10], Cout: 36, k: 3, pad: 1, bias: true, res: false, tile, winograd: 1 });
}

// Each Winograd shape in F(2x2, 3x3) (f32 and f16) and F(4x4, 3x3) (f32: never taken in f16, see winogradTile), but
// those whose passes are a tile's own.
const tiled = (s: ConvShape): ConvShape[] => s.winograd && !s.wtile ? [{ ...s, wtile: 2 }, { ...s, wtile: 4 }] : [s];
export const cases: OpCase[] = withF16Math(
  DTYPES.flatMap((dtype) =>
    shapes.flatMap(tiled).filter((s) => s.wtile !== 4 || dtype === "f32").map((s) => convCase(s, dtype))
  ),
);

/** `whole`: the pick for this shape without its split of K (beside the pick, it shows what split-K buys). */
function convPerf(B: number, Cin: number, Cout: number, HW: number, k: number, stride = 1, whole = false): PerfCase {
  const pad = k === 3 ? 1 : 0;
  const Ho = Math.floor((HW + 2 * pad - k) / stride) + 1;
  return {
    op: "conv2d",
    shape: `x=[${B},${Cin},${HW},${HW}] Cout=${Cout} k=${k}${stride > 1 ? ` s=${stride}` : ""}${
      whole ? " no split-K" : ""
    }`,
    flops: 2 * Cout * B * Ho * Ho * Cin * k * k,
    bytes: (B * Cin * HW * HW + Cout * Cin * k * k + B * Cout * Ho * Ho) * 4,
    setup(dev, dtype) {
      const x = up(dev, randn(B * Cin * HW * HW, 1), [B, Cin, HW, HW], dtype);
      const w = up(dev, randn(Cout * Cin * k * k, 2, 1 / Math.sqrt(Cin * k * k)), [Cout, Cin, k, k], dtype);
      const b = up(dev, randn(Cout, 3), [Cout], dtype);
      const y = up(dev, randn(B * Cout * Ho * Ho, 4), [B, Cout, Ho, Ho], dtype);
      const run = () => conv2d(x, w, b, { stride, padding: pad, out: y });
      if (!whole) return run;
      const { BM, BN, TM, TN } = pickTile(dev, Cout, B * Ho * Ho, Cin * k * k, { splitK: true });
      return () => {
        gemmHooks.tile = { BM, BN, TM, TN };
        try {
          run();
        } finally {
          gemmHooks.tile = null;
        }
      };
    },
  };
}

// SD 1.5 UNet (64x64 latent, batch 2) and VAE decoder (1 image) convolutions; the 16x16 and 8x8 levels also without
// split-K (a large GPU splits them at batch 2).
const c64 = convPerf(2, 320, 320, 64, 3), c32 = convPerf(2, 640, 640, 32, 3), c16 = convPerf(2, 1280, 1280, 16, 3);
const vae128 = convPerf(1, 512, 512, 128, 3);
const c8 = convPerf(2, 1280, 1280, 8, 3);
// Winograd (the adapter's tile, and in f32 each tile) against the implicit GEMM on SD's 3x3 shapes, whichever the
// adapter picks by default.
const winogradRows = ["winograd", "winograd F(2x2)", "winograd F(4x4)", "implicit GEMM"] as const;
const winograd = [c64, c32, c16, c8, vae128].flatMap((c) => winogradRows.map((v) => gemmVariant(c, v)));
export const perf: PerfCase[] = [
  c64,
  gemmVariant(c64, "f16math"),
  gemmVariant(c64, "no prefetch"),
  gemmVariant(c64, "unrolled x4"),
  gemmVariant(c64, "unrolled x16"),
  ...probeRows(c64),
  c32,
  gemmVariant(c32, "f16math"),
  c16,
  gemmVariant(c16, "f16math"),
  convPerf(2, 1280, 1280, 16, 3, 1, true),
  c8,
  convPerf(2, 1280, 1280, 8, 3, 1, true),
  convPerf(2, 320, 320, 64, 3, 2),
  convPerf(2, 640, 320, 64, 1),
  vae128,
  gemmVariant(vae128, "f16math"),
  convPerf(1, 256, 256, 256, 3),
  convPerf(1, 128, 128, 512, 3),
  ...winograd,
];
