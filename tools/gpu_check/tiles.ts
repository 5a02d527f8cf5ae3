// gpu-check, section "tiles": the GEMM tiles (linear and conv2d's implicit GEMM) picked by measurement on this
// adapter instead of the table's scoring. One UNet call at each batch is recorded (a dry run: nothing executes) to
// collect the GEMM shapes a real run makes; each distinct shape is then run with every candidate tile and the
// fastest is kept when it beats the scored pick by more than the noise. The winners go to tilesDir()/<adapter>.json,
// which every later run on this adapter reads (pipeline/ops/tiles.ts), and are put in force for the rest of the
// check, so the UNet and text-to-video sections after it measure the tuned kernels. In f16 each shape's winner is also
// timed with the GEMM core's other math (F16MATH on or off), and a faster one is kept (the tile's `f16`).
// Attention first (a few candidates per head dim, and the kernel choice flips between adapters: flash is 1.8x the rows
// kernel on llvmpipe and 0.25-0.45x on an H200): at each head dim of the call, its heaviest call shape is timed with
// the flash kernel (where it fits) and the rows kernel at each tile of keys; a winner goes to the file's `attention`.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { type Tensor, withTensorScope } from "../../pipeline/gpu/tensor.ts";
import type { UNet } from "../../pipeline/models/unet.ts";
import {
  attention,
  attentionBudget,
  type AttentionCall,
  type AttentionConfig,
  attentionHooks,
  attentionPrefs,
  attentionTiling,
  flashConfig,
  rowsConfig,
} from "../../pipeline/ops/attention.ts";
import { conv2d } from "../../pipeline/ops/conv2d.ts";
import {
  adapterTiles,
  BK,
  f16Math,
  f16MathForced,
  type GemmCall,
  gemmHooks,
  type GemmTile,
  linear,
  pickTile,
  sharedBytes,
  splitsFor,
  threads,
  TILES,
  unrollOf,
} from "../../pipeline/ops/matmul.ts";
import { type MeasuredTiles, sameBlocks, tilesFile, useMeasuredTiles } from "../../pipeline/ops/tiles.ts";
import { useWinograd, winogradGemmKey, winogradShape } from "../../pipeline/ops/winograd.ts";
import { attnFor, randomTensor } from "../bench/unet.ts";

export interface TileRow {
  /** "MxNxK" as pickTile keys it. */
  key: string;
  op: "linear" | "conv2d";
  /** The shape in the op's own terms. */
  shape: string;
  /** How often one UNet call (of every recorded batch) makes it. */
  calls: number;
  scored: GemmTile;
  scoredMs: number;
  best: GemmTile;
  bestMs: number;
  /** Candidates timed (those within this GPU's workgroup limits). */
  tried: number;
  /** The winner's milliseconds by inner-loop unrolling (its own and those tried: the UNROLL_SHAPES heaviest shapes),
   *  before the unrolling was picked; empty where none was tried. */
  unrollMs: Record<number, number>;
  /** 3x3 stride-1 convolutions: Winograd's best time (the dtype's tile; its GEMMs on their scored tile or on the
   *  implicit GEMM winner's blocks); absent elsewhere. */
  winogradMs?: number;
}

/** One head dim's attention, timed with each candidate tiling on its heaviest call shape. */
export interface AttentionTileRow {
  D: number;
  /** The timed call's shape. */
  shape: string;
  /** Calls of one UNet call (every recorded batch) at this head dim, and those of the timed shape. */
  calls: number;
  shapeCalls: number;
  production: AttentionConfig;
  productionMs: number;
  best: AttentionConfig;
  bestMs: number;
  tried: number;
}

export interface TilesReport {
  dtype: DType;
  batches: number[];
  /** Attention tilings by head dim (timed before the GEMMs). */
  attention: AttentionTileRow[];
  rows: TileRow[];
  /** Shapes recorded but not timed (out of the section's time). */
  untimed: number;
  /** GEMM time of one call at every recorded batch, summed by shape x calls: scored picks, then measured ones. */
  scoredMs: number;
  tunedMs: number;
  /** Where the winners were written for later runs (null: not written). */
  file: string | null;
}

/** A winner must beat the scored pick by this much to replace it (wall-clock noise). */
const MARGIN = 0.03;

const same = (a: GemmTile, b: GemmTile) =>
  sameBlocks(a, b) && (a.splitK ?? 1) === (b.splitK ?? 1) && a.f16 === b.f16 && a.unroll === b.unroll &&
  a.winograd === b.winograd;
