// 3x3 stride-1 convolutions by Winograd's minimal filtering (Lavin & Gray 2016): F(2x2, 3x3) computes a 2x2 output
// tile of one channel pair with 16 multiplies instead of 36 (4/9 of the implicit GEMM's work), F(4x4, 3x3) a 4x4 tile
// with 36 instead of 144 (1/4). WebGPU gives only plain FMAs (no tensor cores), so cutting the multiplies is the lever
// left on SD's 3x3 convolutions. Paid for with three passes over memory and a transformed copy of each weight (a tile
// t has (t + 2)^2 = XI products; the F(4x4, 3x3) shaders are the winograd4_* ones):
//   u = G g G^T      shaders/winograd_weights.wgsl  once per weight, cached while the weight lives (XI/9 its size)
//   v = B^T d B      shaders/winograd_input.wgsl    x -> [XI][Cin][P], P = the output's tiles (rounded to 4)
//   m = u @ v        shaders/winograd_gemm.wgsl     XI GEMMs in one dispatch on the shared core (split-K too)
//   y = A^T m A      shaders/winograd_output.wgsl   + conv2d's epilogue (bias, per-image bias, residual)
// f16 runs take F(2x2, 3x3), f32 runs F(4x4, 3x3) where the adapter's entry says so (winogradTile).
// Rounding: m stays f32, u is rounded to the weight's dtype once, v is kept in the GEMM's multiply type (f32, or f16
// under F16MATH, which would round it to f16 in shared memory anyway: same bits, half the bytes); in f32 the result
// moves by float rounding only.
import gemmSrc from "../../shaders/gemm.wgsl" with { type: "text" };
import weightsSrc from "../../shaders/winograd_weights.wgsl" with { type: "text" };
import inputSrc from "../../shaders/winograd_input.wgsl" with { type: "text" };
import winogradGemmSrc from "../../shaders/winograd_gemm.wgsl" with { type: "text" };
import outputSrc from "../../shaders/winograd_output.wgsl" with { type: "text" };
import inputIoSrc from "../../shaders/winograd_input_io.wgsl" with { type: "text" };
import outputIoSrc from "../../shaders/winograd_output_io.wgsl" with { type: "text" };
import weights4Src from "../../shaders/winograd4_weights.wgsl" with { type: "text" };
import input4Src from "../../shaders/winograd4_input.wgsl" with { type: "text" };
import output4Src from "../../shaders/winograd4_output.wgsl" with { type: "text" };
import epilogueSrc from "../../shaders/conv_epilogue.wgsl" with { type: "text" };
import { envSwitch } from "../gpu/switch.ts";
import { BYTES, type Device, type DType, Params } from "../gpu/device.ts";
import { empty, emptyOwned, type Tensor } from "../gpu/tensor.ts";
import { grid1d, itemsPerBinding, vecBinding } from "./launch.ts";
import { adapterTiles, gemmConsts, gemmHooks, kSlices, pickTile, tileGrid } from "./matmul.ts";

/** Winograd's output tile, `t` outputs a side: F(2x2, 3x3) or F(4x4, 3x3). */
export type WinogradTile = 2 | 4;

/** The products of a tile, one GEMM each: 16 (F(2x2, 3x3)) or 36 (F(4x4, 3x3)). */
export const products = (t: WinogradTile) => (t + 2) ** 2;

/** Each tile's transforms (kernel name and source), and the tiles one thread of its input transform does (F(2x2):
 *  four, stored as vec4s along the tiles). */
const TRANSFORMS = {
  2: {
    weights: ["winograd_weights", weightsSrc],
    input: ["winograd_input", inputSrc],
    output: ["winograd_output", outputSrc],
    inputTiles: 4,
  },
  4: {
    weights: ["winograd4_weights", weights4Src],
    input: ["winograd4_input", input4Src],
    output: ["winograd4_output", output4Src],
    inputTiles: 1,
  },
} as const;

/** The tile a convolution of this dtype prefers here: gemmHooks.winogradTile, else F(2x2, 3x3) in f16 runs, and in
 *  f32 runs F(4x4, 3x3) where the adapter entry gives `winograd.f4MinTiles` (and the pass has that many tiles:
 *  winogradPasses). F(4x4, 3x3)'s transforms have larger coefficients, which amplify the rounding of the transformed
 *  weights: on SD-sized convolutions (320 channels) against float64, rel. L2 2.0e-6 against F(2x2)'s 3.1e-7 in f32
 *  (float rounding still), but 2.2e-3 against 3.4e-4 with u rounded to f16, about ten times an f16 output's own
 *  rounding; hence never in f16. And its u is 4x the weight's bytes (F(2x2)'s 16/9): SD 1.5's UNet has 541 M 3x3
 *  weights, 8.7 GB of u in f32 (3.8 GB with F(2x2)), so an entry turns it on only where that memory is there and the
 *  speed was measured. */
