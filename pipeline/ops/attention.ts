// Memory-efficient multi-head attention with online softmax (shaders/attention_flash.wgsl where its tiles fit from
// head dim 13, shaders/attention.wgsl below that and up to 160, attention_tiled.wgsl past 160): the Nq x Nk score
// matrix is never stored, so memory is O(N) and self-attention over 4096-16384 tokens costs only its output.
import attentionSrc from "../../shaders/attention.wgsl" with { type: "text" };
import attentionTiledSrc from "../../shaders/attention_tiled.wgsl" with { type: "text" };
import flashSrc from "../../shaders/attention_flash.wgsl" with { type: "text" };
import ioSrc from "../../shaders/attention_io.wgsl" with { type: "text" };
import loadSrc from "../../shaders/attention_load.wgsl" with { type: "text" };
import loadVec4Src from "../../shaders/attention_load_vec4.wgsl" with { type: "text" };
import rowsSrc from "../../shaders/attention_rows.wgsl" with { type: "text" };
import rowsSgSrc from "../../shaders/attention_rows_sg.wgsl" with { type: "text" };
import { rowsOnSubgroups } from "../gpu/subgroups.ts";
import { BYTES, type Device, GpuError, Params } from "../gpu/device.ts";
import { empty, Tensor } from "../gpu/tensor.ts";
import { assertSameDType, assertShape, itemsPerBinding, vecBinding } from "./launch.ts";
import { type AdapterTiles, tilesFor } from "./tiles.ts";
import { bindable, blockCopy } from "./layout.ts";

export interface AttentionOpts {
  /** Query batch b reads keys/values of batch floor(b / kvBatchDiv). Default 1 (k/v batch = q batch).
   *  Cross-frame attention: k/v hold only the anchor frame of each guidance group (G batches) and q holds G*F frames,
   *  so kvBatchDiv = F. Text cross-attention with un-repeated prompt embeddings uses it too. */
  kvBatchDiv?: number;
  /** Causal mask (CLIP text encoder): query i sees keys j <= i. */
  causal?: boolean;
  /** Softmax scale; default 1/sqrt(headDim). */
  scale?: number;
  out?: Tensor;
}

/** Rows kernel (shaders/attention.wgsl), head dims up to 160: TPR threads own a query row in registers. */
export interface RowsConfig {
  kind: "rows";
  /** Threads per query row (1, 2, 4). */
  TPR: number;
  /** vec4 columns of the head dim per thread (DV * TPR * 4 >= D; at most ROWS_MAX_DV, the kernel's named registers). */
  DV: number;
  /** Keys scored at once: 4, 8 or 16 (the kernel's s0..s3 score registers). */
  BK: number;
  /** Keys per workgroup-memory tile: a multiple of BK (> BK: fewer barriers and load phases per key). */
  BT: number;
  /** Threads per workgroup (WG / TPR * QPT query rows). */
  WG: number;
  /** Query rows per thread: 1, or 2 (each vec4 read from workgroup memory feeds both; DV <= 5, BK <= 8). */
  QPT: number;
}

/** Tiled kernel (shaders/attention_tiled.wgsl), large head dims: Q K^T and P V as workgroup-tiled products. */
export interface TiledConfig {
  kind: "tiled";
  /** Queries per workgroup. */
  BQ: number;
  /** Keys per tile. */
  BK: number;
  /** Threads per workgroup. */
  WG: number;
  /** Phase-1 keys per thread. */
  CS: number;
  /** vec4 columns of the head dim per chunk. */
  DV: number;
  /** Head-dim chunks streamed through workgroup memory (1: the Q tile stays resident). */
  NCH: number;
  /** Phase-3 threads along the head dim. */
  TCO: number;
}

/** Flash kernel (shaders/attention_flash.wgsl), small head dims: 4 x 4 register blocks of Q K^T and P V. Threads:
 *  BQ / 4 * NCT with NCT = ceil(D4 / CPT); keys per tile: 4 * NCT. */