const tileText = (t: GemmTile) =>
  `${t.BM}x${t.BN}/${t.TM}x${t.TN}${(t.splitK ?? 1) > 1 ? ` k/${t.splitK}` : ""}${
    t.f16 === undefined ? "" : t.f16 ? " f16math" : " f32math"
  }${t.unroll === undefined ? "" : ` unroll ${t.unroll}`}${t.winograd ? " winograd" : ""}`;

/** The inner-loop unrollings the tuner tries on a shape's winner beside the adapter's own (shaders/gemm.wgsl
 *  UNROLL): none, four steps, the whole K-tile; on the UNROLL_SHAPES heaviest shapes only (calls x work: most of a
 *  call's GEMM time), so that the section's budget still reaches the rest. */
const TRIED_UNROLLS = [1, 4, BK];
const UNROLL_SHAPES = 16;

/** The candidates for one shape: every tile, and for conv2d each split of K that leaves slices deep enough and
 *  does not go past twice the workgroups the adapter needs (more only adds partial sums). */
function candidatesFor(g: GemmCall, tiles: GemmTile[], fill: number): GemmTile[] {
  if (g.op !== "conv2d") return tiles;
  const [M, N, K] = g.key.split("x").map(Number);
  return tiles.flatMap((t) => {
    const n = Math.ceil(M / t.BM) * Math.ceil(N / t.BN);
    return splitsFor(K).filter((s) => s === 1 || n * s <= 2 * fill).map((s) => s > 1 ? { ...t, splitK: s } : t);
  });
}

/** The GEMMs and attention calls one UNet call makes at each batch, by key, with how many times each runs. */
export async function recordCalls(
  dev: Device,
  unet: UNet,
  latent: number,
  batches: number[],
): Promise<{
  gemms: Map<string, { call: GemmCall; calls: number }>;
  attention: Map<string, { call: AttentionCall; calls: number }>;
}> {
  const seen = new Map<string, { call: GemmCall; calls: number }>();
  const attn = new Map<string, { call: AttentionCall; calls: number }>();
  const cfg = unet.cfg, dtype = unet.params.dtype;
  const cross = Array.isArray(cfg.cross_attention_dim) ? cfg.cross_attention_dim[0] : cfg.cross_attention_dim;
  await withTensorScope(dev, async () => {
    const context = randomTensor(dev, [2, 77, cross], 7, dtype);
    gemmHooks.onGemm = (g) => {
      const s = seen.get(g.key);
      if (s) s.calls++;
      else seen.set(g.key, { call: g, calls: 1 });
    };
    attentionHooks.onAttention = (a) => {
      const key = JSON.stringify(a);
      const s = attn.get(key);
      if (s) s.calls++;
      else attn.set(key, { call: a, calls: 1 });
    };
    try {
      for (const batch of batches) {
        const sample = randomTensor(dev, [batch, cfg.in_channels, latent, latent], 8, dtype);
        dev.precompile(() => unet.forward({ sample, timesteps: [500], context, attn: attnFor(batch).ctx }));
      }
      await dev.sync();
    } finally {
      gemmHooks.onGemm = null;
      attentionHooks.onAttention = null;
    }
  });
  return { gemms: seen, attention: attn };
}

/** Inputs for one GEMM like `g` and the call that runs it (into a fixed output, so nothing is allocated per call). */
function setup(dev: Device, g: GemmCall, dtype: DType): () => Tensor {
  if (g.op === "linear") {
    const x = randomTensor(dev, [g.M, g.K], 1, dtype);
    const w = randomTensor(dev, [g.N, g.K], 2, dtype);
    const y = randomTensor(dev, [g.M, g.N], 3, dtype);
    return () => linear(x, w, undefined, { out: y });
  }
  const [pt, pb, pl, pr] = g.padding;
  const Ho = Math.floor((g.H + pt + pb - g.KH) / g.stride) + 1;
  const Wo = Math.floor((g.W + pl + pr - g.KW) / g.stride) + 1;
  const x = randomTensor(dev, [g.B, g.Cin, g.H, g.W], 1, dtype);
  const w = randomTensor(dev, [g.Cout, g.Cin, g.KH, g.KW], 2, dtype);
  const y = randomTensor(dev, [g.B, g.Cout, Ho, Wo], 3, dtype);
  return () => conv2d(x, w, undefined, { stride: g.stride, padding: g.padding, out: y });
}

