// 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016): a 2x2 output tile of one
// channel pair costs 16 multiplies instead of 36, so the GEMM work is 4/9 of the implicit GEMM's. WebGPU gives only
// plain FMAs (no tensor cores), so cutting the multiplies is the lever left on SD's 3x3 convolutions. Paid for with
// three passes over memory and a transformed copy of each weight:
//   u = G g G^T      shaders/winograd_weights.wgsl  once per weight, cached while the weight lives (16/9 its size)
//   v = B^T d B      shaders/winograd_input.wgsl    x -> [16][Cin][P], P = the output's 2x2 tiles (rounded to 4)
//   m = u @ v        shaders/winograd_gemm.wgsl     16 GEMMs in one dispatch on the shared core (split-K too)
//   y = A^T m A      shaders/winograd_output.wgsl   + conv2d's epilogue (bias, per-image bias, residual)
// Rounding: m stays f32, u is rounded to the weight's dtype once, v is kept in the GEMM's multiply type (f32, or f16
// under F16MATH, which would round it to f16 in shared memory anyway: same bits, half the bytes); in f32 the result
// moves by float rounding only.
import gemmSrc from "../../shaders/gemm.wgsl" with { type: "text" };
import weightsSrc from "../../shaders/winograd_weights.wgsl" with { type: "text" };
import inputSrc from "../../shaders/winograd_input.wgsl" with { type: "text" };
import winogradGemmSrc from "../../shaders/winograd_gemm.wgsl" with { type: "text" };
import outputSrc from "../../shaders/winograd_output.wgsl" with { type: "text" };
import epilogueSrc from "../../shaders/conv_epilogue.wgsl" with { type: "text" };
import { envSwitch } from "../gpu/switch.ts";
import { BYTES, type Device, type DType, Params } from "../gpu/device.ts";
import { empty, emptyOwned, type Tensor } from "../gpu/tensor.ts";
import { grid1d, itemsPerBinding, vecBinding } from "./launch.ts";
import { adapterTiles, gemmConsts, gemmHooks, kSlices, pickTile, tileGrid } from "./matmul.ts";

/** The 16 products of a 2x2 output tile: one GEMM each. */
const XI = 16;
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

/** The key pickTile sees for a Winograd GEMM (16 batched GEMMs of Cout x P x Cin). */
export function winogradKey(Cout: number, P: number, Cin: number): string {
  return `${Cout}x${P}x${Cin}x${XI}`;
}

/** How a convolution's Winograd work is cut into passes: `images` per pass, and `rows` of 2x2 tiles of each image
 *  per pass (all of them unless one image's scratch is too big: then one image at a time, in bands of rows). */
export interface WinogradPasses {
  images: number;
  rows: number;
}

/** The passes that keep v and m within SCRATCH_BYTES and the binding limit (x, y views at aligned offsets); null when
 *  not even one row of tiles fits, or the transformed weight does not fit one binding (conv2d then keeps the implicit
 *  GEMM). */
export function winogradPasses(
  dev: Device,
  [B, Cin, H, W]: readonly number[],
  [, Cout, Ho, Wo]: readonly number[],
  eb: number,
  limit: number,
): WinogradPasses | null {
  const TH = Math.ceil(Ho / 2), TW = Math.ceil(Wo / 2), C = Math.max(Cin, Cout);
  if (XI * Cout * Cin * eb > limit) return null;
  const scratch = Math.min(limit, SCRATCH_BYTES) - XI * 4 * 3 * C; // P's rounding to 4
  const perRow = XI * 4 * TW * C;
  const rows = Math.floor(scratch / perRow);
  if (rows < 1) return null;
  const images = itemsPerBinding(dev, B, [Cin * H * W * eb, Cout * Ho * Wo * eb], limit, Math.max(1, rows / TH));
  if (images < 1) return null;
  return { images, rows: Math.min(rows, TH) };
}

