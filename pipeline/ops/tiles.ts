// Per-adapter tile choices for the GEMM kernels (linear and conv2d's implicit GEMM). A table, not code: entries are
// picked by adapter name, and `deno task gpu-check` measures an adapter's kernels to fill or correct its entry.
//
// Format (one entry per adapter family; the first whose `match` is a case-insensitive substring of the adapter's
// description wins, then "cpu" for software/fallback adapters, then "default"):
//   fill       workgroups that keep the adapter busy; tiles that leave it emptier score lower
//   blocking   relative speed by outputs per thread (TM * TN: 64, 32, 16)
//   tiles      optional: the candidate tiles (default: every tile in TILES)
//   shapes     optional: measured winners by GEMM shape "MxNxK" (linear: rows x out x in; conv2d: Cout x
//              images*Ho*Wo x Cin*kh*kw), used before any scoring
//   splitCost  optional: score factor of a split-K conv tile (its partial sums and their extra pass; default 0.85)
//   f16Math    optional: GEMMs of f16 runs multiply in f16 (packed f16 FMAs; see matmul.ts f16Math); default f32
//   prefetch   optional: the GEMM core loads the next K-tile into registers before computing this one (default
//              true); false stores it first (shaders/gemm.wgsl PREFETCH)
//   unroll     optional: K steps per iteration of the GEMM core's inner loop, 1 (default: the driver's choice), 2, 4,
//              8 or 16 (shaders/gemm.wgsl UNROLL); a measured tile's own `unroll` comes first
//   directConv optional: conv2d runs shaders/conv2d_direct.wgsl (a thread per output, no tiles) when an image's
//              output has at most `maxPixels` pixels; absent: never
//   lanes      optional: threads that run in lockstep (NVIDIA's warp: 32, the default; llvmpipe: 8 f32 lanes of AVX2);
//              kernels whose workgroup size follows the shape (flash attention) prefer a multiple of it
//   attention  optional: "flash" runs head dims 13-80 (SD's 40, 64, 80) on shaders/attention_flash.wgsl where it fits;
//              "rows" (the default) on shaders/attention.wgsl (pipeline/ops/attention.ts attentionConfig)
//   rowsTileKeys optional: keys per workgroup-memory tile of the rows kernel (default 16; it scores 16 at a time)
//   rowsPerThread optional: query rows per thread of the rows kernel, 1 (default) or 2
//   attentionByD optional: measured attention tilings by head dim, used before `attention` / `rowsTileKeys`
//
// Measured tiles: `deno task gpu-check` times every candidate tile on the GEMM shapes of a real UNet call on its
// adapter, and each attention kernel and tiling at the call's head dims, and writes the winners to
// tilesDir()/<adapter>.json ({ adapter, dtype, measured, shapes, attention }); every later run on that adapter reads
// the file once and puts its entries before the table's (a tile that is not one of the kernels' candidates, or an
// attention tiling the kernels cannot run, is ignored, so a hand-edited file cannot make a kernel nobody tested).
import type { AttentionConfig } from "./attention.ts";
import type { GemmTile } from "./matmul.ts";

export interface AdapterTiles {
  match: string;
  fill: number;
  blocking: Record<number, number>;
  tiles?: GemmTile[];
  shapes?: Record<string, GemmTile>;
  splitCost?: number;
  f16Math?: boolean;
  prefetch?: boolean;
  unroll?: number;
  directConv?: { maxPixels: number };
  /** 3x3 stride-1 convolutions by Winograd (pipeline/ops/winograd.ts) where both channel counts reach minChannels and
   *  the output has minPixels or more (all images); a measured shape's `winograd` overrides it. `f4MinTiles`: f32 runs
   *  take F(4x4, 3x3) (a quarter of the multiplies, but u 4x the weight's bytes) on passes of at least this many 4x4
   *  tiles; absent: F(2x2, 3x3) always, as f16 runs. */
  winograd?: { minChannels: number; minPixels: number; f4MinTiles?: number };
  lanes?: number;
  attention?: "flash" | "rows";
  rowsTileKeys?: number;
  rowsPerThread?: number;
  attentionByD?: Record<number, AttentionConfig>;
}