export interface FlashConfig {
  kind: "flash";
  /** Queries per workgroup (a multiple of 4). */
  BQ: number;
  /** vec4 columns of the head dim (ceil(D / 4)). */
  D4: number;
  /** vec4 output columns per thread (1 or 2). */
  CPT: number;
}

export type AttentionConfig = RowsConfig | TiledConfig | FlashConfig;

/** Workgroup memory of a config, in bytes (mirrors the shaders' `var<workgroup>` declarations). */
export function attentionSharedBytes(c: AttentionConfig): number {
  if (c.kind === "rows") return 2 * 16 * c.BT * c.DV * c.TPR + 16 * (c.TPR > 1 ? rowsScoreRegs(c) * c.WG : 1);
  if (c.kind === "flash") {
    const nct = Math.ceil(c.D4 / c.CPT);
    return 16 * c.D4 * c.BQ + 64 * nct * c.CPT * nct + 16 * nct * c.BQ + 4 * nct * c.BQ + 12 * c.BQ;
  }
  const ks = c.DV | 1;
  return 16 * (c.BQ * c.DV + c.BK * ks) + 4 * (c.BQ * (c.BK + 1) + 3 * c.BQ);
}

// Configs are capped at 32 KiB of workgroup memory even where the GPU has more (NVIDIA: 48 KiB), so the tiling that
// runs in production is the one the tests run on lavapipe (32 KiB).
const SHARED_CAP = 32768;
const WG = 128;
/** Most threads of a flash workgroup (WebGPU's default limit). */
const FLASH_MAX_WG = 256;
/** vec4 columns of a query row one thread of the rows kernel holds (q0..q9, o0..o9 in shaders/attention.wgsl). */
const ROWS_MAX_DV = 10;
/** Largest head dim of the rows kernel: 4 threads x 10 vec4 columns. */
const ROWS_MAX_D = 160;
/** The rows kernel's score registers s0..s(n-1) in use (shaders/attention.wgsl NS): a row's 4-16 keys, or two rows'
 *  4-8 keys with row B's in s2/s3. */
function rowsScoreRegs(c: RowsConfig): number {
  return c.QPT === 2 ? (c.BK > 4 ? 4 : 3) : c.BK / 4;
}

/** Keys the rows kernel scores at once (s0..s3: 4 keys each), largest first. */
const ROWS_BK = [16, 8, 4];
/** Most keys per workgroup-memory tile of the rows kernel. */
const ROWS_MAX_BT = 128;

/** How an adapter runs attention (its tile-table entry, tiles.ts): `flash`, the flash kernel where it fits, else the
 *  rows kernel; `lanes`, its lockstep width (flash workgroups); `rowsTileKeys` and `rowsPerThread`, the rows kernel's
 *  keys per tile and query rows per thread. */
export interface AttentionPrefs {
  flash: boolean;
  lanes: number;
  rowsTileKeys: number;
  rowsPerThread: number;
}

/** The tiling used for head dim D within `budget` bytes of workgroup memory on an adapter with `prefs`: the flash
 *  kernel where it fits and the adapter takes it (SD's D = 40, 64 and 80: 1.6-1.8x the rows kernel on llvmpipe, but
 *  0.25-0.5x on an NVIDIA H200), except below D = 13 (D = 8: 0.8x on llvmpipe); else the rows kernel up to D = 160,
 *  else the tiled one. */
export function attentionConfig(D: number, budget: number, prefs: AttentionPrefs): AttentionConfig {
  const f = prefs.flash && Math.ceil(D / 4) >= 4 ? flashConfig(D, budget, prefs.lanes) : null;
  return f ??
    (D <= ROWS_MAX_D ? rowsConfig(D, budget, prefs.rowsTileKeys, prefs.rowsPerThread) : tiledConfig(D, budget));
}