/** Milliseconds per call of `run` with the GEMM tile `tile` in force; `winograd`: a convolution by Winograd, its GEMMs
 *  on `tile` (null: their scored pick). */
async function timeTile(
  dev: Device,
  run: () => Tensor,
  tile: GemmTile | null,
  budgetMs: number,
  winograd = false,
): Promise<number> {
  gemmHooks.tile = tile;
  gemmHooks.winograd = winograd || null;
  try {
    return await timeCalls(dev, run, budgetMs);
  } finally {
    gemmHooks.tile = null;
    gemmHooks.winograd = null;
  }
}

/** Milliseconds per call of `run` with the attention tiling `c` in force. */
async function timeAttention(dev: Device, run: () => Tensor, c: AttentionConfig, budgetMs: number): Promise<number> {
  attentionHooks.tiling = c;
  try {
    return await timeCalls(dev, run, budgetMs);
  } finally {
    attentionHooks.tiling = null;
  }
}

/** Milliseconds per call of `run`: compiled and warmed first, then the better of two batches of calls (about
 *  `budgetMs` each, at least 3 calls: one submit's overhead is spread over them). */
async function timeCalls(dev: Device, run: () => Tensor, budgetMs: number): Promise<number> {
  run();
  await dev.sync(); // compile + warm up
  let t0 = performance.now();
  run();
  await dev.sync();
  const one = Math.max(performance.now() - t0, 1e-3);
  const reps = Math.max(3, Math.min(50, Math.floor(budgetMs / one)));
  let best = Infinity;
  for (let round = 0; round < 2; round++) {
    t0 = performance.now();
    for (let i = 0; i < reps; i++) run();
    await dev.sync();
    best = Math.min(best, (performance.now() - t0) / reps);
  }
  return best;
}

/** Inputs for one attention call like `a` and the call that runs it (into a fixed output). */
function attentionSetup(dev: Device, a: AttentionCall, dtype: DType): () => Tensor {
  const C = a.heads * a.D, Bk = Math.ceil(a.Bq / a.kvBatchDiv);
  const q = randomTensor(dev, [a.Bq, a.Nq, C], 1, dtype);
  const k = randomTensor(dev, [Bk, a.Nk, C], 2, dtype);
  const v = randomTensor(dev, [Bk, a.Nk, C], 3, dtype);
  const out = randomTensor(dev, [a.Bq, a.Nq, C], 4, dtype);
  return () => attention(q, k, v, a.heads, { kvBatchDiv: a.kvBatchDiv, causal: a.causal, out });
}

/** The tilings tried at head dim D: the production one, the flash kernel where it fits, the rows kernel with one and
 *  two rows per thread at each tile of keys (distinct ones only). */
function attentionCandidates(dev: Device, D: number, production: AttentionConfig): AttentionConfig[] {
  const budget = attentionBudget(dev);
  const out: AttentionConfig[] = [production];
  const add = (c: AttentionConfig | null) => {
    if (c && !out.some((x) => JSON.stringify(x) === JSON.stringify(c))) out.push(c);
  };
  if (production.kind === "tiled") return out; // past the rows kernel's 160: one kernel
  if (Math.ceil(D / 4) >= 4) add(flashConfig(D, budget, attentionPrefs(adapterTiles(dev)).lanes));
  for (const QPT of [1, 2]) for (const keys of [16, 32, 64, 128]) add(rowsConfig(D, budget, keys, QPT));
  return out;
}

const attnText = (c: AttentionConfig) =>
  c.kind === "flash"
    ? `flash BQ ${c.BQ} CPT ${c.CPT}`
    : c.kind === "rows"
    ? `rows BK ${c.BK} BT ${c.BT}${c.QPT > 1 ? ` x${c.QPT} rows` : ""}`
    : `tiled BQ ${c.BQ} BK ${c.BK}`;