/** What llvmpipe measured, shared by the software entries below (`match` aside). */
const SOFTWARE: Omit<AdapterTiles, "match"> = {
  fill: 4,
  blocking: { 64: 1, 32: 0.62, 16: 0.5 },
  splitCost: 0.5,
  prefetch: false,
  lanes: 8,
  attention: "flash",
  rowsTileKeys: 128,
  rowsPerThread: 2,
};

export const TILE_TABLE: Record<string, AdapterTiles> = {
  // A large GPU: ~132 SMs x 2 resident 256-thread groups; blocking estimated (bigger blocks reuse shared loads). The
  // rows attention kernel, as on the one GPU measured (NVIDIA, below).
  // Winograd F(2x2, 3x3) from 256 channels, as on llvmpipe (below): not yet timed on a GPU (gpu-check's kernels rows
  // "winograd" / "implicit GEMM" and its tiles section measure it per shape); expected to pay wherever the GEMMs are
  // bound by FMAs, as on the H200 (run 4: SD's 64 px conv at 2.9 TFLOP/s against 4.1 for a linear layer, so 4/9 of
  // the multiplies on linear-like GEMMs should take about a third of the time).
  default: {
    match: "",
    fill: 256,
    blocking: { 64: 1, 32: 0.85, 16: 0.7 },
    attention: "rows",
    winograd: { minChannels: 256, minPixels: 1 },
  },
  // NVIDIA H200 (Vulkan, driver 580), measured by gpu-check on 2026-12-04 (SD 1.5 shapes, batches 2 and 16).
  // - 128x64/8x4 beat the scored 64x64/8x8 and 128x128/8x8 on every conv (15-50 %), and 4x4 blocks the 8x8 ones on
  //   the GEGLU projections (3x), so 8x4 blocks score highest here.
  // - f16 math: the whole f16 UNet call 0.78x the GPU time at batch 2, 0.83x at batch 16 (run 3); with it on by
  //   default, f32 math took 1.36x / 1.46x (run 4). The VAE's 512-channel 128x128 conv is the exception (16.3 ms in
  //   f32 math, 19.8 in f16: kept f32).
  // - Attention on the rows kernel: flash took 2.2x its time at D = 40 (f32 7.1 vs 3.3 ms, 4096 tokens, batch 2;
  //   f16 6.7 vs 5.5) and 4.1x at D = 80 (7.0 vs 1.7 ms); flash with two columns (80 threads) 18.4 ms. At batch 16
  //   (cross-frame), two rows per thread: D = 40 16.4 vs 25.2 ms with one, D = 80 6.2 vs 6.6 ms (run 4's tiles).
  nvidia: {
    match: "NVIDIA",
    fill: 264,
    blocking: { 64: 0.95, 32: 1, 16: 0.7 },
    f16Math: true,
    attention: "rows",
    winograd: { minChannels: 256, minPixels: 1 },
    attentionByD: {
      40: { kind: "rows", TPR: 2, DV: 5, BK: 8, BT: 32, WG: 128, QPT: 2 },
      80: { kind: "rows", TPR: 4, DV: 5, BK: 8, BT: 16, WG: 128, QPT: 2 },
    },
    shapes: {
      // run 4 (f16 math by default)
      "1280x1024x11520": { BM: 128, BN: 64, TM: 8, TN: 4, splitK: 2 },
      "320x65536x2880": { BM: 64, BN: 128, TM: 4, TN: 8 },
      "65536x2560x320": { BM: 128, BN: 64, TM: 8, TN: 4 },
      "16384x5120x640": { BM: 128, BN: 64, TM: 8, TN: 4 },
      "4096x10240x1280": { BM: 128, BN: 64, TM: 8, TN: 4 },
      // run 3 (f16 math on or off per shape)
      "1280x4096x11520": { BM: 128, BN: 64, TM: 8, TN: 4, f16: true },
      "640x16384x5760": { BM: 128, BN: 64, TM: 8, TN: 4, f16: true },
      "512x16384x4608": { BM: 128, BN: 64, TM: 8, TN: 4, f16: false },
      // first run (f32 math)
      "1280x4096x23040": { BM: 128, BN: 64, TM: 8, TN: 4 },
    },
  },
  // Mesa llvmpipe (2 cores here): per-invocation overhead dominates, so 8x8 blocks run ~1.6x faster than 8x4
  // (measured); a few workgroups fill it.
  // Direct conv up to 2x2 outputs: tiny UNet call 19% faster (paired A/B, 20 calls; 4x4 and up: slower).
  // Split-K in two where 2 tiles half-fill it: the whole tiny UNet call within noise (batch 2, 4 paired A/B runs: 6 %
  // faster to 2 % slower) for a dispatch more per conv, so by score a split must more than double the fill here;
  // gpu-check measures each shape (its 4x4-level 3x3 convs at batch 2 gain ~10 % from two slices).
  // Register prefetch of the next K-tile: SD 1.5-shaped GEMM rows summed, prefetch vs not, 3 paired runs: 1.008,
  // 1.136, 1.036x the time (CPU "registers" are memory here; nothing to hide), so it stores first.
  // Flash attention: 1.8x the rows kernel at SD's D = 40 and D = 80 (4096 and 1024 tokens, f32 and f16). The rows
  // kernel (head dims below 13: the tiny models) with larger key tiles (fewer barriers): 64 keys 0.80-0.90x the time of
  // 16, 128 keys 0.85-0.92x the time of 32 (D = 4 and 8, 16-1024 tokens, paired in one process), and with two rows
  // per thread 0.50-0.61x the time of one (D = 4, 64 tokens; D = 8, 1024 tokens; at D = 40 0.58x, still slower than
  // flash).
  // Winograd F(2x2, 3x3) from 256 channels: SD 1.5's 3x3 convs at batch 2 take 0.34-0.40x the implicit GEMM's time at
  // 64/32/16 px (f32; f16 0.39-0.43x) and 0.86x at 8 px; at 32-128 channels (the tiny models) it is slower (1.2-4.7x:
  // 16 small GEMMs' workgroups cost more than they save here). f32 runs take F(4x4, 3x3) from 64 tiles a pass:
  // 0.51-0.59x F(2x2)'s time at 64 and 32 px and the VAE's 128 px (batch 2), 0.55-0.70x at 64 tiles (batch 4 at 16 px,
  // batch 16 at 8 px), but 1.04-1.32x at 32 and 2.2x at 8 (its 36 GEMMs too narrow); 1280-channel weights keep F(2x2)
  // (F(4x4)'s f32 u passes the 128 MiB binding).
  llvmpipe: {
    ...SOFTWARE,
    match: "llvmpipe",
    directConv: { maxPixels: 4 },
    winograd: { minChannels: 256, minPixels: 1, f4MinTiles: 64 },
  },
  // Other software/fallback adapters: like llvmpipe until measured (but for the direct conv, measured only there).
  cpu: { ...SOFTWARE, match: "" },
};