/** Flash kernel: the most queries per workgroup (64, 32, 16) whose threads and workgroup memory fit; two output
 *  columns per thread (CPT) from D = 29 (llvmpipe: 1.08x at D = 40, 1.24x at D = 64, and D = 80 fits only so; at
 *  D = 16-24 one column is as fast or faster). Among those, the first whose thread count is a multiple of `lanes`
 *  (the adapter's lockstep width, tiles.ts): a partial NVIDIA warp idles its other lanes in every phase, e.g. D = 40
 *  with two columns has 80 threads (2.5 warps), with one 160. Null when nothing fits (the K/V tile grows as D^2 / CPT). */
export function flashConfig(D: number, budget = SHARED_CAP, lanes = 32): FlashConfig | null {
  const D4 = Math.ceil(D / 4);
  const fits: FlashConfig[] = [];
  for (const BQ of [64, 32, 16]) {
    for (const CPT of D4 >= 8 ? [2, 1] : [1, 2]) {
      const c: FlashConfig = { kind: "flash", BQ, D4, CPT };
      if (flashThreads(c) <= FLASH_MAX_WG && attentionSharedBytes(c) <= budget) fits.push(c);
    }
  }
  return fits.find((c) => flashThreads(c) % lanes === 0) ?? fits[0] ?? null;
}

/** Threads of a flash workgroup. */
export function flashThreads(c: FlashConfig): number {
  return (c.BQ / 4) * Math.ceil(c.D4 / c.CPT);
}

/**
 * Rows kernel with QPT rows per thread: the fewest threads per row that keep a thread's q and output slices at <= 10
 * vec4 each (80 registers; 5 per row with two rows), then the most keys scored at once (16; 8 with two rows), then the
 * largest tile of at most `tileKeys` keys, that fit `budget`.
 */
export function rowsConfig(D: number, budget = SHARED_CAP, tileKeys = 16, QPT = 1): RowsConfig {
  const dv4 = Math.ceil(D / 4), maxDV = ROWS_MAX_DV / QPT;
  let TPR = 1;
  while (Math.ceil(dv4 / TPR) > maxDV && TPR < WG) TPR *= 2;
  const DV = Math.ceil(dv4 / TPR);
  for (const BK of ROWS_BK.filter((k) => QPT === 1 || k <= 8)) {
    for (let BT = Math.max(BK, Math.min(tileKeys, ROWS_MAX_BT)); BT >= BK; BT /= 2) {
      const c: RowsConfig = { kind: "rows", TPR, DV, BK, BT: BT - (BT % BK), WG, QPT };
      if (attentionSharedBytes(c) <= budget) return c;
    }
  }
  throw new GpuError(`attention: no tiling for head dim ${D} fits ${budget} bytes of workgroup memory`);
}

/**
 * Tiled kernel: queries per workgroup shrink as D grows so the per-thread output accumulator stays at <= 64 floats
 * (BQ * D / WG); the head dim is split into chunks only when the tiles do not fit otherwise. Prefers: least padding
 * of D, then key tiles of >= 16 (8 starves phase 1 of reuse), then fewest chunks (a resident Q tile), then larger key
 * tiles, then a squarer phase-3 micro-tile.
 */
export function tiledConfig(D: number, budget = SHARED_CAP): TiledConfig {
  const dv4 = Math.ceil(D / 4);
  const BQ = dv4 <= 16 ? 64 : dv4 <= 32 ? 32 : 16;
  let best: TiledConfig | null = null;
  let bestKey: number[] = [];
  for (let nch = 1; nch <= Math.max(8, Math.ceil(dv4 / 4)); nch++) {
    for (const BK of [32, 16, 8]) {
      if (BQ * BK < WG) continue;
      const CS = Math.min(4, (BQ * BK) / WG);
      for (let TCO = WG / BQ; TCO <= WG; TCO *= 2) {
        const DV = Math.ceil(Math.ceil(dv4 / nch) / TCO) * TCO;
        const c: TiledConfig = { kind: "tiled", BQ, BK, WG, CS, DV, NCH: nch, TCO };
        if (attentionSharedBytes(c) > budget) continue;
        const RO = BQ / (WG / TCO), CPC = DV / TCO;
        const key = [DV * nch, BK < 16 ? 1 : 0, nch, -BK, RO + CPC];
        if (!best || lexLess(key, bestKey)) best = c, bestKey = key;
      }
    }
  }
  if (!best) throw new GpuError(`attention: no tiling for head dim ${D} fits ${budget} bytes of workgroup memory`);
  return best;
}