export function winogradTile(dev: Device, dtype: DType): WinogradTile {
  return tileOrder(dev, dtype)[0];
}

/** The tiles a convolution may run, in order: winogradTile, then F(2x2, 3x3) after F(4x4, 3x3) (its transformed
 *  weight is 4/9 as big: 1280-channel f32 ones fit a 128 MiB binding only so). A forced tile is the only one. */
function tileOrder(dev: Device, dtype: DType): WinogradTile[] {
  if (gemmHooks.winogradTile) return [gemmHooks.winogradTile];
  return dtype === "f32" && adapterTiles(dev).winograd?.f4MinTiles !== undefined ? [4, 2] : [2];
}
/** The most bytes one Winograd scratch buffer (v or m) may take: more work runs in passes (of images, or of bands of
 *  tile rows), so the scratch adds a bounded amount to the pool's high-water mark. */
export const SCRATCH_BYTES = 256 << 20;

/** A convolution as conv2d sees it, after its checks: one pass of images (conv2d cuts the batch by
 *  winogradPasses().images). */
export interface WinogradConv {
  x: Tensor;
  w: Tensor;
  bias?: Tensor;
  y: Tensor;
  /** Top and left zero padding (bottom and right follow from the output size). */
  padT: number;
  padL: number;
  /** Residual read (not in place: flags 4 reads y itself). */
  res?: Tensor;
  /** conv2d's epilogue flags (shaders/conv_epilogue.wgsl) and per-image bias table (ebOff: this pass's first image). */
  flags: number;
  eb?: Tensor;
  ebOff: number;
  ebStride: number;
}

/** Whether a convolution of this shape runs by Winograd: 3x3 with stride 1 only; then the test hook, else
 *  $ZEROVID_WINOGRAD (on/off: A/B timing), else a shape measured on this adapter (the tile table or a tiles file:
 *  `winograd` on the conv's implicit-GEMM key "Cout x pixels x K"), else the adapter entry's `winograd` rule. A test's
 *  forced tile keeps the implicit GEMM unless Winograd is forced too. */
export function useWinograd(
  dev: Device,
  s: { KH: number; KW: number; stride: number; B: number; Cin: number; Cout: number; HWo: number },
): boolean {
  if (!winogradShape(s)) return false;
  const forced = gemmHooks.winograd ?? winogradEnv();
  if (forced !== null) return forced;
  if (gemmHooks.tile) return false;
  const table = adapterTiles(dev);
  const known = table.shapes?.[`${s.Cout}x${s.B * s.HWo}x${s.Cin * 9}`]?.winograd;
  if (known !== undefined) return known;
  const rule = table.winograd;
  return !!rule && s.Cin >= rule.minChannels && s.Cout >= rule.minChannels && s.B * s.HWo >= rule.minPixels;
}

/** The convolutions F(2x2, 3x3) computes: 3x3 kernels at stride 1 (any padding). */
export function winogradShape(s: { KH: number; KW: number; stride: number }): boolean {
  return s.KH === 3 && s.KW === 3 && s.stride === 1;
}

let envWino: boolean | null | undefined;
const winogradEnv = () => envWino === undefined ? envWino = envSwitch("ZEROVID_WINOGRAD") : envWino;

/** The key pickTile sees for a Winograd GEMM (xi batched GEMMs of Cout x P x Cin). */
export function winogradKey(Cout: number, P: number, Cin: number, xi: number): string {
  return `${Cout}x${P}x${Cin}x${xi}`;
}

/** How a convolution's Winograd work is cut into passes: `images` per pass, and `rows` of tiles of each image per
 *  pass (all of them unless one image's scratch is too big: then one image at a time, in bands of rows); `tile`: the
 *  tile it runs (winogradTile). */
export interface WinogradPasses {
  images: number;
  rows: number;
  tile: WinogradTile;
}

/** The passes that keep v and m within SCRATCH_BYTES and the binding limit (x, y views at aligned offsets), for the
 *  first of the dtype's tiles that fits (F(4x4, 3x3), unless forced, only with the entry's `f4MinTiles` 4x4 tiles a
 *  pass: fewer make its 36 GEMMs too narrow to pay); null when not even one row of tiles fits, or the transformed
 *  weight does not fit one binding (conv2d then keeps the implicit GEMM). */
