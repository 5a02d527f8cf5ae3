// Linear layers on the tiled GEMM (shaders/matmul.wgsl), plus the tile choice, grid and binding helpers that
// conv2d's implicit GEMM shares.
import gemmSrc from "../../shaders/gemm.wgsl" with { type: "text" };
import matmulSrc from "../../shaders/matmul.wgsl" with { type: "text" };
import erfSrc from "../../shaders/erf.wgsl" with { type: "text" };
import lnSumSrc from "../../shaders/matmul_ln_sum.wgsl" with { type: "text" };
import lnSumSgSrc from "../../shaders/matmul_ln_sum_sg.wgsl" with { type: "text" };
import { rowsOnSubgroups } from "../gpu/subgroups.ts";
import { envSwitch } from "../gpu/switch.ts";
import { type Binding, BYTES, type Device, type DType, GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { assertSameDType, assertShape, splitItems, vecBinding } from "./launch.ts";
import { type AdapterTiles, setCandidateTiles, tilesFor } from "./tiles.ts";

/** Output tile BM x BN per workgroup, TM x TN per thread (multiples of 4), K staged BK at a time; conv2d may
 *  also split K into `splitK` slices (one workgroup per tile and slice, then a pass adding the slices). */
export interface GemmTile {
  BM: number;
  BN: number;
  TM: number;
  TN: number;
  splitK?: number;
  /** In f16 runs: multiply in f16 (true) or f32 (false) instead of the adapter's default (see f16Math). */
  f16?: boolean;
  /** K steps per iteration of the inner loop (one of UNROLLS) instead of the adapter's default (see unrollOf). */
  unroll?: number;
  /** On a 3x3 stride-1 convolution's shape: computed by Winograd or not (pipeline/ops/winograd.ts
   *  useWinograd), whatever the adapter's rule says. */
  winograd?: boolean;
}
export const BK = 16;

/** The GEMM core's inner-loop unrollings (shaders/gemm.wgsl UNROLL): 1 leaves the loop to the driver. */
export const UNROLLS: readonly number[] = [1, 2, 4, 8, 16];

/** Split-K factors conv2d may use, and the least K a slice keeps (fewer K-tiles per workgroup than this and its
 *  loads, barriers and partial-sum traffic outweigh the extra workgroups). */
export const SPLITS: readonly number[] = [1, 2, 4, 8, 16];
export const MIN_SLICE_K = 256;

/** The K slices of a split: `kSplit` K per slice (whole BK steps), `slices` of them (none empty). */
export function kSlices(K: number, splitK = 1): { kSplit: number; slices: number } {
  const kSplit = Math.ceil(Math.ceil(K / Math.max(1, splitK)) / BK) * BK;
  return { kSplit, slices: Math.ceil(K / kSplit) };
}

// Bigger per-thread blocks do more FMAs per shared-memory load; the smaller tiles keep a big GPU busy when M*N is
// small and waste less on ragged edges (e.g. 77-token text rows, 3-channel VAE output).
export const TILES: readonly GemmTile[] = [
  { BM: 128, BN: 128, TM: 8, TN: 8 },
  { BM: 64, BN: 64, TM: 8, TN: 8 },
  { BM: 128, BN: 64, TM: 8, TN: 4 },
  { BM: 64, BN: 128, TM: 4, TN: 8 },
  { BM: 64, BN: 64, TM: 4, TN: 4 },
  { BM: 32, BN: 64, TM: 4, TN: 4 },
  { BM: 64, BN: 32, TM: 4, TN: 4 },
  { BM: 16, BN: 128, TM: 4, TN: 4 },
];

setCandidateTiles(TILES, SPLITS, UNROLLS);

export function threads(t: GemmTile): number {
  return (t.BM / t.TM) * (t.BN / t.TN);
}

/** Whether the GEMMs of an f16 run multiply in f16 (shaders/gemm.wgsl's F16MATH: packed f16 FMAs, each K-tile's
 *  products summed in f16, then in f32): the test hook, else $ZEROVID_GEMM_F16 (on/off: A/B timing, or a model whose
 *  activations overflow f16 partial sums), else the tile's measured choice (a tiles file), else the adapter table
 *  entry's `f16Math`, else not. f32 runs never do. */
export function f16Math(dev: Device, tile: GemmTile, dtype: DType): boolean {
  if (dtype !== "f16") return false;
  return f16MathForced() ?? tile.f16 ?? adapterTiles(dev).f16Math ?? false;
}

/** The f16 math every GEMM gets whatever its tile says (the test hook, else $ZEROVID_GEMM_F16), or null. */
export function f16MathForced(): boolean | null {
  return gemmHooks.f16Math ?? f16MathEnv();
}

let envF16: boolean | null | undefined;
const f16MathEnv = () => envF16 === undefined ? envF16 = envSwitch("ZEROVID_GEMM_F16") : envF16;

/** The GEMM core's constants for a tile (shaders/gemm.wgsl): sizes, and the math type S (f16 with F16MATH). Each
 *  thread stages 1, 2 or 4 vec4s of each operand per K-tile (or less than one: idle slots), which the candidate
 *  tiles all satisfy; another tile is refused here rather than mis-staged. */
export function gemmConsts(dev: Device, tile: GemmTile, dtype: DType) {
  const { BM, BN, TM, TN } = tile, wg = threads(tile);
  for (const len of [BK * BM / 4, BK * BN / 4]) {
    if (len >= wg ? len % wg !== 0 || len / wg > 4 : wg % len !== 0) {
      throw new GpuError(`GEMM: tile ${JSON.stringify(tile)} cannot stage ${len} vec4s on ${wg} threads`);
    }
  }
  const f16 = f16Math(dev, tile, dtype);
  const prefetch = gemmHooks.prefetch ?? adapterTiles(dev).prefetch ?? true;
  const probe = gemmHooks.probe ?? 0;
  const unroll = unrollOf(dev, tile);
  return {
    BM,
    BN,
    TM,
    TN,
    BK,
    S: { type: f16 ? "f16" : "f32" },
    F16MATH: f16,
    PREFETCH: prefetch,
    PROBE: probe,
    UNROLL: unroll,
  };
}

/** K steps per inner-loop iteration of a tile's GEMM: the test hook, else the tile's measured choice (a tiles file or
 *  the table's shapes), else the adapter table entry's `unroll`, else 1. */
export function unrollOf(dev: Device, tile: GemmTile): number {
  const u = gemmHooks.unroll ?? tile.unroll ?? adapterTiles(dev).unroll ?? 1;
  if (!UNROLLS.includes(u)) throw new GpuError(`GEMM: unroll ${u} is not one of ${UNROLLS.join(", ")}`);
  return u;
}

/** Shared memory of one workgroup: two K-tiles of A and B in f32 (F16MATH needs half). */
export function sharedBytes(t: GemmTile): number {
  return 2 * (t.BM + t.BN) * BK * 4;
}

/** Workgroup memory a LayerNorm prologue adds to a tile (row statistics and the reduction buffer). */
const lnShared = (t: GemmTile) => 16 * t.BM + 8 * threads(t);

/** The adapter's tile table entry (pipeline/ops/tiles.ts). */
export function adapterTiles(dev: Device): AdapterTiles {
  return tilesFor(dev.adapterName, dev.isFallback);
}

export interface PickOpts {
  /** Workgroup memory a kernel variant adds to a tile. */
  extra?: (t: GemmTile) => number;
  /** The kernel can split K (conv2d): splits are scored too. */
  splitK?: boolean;
  /** GEMMs of this shape per dispatch (Winograd's 16): they fill the GPU together. */
  batch?: number;
  /** The measured-shapes key, when not "MxNxK" (a batch of GEMMs). */
  key?: string;
}

/** The split-K factors worth trying on a reduction of K: 1, and those leaving every slice MIN_SLICE_K or more. */
export function splitsFor(K: number): number[] {
  return SPLITS.filter((s) => {
    const k = kSlices(K, s);
    return s === 1 || k.kSplit >= MIN_SLICE_K && k.slices === s;
  });
}

/** The GEMM tile for an M x N output with reduction K: the adapter's measured pick for this shape if it has one, else
 *  the tile (and split of K, where the kernel can split) maximising useful work x occupancy x register blocking
 *  within the device's limits. A split pays for its partial sums' pass (table.splitCost), so it only wins where the
 *  tiles alone leave the GPU emptier than that. */
export function pickTile(dev: Device, M: number, N: number, K: number, o: PickOpts = {}): GemmTile {
  return pickFrom(adapterTiles(dev), dev.gpu.limits, M, N, K, o);
}

/** pickTile on a given table entry and workgroup limits. */
export function pickFrom(
  table: AdapterTiles,
  limits: Pick<GPUSupportedLimits, "maxComputeWorkgroupStorageSize" | "maxComputeInvocationsPerWorkgroup">,
  M: number,
  N: number,
  K: number,
  o: PickOpts = {},
): GemmTile {
  const fits = (t: GemmTile) =>
    sharedBytes(t) + (o.extra ? o.extra(t) : 0) <= limits.maxComputeWorkgroupStorageSize &&
    threads(t) <= limits.maxComputeInvocationsPerWorkgroup;
  const known = table.shapes?.[o.key ?? `${M}x${N}x${K}`];
  if (known && fits(known)) return o.splitK || !known.splitK ? known : { ...known, splitK: undefined };
  const splits = o.splitK ? splitsFor(K) : [1];
  let best: GemmTile | null = null, bestScore = -1;
  for (const t of table.tiles ?? TILES) {
    if (!fits(t)) continue;
    const tm = Math.ceil(M / t.BM), tn = Math.ceil(N / t.BN);
    const util = (M * N) / (tm * t.BM * tn * t.BN);
    const blocking = table.blocking[t.TM * t.TN] ?? 0.5;
    for (const s of splits) {
      const fill = Math.min(1, (tm * tn * s * (o.batch ?? 1)) / table.fill);
      const score = util * fill * blocking * (s > 1 ? table.splitCost ?? SPLIT_COST : 1);
      if (score > bestScore + 1e-9) best = s > 1 ? { ...t, splitK: s } : t, bestScore = score;
    }
  }
  if (!best) throw new GpuError(`GEMM: no tile fits this GPU's workgroup limits`);
  return best;
}

/** Default score factor of a split-K tile: its extra pass and partial sums (gpu-check measures the real cost). */
const SPLIT_COST = 0.85;

/**
 * Grid for tilesM x tilesN workgroups, folded into 2-D past the per-dimension limit (the kernel computes
 * tile = wid.x + wid.y * gx). The smaller tile count varies fastest, so neighbouring workgroups share the larger
 * operand's tile.
 */
export function tileGrid(tilesM: number, tilesN: number, slices = 1, maxPerDim = gemmHooks.maxGroups || 65535) {
  const tiles = tilesM * tilesN;
  const gx = Math.min(tiles * slices, maxPerDim);
  const gy = Math.ceil(tiles * slices / gx);
  return { groups: [gx, gy] as [number, number], gx, tiles, mfast: tilesM <= tilesN ? 1 : 0 };
}

/** A vec4 binding of `t` from the aligned offset at or below its start, and t's start in elements from there: lets
 *  the GEMM read weight views at any offset (e.g. the K/V rows of a stacked Q/K/V projection). */
export function offsetBinding(op: string, t: Tensor): { b: Binding; at: number } {
  const v = 4 * BYTES[t.dtype];
  const base = t.offset - (t.offset % t.dev.align);
  if ((t.offset - base) % BYTES[t.dtype] !== 0) {
    throw new GpuError(`${op}: tensor offset ${t.offset} is not whole elements`);
  }
  const size = Math.ceil((t.offset - base + t.bytes) / v) * v;
  if (base + size > t.buffer.size) {
    throw new GpuError(
      `${op}: tensor [${t.shape}] cannot be read as vec4 (offset ${t.offset}, buffer ${t.buffer.size})`,
    );
  }
  if (!t.alive) throw new GpuError(`${op}: use of a released tensor`);
  return { b: { buffer: t.buffer, offset: base, size }, at: (t.offset - base) / BYTES[t.dtype] };
}

/** `residual` and `out` are the same tensor: the kernel then reads y before writing it (one read_write binding). */
export function sameRange(a: Tensor | undefined, b: Tensor): boolean {
  return !!a && a.buffer === b.buffer && a.offset === b.offset;
}

/** Test hooks: a smaller binding limit forces the split path on small tensors (0 = the device's limit); a smaller
 *  grid limit forces the folded 2-D grid; `tile` overrides pickTile so every variant is checked on small shapes
 *  (and keeps conv2d on the tiled kernel); `directConv` overrides the table's pixel limit for conv2d's direct
 *  kernel (0: never, Infinity: always). */
export const gemmHooks: {
  maxBinding: number;
  maxGroups: number;
  tile: GemmTile | null;
  directConv: number | null;
  /** Told of every tiled GEMM before its tile is picked (gpu-check records a UNet call's shapes to tune them). */
  onGemm: ((g: GemmCall) => void) | null;
  /** Overrides f16Math (null: not). */
  f16Math: boolean | null;
  /** Overrides the table entry's `prefetch` (null: not). */
  prefetch: boolean | null;
  /** The GEMM core's diagnostic PROBE (shaders/gemm.wgsl: 1 no loads, 2 no loads nor barriers, 3 no loads and
   *  broadcast shared-memory reads, 4 no loads nor shared-memory reads in the steps; wrong results by design, for
   *  timing only); null: 0. */
  probe: 1 | 2 | 3 | 4 | null;
  /** Overrides the inner loop's unrolling (null: not). */
  unroll: number | null;
  /** Forces 3x3 stride-1 convolutions onto Winograd (true, with `tile` as its GEMM's tile when set) or off it (false);
   *  null: the adapter's choice (pipeline/ops/winograd.ts useWinograd). */
  winograd: boolean | null;
  /** Forces Winograd's tile (pipeline/ops/winograd.ts winogradTile): F(2x2, 3x3) or F(4x4, 3x3); null: by dtype. */
  winogradTile: 2 | 4 | null;
} = {
  maxBinding: 0,
  maxGroups: 0,
  tile: null,
  directConv: null,
  onGemm: null,
  f16Math: null,
  prefetch: null,
  probe: null,
  unroll: null,
  winograd: null,
  winogradTile: null,
};

/** A tiled GEMM as pickTile sees it (`key`: "MxNxK"), with what it takes to run one like it again. */
export type GemmCall =
  | { op: "linear"; key: string; M: number; N: number; K: number }
  | {
    op: "conv2d";
    key: string;
    B: number;
    Cin: number;
    Cout: number;
    H: number;
    W: number;
    KH: number;
    KW: number;
    stride: number;
    padding: [number, number, number, number];
  };

/** How many leading rows or images one GEMM dispatch may bind (see launch.ts `splitItems`), under the test hook's
 *  smaller limit when one is set. */
export function chunkItems(op: string, dev: Device, what: string, count: number, itemBytes: number[]): number {
  return splitItems(op, dev, what, count, itemBytes, Math.min(gemmHooks.maxBinding || Infinity, dev.maxBinding));
}

export interface LinearOpts {
  /** Added after the bias, in y's layout. */
  residual?: Tensor;
  /** SiLU of the result (after bias and residual). */
  silu?: boolean;
  /** LayerNorm over K of each row of x (gamma, beta [K]) applied as x is loaded: LayerNorm + Linear in one dispatch
   *  (BasicTransformerBlock's norm1/norm2/norm3 before their projections). Not with xChannelsFirst. */
  layerNorm?: { gamma: Tensor; beta: Tensor; eps: number };
  /** diffusers GEGLU on the projection: y[..., j] = h_j * gelu_erf(g_j) with h = outputs [0, N/2) and g = outputs
   *  [N/2, N) of the GEMM; y has N/2 columns (the feed-forward's first layer without its [..., N] tensor). */
  geglu?: boolean;
  /** x is a channels-first feature map [B, K, ...spatial], read as B*S token rows (S = spatial size): the
   *  transpose to tokens happens in the GEMM's loads (Transformer2DModel's proj_in). */
  xChannelsFirst?: boolean;
  /** Write y channels-first [B, N, ...spatial] instead of tokens [B, S, N] (proj_out back to the feature map);
   *  x is then [B, S, K] (or channels-first with xChannelsFirst). */
  yChannelsFirst?: number[];
  out?: Tensor;
}

/** y[..., N] = x[..., K] @ w[N, K]^T (+ bias[N]) (+ residual[..., N]). w in PyTorch nn.Linear layout [out, in].
 *  x's rows = x.numel / K (any leading dims; output keeps them); see LinearOpts for channels-first layouts. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor, opts: LinearOpts = {}): Tensor {
  const op = "linear";
  if (w.shape.length !== 2) throw new GpuError(`${op}: w has shape [${w.shape}], expected [N, K]`);
  const [N, K] = w.shape;
  if (K === 0) throw new GpuError(`${op}: K = 0`);
  const xcf = !!opts.xChannelsFirst, ycf = opts.yChannelsFirst;
  // B and S: the batch and spatial size of a channels-first operand (B = rows, S = 1 otherwise).
  let B: number, S: number, outShape: number[];
  if (xcf) {
    if (x.shape.length < 2 || x.shape[1] !== K) {
      throw new GpuError(`${op}: x has shape [${x.shape}], expected [B, ${K}, ...spatial] to match w [${w.shape}]`);
    }
    B = x.shape[0], S = x.numel / (B * K);
    if (ycf && numelOf(ycf) !== S) throw new GpuError(`${op}: yChannelsFirst [${ycf}] does not hold ${S} positions`);
    outShape = ycf ? [B, N, ...ycf] : [B, S, N];
  } else {
    if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== K) {
      throw new GpuError(`${op}: x has shape [${x.shape}], expected [..., ${K}] to match w [${w.shape}]`);
    }
    if (ycf) {
      S = numelOf(ycf);
      if (x.shape.length !== 3 || x.shape[1] !== S) {
        throw new GpuError(`${op}: x has shape [${x.shape}], expected [B, ${S}, ${K}] for output positions [${ycf}]`);
      }
      B = x.shape[0];
      outShape = [B, N, ...ycf];
    } else {
      B = x.numel / K, S = 1;
      outShape = [...x.shape.slice(0, -1), N];
    }
  }
  if (opts.geglu) {
    if (N % 2 !== 0 || opts.residual || opts.silu || ycf) {
      throw new GpuError(`${op}: geglu needs an even N (got ${N}) and no residual, silu or yChannelsFirst`);
    }
    outShape[outShape.length - 1] = N / 2;
  }
  const ln = opts.layerNorm;
  if (ln && xcf) throw new GpuError(`${op}: layerNorm needs token rows (not xChannelsFirst)`);
  const ts = [x, w];
  if (ln) assertShape(op, "layerNorm.gamma", ln.gamma, [K]), assertShape(op, "layerNorm.beta", ln.beta, [K]);
  if (ln) ts.push(ln.gamma, ln.beta);
  if (bias) assertShape(op, "bias", bias, [N]), ts.push(bias);
  if (opts.residual) assertShape(op, "residual", opts.residual, outShape), ts.push(opts.residual);
  if (opts.out) assertShape(op, "out", opts.out, outShape), ts.push(opts.out);
  assertSameDType(op, ...ts);
  const dev = x.dev;
  const M = B * S;
  const y = opts.out ?? empty(dev, outShape, x.dtype);
  if (M === 0 || N === 0) return y;

  gemmHooks.onGemm?.({ op: "linear", key: `${M}x${N}x${K}`, M, N, K });
  // LN keeps per-row statistics in workgroup memory and needs a thread per row.
  const tile = gemmHooks.tile ?? pickTile(dev, M, N, K, { extra: ln ? lnShared : undefined });
  if (ln && threads(tile) < tile.BM) {
    throw new GpuError(`${op}: tile ${JSON.stringify(tile)} has fewer threads than rows`);
  }
  // Weight and bias may be views at any offset (rows of a stacked projection).
  const wb = offsetBinding(op, w), bb = bias && offsetBinding(op, bias);
  const consts = {
    ...gemmConsts(dev, tile, x.dtype),
    VEC: K % 4 === 0,
    WVEC: K % 4 === 0 && wb.at % 4 === 0,
    XCF: xcf,
    YCF: !!ycf,
    SV: S % 4 === 0,
  };
  // The LayerNorm prologue's row sums on subgroups when a row's threads fit in one (pipeline/gpu/subgroups.ts).
  const SG = !!ln && rowsOnSubgroups(dev, Math.max(threads(tile) / tile.BM, 1));
  const k = dev.kernel(
    "matmul",
    matmulSrc + gemmSrc + erfSrc + (SG ? lnSumSgSrc : lnSumSrc),
    { ...consts, GEGLU: !!opts.geglu, LN: !!ln, SG },
    x.dtype,
  );
  const inPlace = sameRange(opts.residual, y);
  const flags = (bias ? 1 : 0) | (opts.residual ? (inPlace ? 4 : 2) : 0) | (opts.silu ? 16 : 0);
  const bytes = BYTES[x.dtype];
  // Split into row chunks (whole images with a channels-first operand) when a binding would exceed the limit.
  const Ny = opts.geglu ? N / 2 : N;
  const chunk = chunkItems(op, dev, S > 1 ? "images" : "rows", B, [S * K * bytes, S * Ny * bytes]);
  const part = (t: Tensor, b0: number, nb: number) =>
    nb === B ? t : S > 1 ? t.slice0(b0, nb) : t.view([nb, t.numel / B], b0 * (t.numel / B));
  for (let b0 = 0; b0 < B; b0 += chunk) {
    const nb = Math.min(chunk, B - b0), rows = nb * S;
    const xs = part(x, b0, nb), ys = part(y, b0, nb);
    const rs = opts.residual && !inPlace && part(opts.residual, b0, nb);
    const xb = vecBinding(op, xs);
    const tilesM = Math.ceil(rows / tile.BM), tilesN = Math.ceil(N / tile.BN);
    const g = tileGrid(tilesM, tilesN);
    const p = new Params().u(rows, N, K, tilesM, tilesN, g.tiles, g.gx, g.mfast, flags, S, wb.at, bb?.at ?? 0)
      .f(ln?.eps ?? 0).u(K);
    // Absent bias/residual/LayerNorm parameters bind x (read-only) as placeholders; the kernel never reads them.
    const lnb = ln ? [ln.gamma.binding(), ln.beta.binding()] : [xb, xb];
    dev.dispatch(k, p, [xb, wb.b, bb ? bb.b : xb, rs ? rs.binding() : xb, ys.binding(), ...lnb], g.groups);
  }
  return y;
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