function lexLess(a: number[], b: number[]): boolean {
  const i = a.findIndex((x, j) => x !== b[j]);
  return i >= 0 && a[i] < b[i];
}

/** The shaders' divisibility assumptions; a violation would silently drop rows or columns. */
function checkConfig(c: AttentionConfig, D: number): void {
  if (!validTiling(c, D)) throw new GpuError(`attention: invalid tiling ${JSON.stringify(c)} for head dim ${D}`);
}

/** Whether `c` is a tiling the kernels can run at head dim D (any value: a tiles file is read with it). */
export function validTiling(c: unknown, D: number): c is AttentionConfig {
  const pos = (...xs: unknown[]) => xs.every((x) => Number.isInteger(x) && (x as number) > 0);
  if (typeof c !== "object" || c === null) return false;
  let ok: boolean;
  if ("kind" in c && c.kind === "flash") {
    const { BQ, D4, CPT } = c as FlashConfig;
    ok = pos(BQ, D4) && BQ % 4 === 0 && D4 === Math.ceil(D / 4) && (CPT === 1 || CPT === 2) &&
      flashThreads(c as FlashConfig) <= FLASH_MAX_WG;
  } else if ("kind" in c && c.kind === "rows") {
    const { TPR, DV, BK, BT, WG, QPT } = c as RowsConfig;
    ok = pos(TPR, DV, BK, BT, WG) && WG % TPR === 0 && ROWS_BK.includes(BK) && BT % BK === 0 && BT <= ROWS_MAX_BT &&
      DV * TPR * 4 >= D && (QPT === 1 ? DV <= ROWS_MAX_DV : QPT === 2 && DV <= ROWS_MAX_DV / 2 && BK <= 8);
  } else if ("kind" in c && c.kind === "tiled") {
    const { BQ, BK, WG, CS, DV, NCH, TCO } = c as TiledConfig;
    ok = pos(BQ, BK, WG, CS, DV, NCH, TCO) && BK % CS === 0 && WG % (BK / CS) === 0 &&
      BQ % (WG / (BK / CS)) === 0 && WG % TCO === 0 && BQ % (WG / TCO) === 0 && DV % TCO === 0 && DV * NCH * 4 >= D;
  } else ok = false;
  return ok;
}

/** An adapter's attention preferences, from its tile-table entry (tiles.ts tilesFor). */
export function attentionPrefs(e: AdapterTiles): AttentionPrefs {
  return {
    flash: (e.attention ?? "rows") === "flash",
    lanes: e.lanes ?? 32,
    rowsTileKeys: e.rowsTileKeys ?? 16,
    rowsPerThread: e.rowsPerThread === 2 ? 2 : 1,
  };
}

/** The workgroup memory an attention tiling may use on `dev` (capped at what lavapipe has, see SHARED_CAP). */
export function attentionBudget(dev: Device): number {
  return Math.min(SHARED_CAP, dev.gpu.limits.maxComputeWorkgroupStorageSize);
}

/** Whether `c` (a measured tiling, from the table or a tiles file) is one the tuner could have picked at head dim D
 *  within `budget`: valid, fitting, the kernels' own workgroup size and power-of-two key tiles. */