export function winogradPasses(
  dev: Device,
  x: readonly number[],
  y: readonly number[],
  dtype: DType,
  limit: number,
): WinogradPasses | null {
  const order = tileOrder(dev, dtype), minTiles = adapterTiles(dev).winograd?.f4MinTiles ?? 0;
  for (const tile of order) {
    const passes = passesOf(dev, tile, x, y, BYTES[dtype], limit);
    const narrow = order.length > 1 && tile === 4 && passes &&
      passes.images * passes.rows * Math.ceil(y[3] / tile) < minTiles;
    if (passes && !narrow) return passes;
  }
  return null;
}

function passesOf(
  dev: Device,
  tile: WinogradTile,
  [B, Cin, H, W]: readonly number[],
  [, Cout, Ho, Wo]: readonly number[],
  eb: number,
  limit: number,
): WinogradPasses | null {
  const XI = products(tile);
  const TH = Math.ceil(Ho / tile), TW = Math.ceil(Wo / tile), C = Math.max(Cin, Cout);
  if (XI * Cout * Cin * eb > limit) return null;
  const scratch = Math.min(limit, SCRATCH_BYTES) - XI * 4 * 3 * C; // P's rounding to 4
  const perRow = XI * 4 * TW * C;
  const rows = Math.floor(scratch / perRow);
  if (rows < 1) return null;
  const images = itemsPerBinding(dev, B, [Cin * H * W * eb, Cout * Ho * Wo * eb], limit, Math.max(1, rows / TH));
  if (images < 1) return null;
  return { images, rows: Math.min(rows, TH), tile };
}

/** The measured-shapes key of the Winograd GEMMs of a convolution's first pass (x, y shapes). */
export function winogradGemmKey(dev: Device, x: readonly number[], y: readonly number[], dtype: DType): string {
  const ps = winogradPasses(dev, x, y, dtype, dev.maxBinding) ?? { images: 1, rows: 1, tile: winogradTile(dev, dtype) };
  const P = Math.ceil(ps.images * ps.rows * Math.ceil(y[3] / ps.tile) / 4) * 4;
  return winogradKey(y[1], P, x[1], products(ps.tile));
}

/** y = conv2d(x, w) (+ epilogue) by Winograd for the images of one pass, `passes.rows` rows of tiles at a time. */
export function conv2dWinograd(c: WinogradConv, passes: WinogradPasses, limit: number): void {
  const dev = c.x.dev, dtype = c.x.dtype, { rows: band, tile: t } = passes, XI = products(t), code = TRANSFORMS[t];
  const [B, Cin, H, W] = c.x.shape, [, Cout, Ho, Wo] = c.y.shape;
  const TH = Math.ceil(Ho / t), TW = Math.ceil(Wo / t);
  const ub = vecBinding("conv2d", transformedWeight(c.w, t));
  const kOut = dev.kernel(code.output[0], outputIoSrc + code.output[1] + epilogueSrc, { TILE: t }, dtype);
  for (let ty0 = 0; ty0 < TH; ty0 += band) {
    // Tile rows [ty0, ty0 + rows) of every image.
    const rows = Math.min(band, TH - ty0);
    const tiles = B * rows * TW, P = Math.ceil(tiles / 4) * 4;
    const tile = gemmHooks.winograd && gemmHooks.tile ||
      pickTile(dev, Cout, P, Cin, { splitK: true, batch: XI, key: winogradKey(Cout, P, Cin, XI) });
    const core = gemmConsts(dev, tile, dtype);
    const V = core.F16MATH ? "f16" : "f32";

    const v = empty(dev, [XI, Cin, P], V);
    const kIn = dev.kernel(code.input[0], inputIoSrc + code.input[1], { V: { type: V }, TILE: t }, dtype);
    const n = Cin * P / code.inputTiles, gi = grid1d(n, 64);
    const pi = new Params().u(n, P, Cin, H, W, rows, TW, tiles, ty0).i(c.padT, c.padL).u(gi.row);
    dev.dispatch(kIn, pi, [c.x.binding(), v.binding()], gi.groups);

    let sk = kSlices(Cin, tile.splitK);
    const plane = XI * Cout * P;
    if (sk.slices > 1 && sk.slices * plane * 4 > Math.min(limit, SCRATCH_BYTES)) sk = kSlices(Cin, 1);
    const m = empty(dev, [sk.slices * plane], "f32");
    const consts = { ...core, VEC: Cin % 4 === 0, V: { type: V } };
    const kGemm = dev.kernel("winograd_gemm", winogradGemmSrc + gemmSrc, consts, dtype);
    const tilesM = Math.ceil(Cout / tile.BM), tilesN = Math.ceil(P / tile.BN);
    const g = tileGrid(tilesM, tilesN, sk.slices);
    const pg = new Params().u(Cout, Cin, P, tilesM, tilesN, g.tiles, g.gx, g.mfast, sk.kSplit, plane);
    dev.dispatch(kGemm, pg, [ub, v.binding(), m.binding()], [...g.groups, XI]);
    v.release();

    const go = grid1d(Cout * tiles, 64);
    const po = new Params().u(Cout * tiles, sk.slices, P, Cout, Ho, Wo, rows, TW, tiles, ty0, c.flags)
      .u(c.ebOff, c.ebStride, go.row);
    const mb = m.binding(), yb = c.y.binding();
    const bias = c.bias ? c.bias.binding() : mb, res = c.res ? c.res.binding() : mb, eb = c.eb ? c.eb.binding() : mb;
    dev.dispatch(kOut, po, [mb, bias, res, yb, eb], go.groups);
    m.release();
  }
}