/** The table entry for an adapter, with the shapes measured on it (tiles file) first. */
export function tilesFor(adapterName: string, isFallback: boolean): AdapterTiles {
  let e = entries.get(adapterName);
  if (!e) {
    const base = staticEntry(adapterName, isFallback);
    const m = measuredEntries(adapterName);
    e = m ? withMeasured(base, m.shapes, m.attention) : base;
    entries.set(adapterName, e);
  }
  return e;
}

function staticEntry(adapterName: string, isFallback: boolean): AdapterTiles {
  const name = adapterName.toLowerCase();
  for (const [key, e] of Object.entries(TILE_TABLE)) {
    if (e.match && name.includes(e.match.toLowerCase())) return TILE_TABLE[key];
  }
  return isFallback ? TILE_TABLE.cpu : TILE_TABLE.default;
}

const entries = new Map<string, AdapterTiles>();

/** A tiles file: the winners gpu-check measured on one adapter, by GEMM shape "MxNxK". */
export interface MeasuredTiles {
  adapter: string;
  /** The precision they were measured in. */
  dtype: string;
  /** ISO time of the measurement. */
  measured: string;
  shapes: Record<string, GemmTile>;
  /** Attention tilings by head dim (pipeline/ops/attention.ts attentionTiling checks each before use). */
  attention?: Record<string, AttentionConfig>;
}

function withMeasured(
  base: AdapterTiles,
  shapes: Record<string, GemmTile>,
  attention: Record<number, AttentionConfig>,
): AdapterTiles {
  return {
    ...base,
    shapes: { ...base.shapes, ...shapes },
    attentionByD: { ...base.attentionByD, ...attention },
  };
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: no measured tiles
  }
}