/** Times each head dim's candidate tilings on its heaviest call shape; returns a row per head dim. */
async function tuneAttention(
  dev: Device,
  calls: { call: AttentionCall; calls: number }[],
  dtype: DType,
  perTileMs: number,
): Promise<AttentionTileRow[]> {
  const work = (a: AttentionCall) => a.Bq * a.heads * a.Nq * a.Nk * a.D;
  const byD = new Map<number, { call: AttentionCall; calls: number }[]>();
  for (const c of calls) byD.set(c.call.D, [...byD.get(c.call.D) ?? [], c]);
  const rows: AttentionTileRow[] = [];
  for (const [D, list] of byD) {
    const heaviest = list.reduce((a, b) => b.calls * work(b.call) > a.calls * work(a.call) ? b : a);
    const production = attentionTiling(dev, D);
    const tried = attentionCandidates(dev, D, production);
    await withTensorScope(dev, async () => {
      const run = attentionSetup(dev, heaviest.call, dtype);
      const times: number[] = [];
      for (const c of tried) times.push(await timeAttention(dev, run, c, perTileMs));
      let best = 0;
      for (let i = 1; i < tried.length; i++) if (times[i] < times[best] * (1 - MARGIN)) best = i;
      const a = heaviest.call;
      rows.push({
        D,
        shape:
          `B=${a.Bq} Nq=${a.Nq} Nk=${a.Nk} heads=${a.heads}${a.kvBatchDiv > 1 ? ` kvBatchDiv=${a.kvBatchDiv}` : ""}` +
          (a.causal ? " causal" : ""),
        calls: list.reduce((s, c) => s + c.calls, 0),
        shapeCalls: heaviest.calls,
        production,
        productionMs: times[0],
        best: tried[best],
        bestMs: times[best],
        tried: tried.length,
      });
    });
    dev.pool.trim();
  }
  return rows.sort((x, y) => x.D - y.D);
}

/**
 * Times every candidate tile on each recorded shape (largest total work first, so a short budget tunes what
 * matters), puts the winners in force on `dev`'s adapter and writes them to `dir` (tiles.ts's tilesDir() by default;
 * null: not written).
 */