/** Each weight's u = G g G^T ([XI, Cout, Cin], the weight's dtype) per tile, made on first use and freed with the
 *  weight. */
const transformed = { 2: new WeakMap<Tensor, Tensor>(), 4: new WeakMap<Tensor, Tensor>() };
/** Bytes of the transformed weights alive on each device (reports: GPU memory beside the weights and the pool). */
const transformedOn = new WeakMap<Device, number>();

export function transformedBytes(dev: Device): number {
  return transformedOn.get(dev) ?? 0;
}

export function transformedWeight(w: Tensor, t: WinogradTile): Tensor {
  const cache = transformed[t];
  let u = cache.get(w);
  if (u) return u;
  const [Cout, Cin] = w.shape, dev = w.dev, n = Cout * Cin;
  const made = u = emptyOwned(dev, [products(t), Cout, Cin], w.dtype);
  cache.set(w, made);
  transformedOn.set(dev, transformedBytes(dev) + made.bytes);
  w.whenReleased(() => {
    cache.delete(w);
    transformedOn.set(dev, transformedBytes(dev) - made.bytes);
    made.release();
  });
  const k = dev.kernel(TRANSFORMS[t].weights[0], TRANSFORMS[t].weights[1], {}, w.dtype);
  const { groups, row } = grid1d(n, 64);
  // Inside a precompile dry run nothing recorded executes: the transform is recorded right after it instead.
  dev.recordOutsideDryRun(() => dev.dispatch(k, new Params().u(n, row), [w.binding(), made.binding()], groups));
  return u;
}

/** GPU memory Winograd may add on this adapter (for the run planner, pipeline/job/plan.ts): the transformed copy of
 *  every 3x3 weight it may take (XI/9 of its bytes for each tile it may run: a convolution on F(4x4, 3x3) takes
 *  F(2x2, 3x3) on narrow passes; stride-2 ones counted too: conservative) and two scratch buffers.
 *  0 where neither the rule, a measured shape nor $ZEROVID_WINOGRAD turns it on. */
export function winogradBytes(
  dev: Device,
  params: { slots: Map<string, { shape: readonly number[] }>; dtype: DType }[],
): number {
  const forced = gemmHooks.winograd ?? winogradEnv();
  if (forced === false) return 0;
  const table = adapterTiles(dev);
  const measured = Object.values(table.shapes ?? {}).some((t) => t.winograd);
  const min = forced || measured ? 0 : table.winograd?.minChannels ?? Infinity;
  let bytes = 0;
  for (const p of params) {
    for (const { shape: [co, ci, kh, kw] } of p.slots.values()) {
      if (kh !== 3 || kw !== 3 || co < min || ci < min) continue;
      // Every tile whose u fits a binding: where F(4x4, 3x3) may run, the narrow passes (fewer tiles) take F(2x2).
      for (const t of tileOrder(dev, p.dtype)) {
        const u = products(t) * co * ci * BYTES[p.dtype];
        if (u <= dev.maxBinding) bytes += u;
      }
    }
  }
  return bytes > 0 ? bytes + 2 * Math.min(SCRATCH_BYTES, dev.maxBinding) : 0;
}