/** Where tiles files live: $ZEROVID_TILES_DIR, else zerovid/tiles in the user's cache folder; null without one. */
export function tilesDir(): string | null {
  const own = env("ZEROVID_TILES_DIR");
  if (own) return own;
  const cache = env("XDG_CACHE_HOME") ?? (env("HOME") ? `${env("HOME")}/.cache` : undefined);
  return cache ? `${cache}/zerovid/tiles` : null;
}

/** The tiles file of an adapter (its name, made safe as a file name). */
export function tilesFile(adapterName: string, dir = tilesDir()): string | null {
  const slug = adapterName.toLowerCase().replace(/[^a-z0-9.]+/g, "-").replace(/^-+|-+$/g, "") || "adapter";
  return dir ? `${dir}/${slug}.json` : null;
}

/** Whether two tiles have the same block sizes (BM, BN, TM, TN), whatever their split of K. */
export function sameBlocks(a: GemmTile, b: GemmTile): boolean {
  return a.BM === b.BM && a.BN === b.BN && a.TM === b.TM && a.TN === b.TN;
}

/** Whether `t` is one of the kernels' candidate tiles, with one of their split-K factors or none (the only tiles a
 *  measured file may name). */
export function isCandidate(
  t: unknown,
  candidates: readonly GemmTile[],
  splits: readonly number[] = candidateSplits,
): t is GemmTile {
  const o = t as GemmTile | null;
  return !!o && candidates.some((c) => sameBlocks(c, o)) &&
    (o.splitK === undefined || splits.includes(o.splitK));
}

let candidateTiles: readonly GemmTile[] = [];
let candidateSplits: readonly number[] = [1];
let candidateUnrolls: readonly number[] = [1];

/** matmul.ts registers its candidate tiles, split-K factors and inner-loop unrollings here (tiles.ts cannot import
 *  them: matmul.ts imports this module). */
export function setCandidateTiles(
  tiles: readonly GemmTile[],
  splits: readonly number[],
  unrolls: readonly number[],
): void {
  candidateTiles = tiles;
  candidateSplits = splits;
  candidateUnrolls = unrolls;
}

/** The measured entries for an adapter from its tiles file; null when there is none (or it is unreadable). */
function measuredEntries(
  adapterName: string,
): { shapes: Record<string, GemmTile>; attention: Record<number, AttentionConfig> } | null {
  const path = tilesFile(adapterName);
  if (!path) return null;
  let parsed: MeasuredTiles;
  try {
    parsed = JSON.parse(Deno.readTextFileSync(path));
  } catch {
    return null; // no file (the usual case), no read permission, or not JSON: the table alone
  }
  if (parsed?.adapter !== adapterName || typeof parsed.shapes !== "object" || parsed.shapes === null) return null;
  const out: Record<string, GemmTile> = {};
  for (const [k, t] of Object.entries(parsed.shapes)) {
    if (!/^\d+x\d+x\d+(x\d+)?$/.test(k) || !isCandidate(t, candidateTiles)) continue;
    out[k] = {
      BM: t.BM,
      BN: t.BN,
      TM: t.TM,
      TN: t.TN,
      ...(t.splitK && t.splitK > 1 ? { splitK: t.splitK } : {}),
      ...(typeof t.f16 === "boolean" ? { f16: t.f16 } : {}),
      ...(candidateUnrolls.includes(t.unroll as number) ? { unroll: t.unroll } : {}),
      ...(typeof t.winograd === "boolean" ? { winograd: t.winograd } : {}),
    };
  }
  const attention: Record<number, AttentionConfig> = {};
  const byD = parsed.attention;
  if (typeof byD === "object" && byD !== null) {
    for (const [d, c] of Object.entries(byD)) {
      // Validity against the head dim is checked where it is used (attentionTiling); here only the key.
      if (/^\d+$/.test(d) && typeof c === "object" && c !== null) attention[Number(d)] = c;
    }
  }
  return { shapes: out, attention };
}

/** Puts measured shapes (and attention tilings by head dim) in force for an adapter in this process (gpu-check,
 *  after tuning). */
export function useMeasuredTiles(
  adapterName: string,
  isFallback: boolean,
  shapes: Record<string, GemmTile>,
  attention: Record<number, AttentionConfig> = {},
): void {
  entries.set(adapterName, withMeasured(staticEntry(adapterName, isFallback), shapes, attention));
}

/** Forgets what was read or put in force (a test that writes a tiles file, then reads it as a new run would). */
export function resetMeasuredTiles(): void {
  entries.clear();
}