export async function tuneTiles(
  dev: Device,
  unet: UNet,
  o: { latent: number; batches: number[]; budgetS: number; perTileMs: number; dir?: string | null },
): Promise<TilesReport> {
  const dtype = unet.params.dtype;
  // Against the table's own scoring: what an earlier measurement put in force is measured again, not kept blindly.
  useMeasuredTiles(dev.adapterName, dev.isFallback, {});
  const recorded = await recordCalls(dev, unet, o.latent, o.batches);
  const attentionRows = await tuneAttention(dev, [...recorded.attention.values()], dtype, o.perTileMs);
  const shapes = [...recorded.gemms.values()];
  const work = (g: GemmCall) => g.op === "linear" ? g.M * g.N * g.K : g.Cout * g.B * g.Cin * g.KH * g.KW * g.H * g.W;
  shapes.sort((a, b) => b.calls * work(b.call) - a.calls * work(a.call));
  const L = dev.gpu.limits;
  const candidates = TILES.filter((t) =>
    sharedBytes(t) <= L.maxComputeWorkgroupStorageSize && threads(t) <= L.maxComputeInvocationsPerWorkgroup
  );
  const t0 = performance.now();
  const rows: TileRow[] = [];
  const winogradTiles: Record<string, GemmTile> = {};
  let untimed = 0;
  for (const { call: g, calls } of shapes) {
    if ((performance.now() - t0) / 1000 > o.budgetS) {
      untimed++;
      continue;
    }
    const [M, N, K] = g.key.split("x").map(Number);
    let scored = pickTile(dev, M, N, K, { splitK: g.op === "conv2d" });
    const eligible = g.op === "conv2d" && winogradShape(g);
    // Whether the table's rule puts this shape on Winograd (then that is the production time to beat).
    const ruled = eligible && useWinograd(dev, { ...g, HWo: N / g.B });
    const tried = candidatesFor(g, candidates, adapterTiles(dev).fill);
    await withTensorScope(dev, async () => {
      const run = setup(dev, g, dtype);
      const times = new Map<GemmTile, number>();
      for (const t of tried) times.set(t, await timeTile(dev, run, t, o.perTileMs));
      let scoredMs = times.get(tried.find((c) => same(c, scored))!) ??
        await timeTile(dev, run, scored, o.perTileMs);
      let best = scored, bestMs = scoredMs;
      for (const [t, ms] of times) if (ms < bestMs * (1 - MARGIN)) best = t, bestMs = ms;
      // Times `t` and takes it if it beats the winner so far by the margin.
      const challenge = async (t: GemmTile) => {
        const ms = await timeTile(dev, run, t, o.perTileMs);
        times.set(t, ms);
        if (ms < bestMs * (1 - MARGIN)) best = t, bestMs = ms;
        return ms;
      };
      // Winograd (pipeline/ops/winograd.ts; the dtype's tile), its GEMMs on their scored tile and on the winner's
      // blocks; where the table's rule takes Winograd, the scored tile's time is the production time to beat.
      let winogradMs: number | undefined, winogradTile: GemmTile | null = null;
      if (eligible) {
        const scoredWino = winogradMs = await timeTile(dev, run, null, o.perTileMs, true);
        const blocks = { BM: best.BM, BN: best.BN, TM: best.TM, TN: best.TN };
        const ms = await timeTile(dev, run, blocks, o.perTileMs, true);
        if (ms < winogradMs * (1 - MARGIN)) winogradMs = ms, winogradTile = blocks;
        if (ruled) scored = { ...scored, winograd: true }, scoredMs = scoredWino;
      }
      if (dtype === "f16" && f16MathForced() === null) {
        // The winner again with the GEMM core's other f16 math (packed f16 FMAs or f32 ones: shaders/gemm.wgsl);
        // not when $ZEROVID_GEMM_F16 forces one math on every tile (both timings would run the same kernel).
        await challenge({ ...best, f16: !f16Math(dev, best, dtype) });
      }
      // The winner with the inner loop unrolled otherwise (loop bounding hides trip counts from some drivers).
      const unrollMs: Record<number, number> = {};
      if (rows.length < UNROLL_SHAPES) {
        const base = best, own = unrollOf(dev, base);
        unrollMs[own] = bestMs;
        for (const u of TRIED_UNROLLS.filter((u) => u !== own)) unrollMs[u] = await challenge({ ...base, unroll: u });
      }
      if (winogradMs !== undefined) {
        // Kept as the shape's `winograd` either way, so that the measurement overrides the table's rule; the way
        // production goes (Winograd where the rule takes it) is kept unless the other beats it by the margin.
        const wins = ruled ? !(bestMs < winogradMs * (1 - MARGIN)) : winogradMs < bestMs * (1 - MARGIN);
        best = { ...best, winograd: wins };
        if (wins) bestMs = winogradMs;
        if (wins && winogradTile && g.op === "conv2d") {
          const [pt, pb, pl, pr] = g.padding;
          const y = [g.B, g.Cout, g.H + pt + pb - 2, g.W + pl + pr - 2];
          winogradTiles[winogradGemmKey(dev, [g.B, g.Cin, g.H, g.W], y, dtype)] = winogradTile;
        }
      }
      rows.push({
        key: g.key,
        op: g.op,
        shape: g.op === "linear"
          ? `M=${g.M} N=${g.N} K=${g.K}`
          : `x=[${g.B},${g.Cin},${g.H},${g.W}] Cout=${g.Cout} k=${g.KH}${g.stride > 1 ? ` s=${g.stride}` : ""}`,
        calls,
        scored,
        scoredMs,
        best,
        bestMs,
        tried: times.size + (winogradMs === undefined ? 0 : 2),
        unrollMs,
        ...(winogradMs === undefined ? {} : { winogradMs }),
      });
    });
    dev.pool.trim();
  }
  const winners: Record<string, GemmTile> = {};
  for (const r of rows) if (!same(r.best, r.scored) || r.best.winograd !== undefined) winners[r.key] = r.best;
  Object.assign(winners, winogradTiles);
  const attentionWinners: Record<number, AttentionConfig> = {};
  for (const r of attentionRows) if (r.best !== r.production) attentionWinners[r.D] = r.best;
  useMeasuredTiles(dev.adapterName, dev.isFallback, winners, attentionWinners);
  const file = o.dir === null ? null : tilesFile(dev.adapterName, o.dir);
  if (file) {
    const body: MeasuredTiles = {
      adapter: dev.adapterName,
      dtype,
      measured: new Date().toISOString(),
      shapes: winners,
      attention: attentionWinners,
    };
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(file, JSON.stringify(body, null, 1) + "\n");
  }
  const sum = (f: (r: TileRow) => number) => rows.reduce((s, r) => s + r.calls * f(r), 0);
  return {
    dtype,
    batches: o.batches,
    attention: attentionRows,
    rows,
    untimed,
    scoredMs: sum((r) => r.scoredMs),
    tunedMs: sum((r) => r.bestMs),
    file,
  };
}

/** A tile and an attention tiling as the report prints them. */
export { attnText, tileText };