export function tunedTiling(c: unknown, D: number, budget: number): c is AttentionConfig {
  if (!validTiling(c, D) || attentionSharedBytes(c) > budget) return false;
  return c.kind === "flash" || c.WG === WG && (c.kind !== "rows" || (c.BT & (c.BT - 1)) === 0);
}

/** Production tilings by head dim, workgroup-memory budget and adapter preferences. */
const configs = new Map<string, AttentionConfig>();

/** The tiling production runs at head dim D on `dev`'s adapter: the one gpu-check measured fastest there (tiles file:
 *  `attention` by head dim) when it is one the tuner could have picked (valid, fitting, the kernels' own workgroup
 *  size and key tiles: a hand-edited file cannot make a kernel nobody tested), else attentionConfig from the table
 *  entry's preferences. */
export function attentionTiling(dev: Device, D: number): AttentionConfig {
  const budget = attentionBudget(dev);
  const e = tilesFor(dev.adapterName, dev.isFallback);
  const measured = e.attentionByD?.[D];
  if (tunedTiling(measured, D, budget)) return measured;
  const prefs = attentionPrefs(e);
  const key = `${D}|${budget}|${Object.values(prefs).join("|")}`;
  let c = configs.get(key);
  if (!c) configs.set(key, c = attentionConfig(D, budget, prefs));
  return c;
}

/** Columns [col, col + width) of the token rows of `t` [B, N, W]: Q, K or V read in place from one packed
 *  projection (e.g. to_q/to_k/to_v computed as one GEMM into [B, N, 3C]). */
export interface Cols {
  t: Tensor;
  col: number;
  width: number;
}
export type AttentionOperand = Tensor | Cols;

function asCols(op: string, name: string, x: AttentionOperand): Cols {
  const c = x instanceof Tensor ? { t: x, col: 0, width: x.shape[x.shape.length - 1] } : x;
  const W = c.t.shape[2];
  if (c.t.shape.length !== 3 || !(c.col >= 0 && c.width > 0 && c.col + c.width <= W)) {
    throw new GpuError(
      `${op}: ${name} is columns [${c.col}, ${c.col + c.width}) of [${c.t.shape}], expected [B, N, W]`,
    );
  }
  return c;
}

/** q [Bq, Nq, heads*D], k/v [Bk, Nk, heads*D] (row-major tokens, heads interleaved as in PyTorch's
 *  view(B, N, heads, D)), each a tensor or columns of a packed one; returns softmax(q k^T * scale) v per head as
 *  [Bq, Nq, heads*D]. Bk = ceil(Bq / kvBatchDiv). */
export function attention(
  q: AttentionOperand,
  k: AttentionOperand,
  v: AttentionOperand,
  heads: number,
  opts: AttentionOpts = {},
): Tensor {
  return attentionWith(q, k, v, heads, opts);
}

/** One attention call's shape as the kernel runs it: Bq query batches of Nq rows against Nk keys, `heads` heads of
 *  head dim D. */
export interface AttentionCall {
  Bq: number;
  Nq: number;
  Nk: number;
  heads: number;
  D: number;
  causal: boolean;
  /** Query batches per k/v batch (cross-frame attention: the frames of a group). */
  kvBatchDiv: number;
}

/** Told of every attention call (once per call, however it is split to fit the binding limit), like matmul.ts's
 *  `gemmHooks.onGemm` for the GEMMs: gpu-check and bench count a UNet call's FLOPs with both (tools/bench/flops.ts). */
export const attentionHooks: {
  onAttention: ((a: AttentionCall) => void) | null;
  /** Overrides the production tiling of every call (gpu-check's tiles section times candidates with it). */
  tiling: AttentionConfig | null;
  /** false: scalar loads and stores even where vec4 ones fit (tests, and the perf rows that time both). */
  vec4: boolean | null;
} = { onAttention: null, tiling: null, vec4: null };

/** Overrides for tests: an explicit tiling, or a smaller binding limit to exercise the batch split. */
export interface AttentionInternal {
  cfg?: AttentionConfig;
  maxBinding?: number;
}