/** The measured-shapes key of the Winograd GEMMs of a convolution's first pass (x, y shapes; eb bytes per element). */
export function winogradGemmKey(dev: Device, x: readonly number[], y: readonly number[], eb: number): string {
  const ps = winogradPasses(dev, x, y, eb, dev.maxBinding) ?? { images: 1, rows: 1 };
  return winogradKey(y[1], Math.ceil(ps.images * ps.rows * Math.ceil(y[3] / 2) / 4) * 4, x[1]);
}

/** y = conv2d(x, w) (+ epilogue) by Winograd for the images of one pass, `band` rows of 2x2 tiles at a time
 *  (winogradPasses().rows). */
export function conv2dWinograd(c: WinogradConv, band: number, limit: number): void {
  const dev = c.x.dev, dtype = c.x.dtype;
  const [B, Cin, H, W] = c.x.shape, [, Cout, Ho, Wo] = c.y.shape;
  const TH = Math.ceil(Ho / 2), TW = Math.ceil(Wo / 2);
  const ub = vecBinding("conv2d", transformedWeight(c.w));
  const kOut = dev.kernel("winograd_output", outputSrc + epilogueSrc, {}, dtype);
  for (let ty0 = 0; ty0 < TH; ty0 += band) {
    // Tile rows [ty0, ty0 + rows) of every image.
    const rows = Math.min(band, TH - ty0);
    const tiles = B * rows * TW, P = Math.ceil(tiles / 4) * 4;
    const tile = gemmHooks.winograd && gemmHooks.tile ||
      pickTile(dev, Cout, P, Cin, { splitK: true, batch: XI, key: winogradKey(Cout, P, Cin) });
    const core = gemmConsts(dev, tile, dtype);
    const V = core.F16MATH ? "f16" : "f32";

    const v = empty(dev, [XI, Cin, P], V);
    const kIn = dev.kernel("winograd_input", inputSrc, { V: { type: V } }, dtype);
    const gi = grid1d(Cin * P, 64);
    const pi = new Params().u(Cin * P, P, Cin, H, W, rows, TW, tiles, ty0).i(c.padT, c.padL).u(gi.row);
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

/** Each weight's u = G g G^T ([16, Cout, Cin], the weight's dtype), made on first use and freed with the weight. */
const transformed = new WeakMap<Tensor, Tensor>();
/** Bytes of the transformed weights alive on each device (reports: GPU memory beside the weights and the pool). */
const transformedOn = new WeakMap<Device, number>();

export function transformedBytes(dev: Device): number {
  return transformedOn.get(dev) ?? 0;
}

export function transformedWeight(w: Tensor): Tensor {
  let u = transformed.get(w);
  if (u) return u;
  const [Cout, Cin] = w.shape, dev = w.dev, n = Cout * Cin;
  const made = u = emptyOwned(dev, [XI, Cout, Cin], w.dtype);
  transformed.set(w, made);
  transformedOn.set(dev, transformedBytes(dev) + made.bytes);
  w.whenReleased(() => {
    transformed.delete(w);
    transformedOn.set(dev, transformedBytes(dev) - made.bytes);
    made.release();
  });
  const k = dev.kernel("winograd_weights", weightsSrc, {}, w.dtype);
  const { groups, row } = grid1d(n, 64);
  // Inside a precompile dry run nothing recorded executes: the transform is recorded right after it instead.
  dev.recordOutsideDryRun(() => dev.dispatch(k, new Params().u(n, row), [w.binding(), made.binding()], groups));
  return u;
}

/** GPU memory Winograd may add on this adapter (for the run planner, pipeline/job/plan.ts): the transformed copy of
 *  every 3x3 weight it may take (16/9 of its bytes; stride-2 ones counted too: conservative) and two scratch buffers.
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
      const u = XI * co * ci * BYTES[p.dtype];
      if (kh === 3 && kw === 3 && co >= min && ci >= min && u <= dev.maxBinding) bytes += u;
    }
  }
  return bytes > 0 ? bytes + 2 * Math.min(SCRATCH_BYTES, dev.maxBinding) : 0;
}