/** `attention` with test overrides (the tilings of GPUs with less workgroup memory, the batch split). */
export function attentionWith(
  qIn: AttentionOperand,
  kIn: AttentionOperand,
  vIn: AttentionOperand,
  heads: number,
  opts: AttentionOpts = {},
  internal: AttentionInternal = {},
): Tensor {
  const op = "attention";
  const qc = asCols(op, "q", qIn), kc = asCols(op, "k", kIn), vc = asCols(op, "v", vIn);
  // The packed tensors; the kernel reads columns qc.col.., kc.col.., vc.col.. of their rows.
  const q = qc.t, k = kc.t, v = vc.t;
  assertSameDType(op, q, k, v, ...(opts.out ? [opts.out] : []));
  const [Bq, Nq] = q.shape, C = qc.width;
  if (!Number.isInteger(heads) || heads < 1 || C % heads !== 0) {
    throw new GpuError(`${op}: heads=${heads} does not divide the channel count ${C} of q [${q.shape}]`);
  }
  const D = C / heads;
  const div = opts.kvBatchDiv ?? 1;
  if (!Number.isInteger(div) || div < 1) throw new GpuError(`${op}: kvBatchDiv must be a positive integer, got ${div}`);
  const Bk = Math.ceil(Bq / div);
  const Nk = k.shape[1];
  for (const [name, x] of [["k", kc], ["v", vc]] as const) {
    if (x.t.shape[0] !== Bk || x.t.shape[1] !== Nk || x.width !== C) {
      throw new GpuError(
        `${op}: ${name} is ${x.width} columns of [${x.t.shape}], expected ${C} columns of [${Bk}, ${Nk}, ?]`,
      );
    }
  }
  if (Nk < 1) throw new GpuError(`${op}: k has no tokens ([${k.shape}])`);
  if (opts.out) assertShape(op, "out", opts.out, [Bq, Nq, C]);
  const dev = q.dev;
  let c = internal.cfg ?? attentionHooks.tiling ?? attentionTiling(dev, D);
  if (c.kind === "rows" && !internal.cfg) {
    // Short sequences (tiny models, text encoders): no more threads than query rows, since idle threads still
    // pay for every barrier (at least 32 to keep a full NVIDIA warp).
    const need = 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(Nq / c.QPT)) * c.TPR));
    if (need < c.WG) c = { ...c, WG: Math.max(32, need, c.TPR) };
  }
  checkConfig(c, D);
  const out = opts.out ?? empty(dev, [Bq, Nq, C], q.dtype);
  if (Bq === 0 || Nq === 0) return out;
  attentionHooks.onAttention?.({ Bq, Nq, Nk, heads, D, causal: !!opts.causal, kvBatchDiv: div });
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const { kind, ...consts } = c;
  // A row's TPR threads sum their dots on subgroups when they fit in one.
  const SG = c.kind === "rows" && rowsOnSubgroups(dev, c.TPR);
  // One vec4 access per four head elements where every row start and column is a multiple of 4 (bindings start
  // aligned: bindable()), else four scalar ones.
  const V4 = attentionHooks.vec4 !== false &&
    [D, q.shape[2], k.shape[2], v.shape[2], qc.col, kc.col, vc.col].every((n) => n % 4 === 0);
  const io = ioSrc + (V4 ? loadVec4Src : loadSrc);
  const kernel = kind === "rows"
    ? dev.kernel(op, io + attentionSrc + (SG ? rowsSgSrc : rowsSrc), { D, ...consts, SG, V4 }, q.dtype)
    : kind === "flash"
    ? dev.kernel("attention_flash", io + flashSrc, { D, ...consts, V4 }, q.dtype)
    : dev.kernel("attention_tiled", io + attentionTiledSrc, { D, ...consts, V4 }, q.dtype);

  // Past the binding limit (lavapipe: 128 MiB) or the grid's z limit, split: whole kvBatchDiv groups per dispatch
  // when they fit, else the query batches of one group, else the query rows of one batch (queries are independent;
  // k/v of one batch must fit). A view at an unaligned offset is copied to a pooled tensor first.
  const limit = internal.maxBinding ?? dev.maxBinding;
  const Wq = q.shape[2], eb = BYTES[q.dtype];
  const perQ = Nq * Math.max(Wq, C) * eb, perK = Nk * Math.max(k.shape[2], v.shape[2]) * eb;
  const maxZ = dev.gpu.limits.maxComputeWorkgroupsPerDimension;
  const params = (nq: number) =>
    new Params().u(nq, Nk, C, div, opts.causal ? 1 : 0).f(scale * Math.LOG2E)
      .u(Wq, k.shape[2], v.shape[2], qc.col, kc.col, vc.col);
  const run = (qs: Tensor, ks: Tensor, vs: Tensor, os: Tensor) => {
    const [nb, nq] = qs.shape, qb = Math.ceil(nq / (c.kind === "rows" ? c.WG / c.TPR * c.QPT : c.BQ));
    const [qa, ka, va] = [qs, ks, vs].map((t) => bindable(t)), oa = bindable(os, false);
    const bind = (t: Tensor) => V4 ? vecBinding(op, t) : t.binding();
    dev.dispatch(kernel, params(nq), [bind(qa), bind(ka), bind(va), bind(oa)], [qb, heads, nb]);
    for (const [t, a] of [[qs, qa], [ks, ka], [vs, va]]) if (a !== t) a.release();
    if (oa !== os) {
      blockCopy(oa, os, { n: os.numel, blk: os.numel, ss: 0, ds: 0, so: 0, do: 0 });
      oa.release();
    }
  };
  const fullGroups = Math.floor(Bq / div);
  const g = Math.min(
    itemsPerBinding(dev, fullGroups, [div * perQ, perK], limit),
    Math.floor(maxZ / div),
    fullGroups,
  );
  let b0 = 0;
  if (g >= 1) {
    while (b0 + div <= Bq) {
      const ng = Math.min(g, Math.floor((Bq - b0) / div)), kb0 = b0 / div;
      const whole = ng * div === Bq && ng === Bk;
      run(
        whole ? q : q.slice0(b0, ng * div),
        whole ? k : k.slice0(kb0, ng),
        whole ? v : v.slice0(kb0, ng),
        whole ? out : out.slice0(b0, ng * div),
      );
      b0 += ng * div;
    }
  }
  // The rest (or everything, when one group does not fit): one k/v batch at a time.
  if (perK > limit) {
    throw new GpuError(
      `${op}: one batch of k [${k.shape}] (${perK} bytes) exceeds the storage binding limit (${limit})`,
    );
  }
  for (; b0 < Bq;) {
    const kb = Math.floor(b0 / div), end = Math.min(Bq, (kb + 1) * div);
    const ks = k.slice0(kb, 1), vs = v.slice0(kb, 1);
    const nb = Math.min(end - b0, maxZ, Math.floor(limit / perQ));
    if (nb >= 1) {
      run(q.slice0(b0, nb), ks, vs, out.slice0(b0, nb));
      b0 += nb;
      continue;
    }
    // One query batch is too large: split its query rows (a causal mask would need their offset).
    if (opts.causal) throw new GpuError(`${op}: a causal q [${q.shape}] batch exceeds the storage binding limit`);
    const rows = Math.max(1, Math.floor(limit / (Math.max(Wq, C) * eb)));
    for (let n0 = 0; n0 < Nq; n0 += rows) {
      const m = Math.min(rows, Nq - n0);
      run(q.view([1, m, Wq], (b0 * Nq + n0) * Wq), ks, vs, out.view([1, m, C], (b0 * Nq + n0) * C));
    }
    b0 += 1;
  }
  return out;
}
