import {
  attention,
  attentionBudget,
  type AttentionConfig,
  attentionHooks,
  type AttentionInternal,
  type AttentionOperand,
  type AttentionOpts,
  type AttentionPrefs,
  attentionPrefs,
  attentionWith,
  flashConfig,
  rowsConfig,
  tiledConfig,
} from "../../pipeline/ops/attention.ts";
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { adapterTiles } from "../../pipeline/ops/matmul.ts";
import type { Tensor } from "../../pipeline/gpu/tensor.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import { type OpCase, type PerfCase, switched } from "./types.ts";

/** float64 reference: q [Bq, Nq, H*D], k/v [ceil(Bq/div), Nk, H*D]. */
function refAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  s: Shape,
): Float64Array {
  const { Bq, Nq, Nk, heads, D } = s;
  const div = s.opts.kvBatchDiv ?? 1, scale = s.opts.scale ?? 1 / Math.sqrt(D);
  const C = heads * D;
  const out = new Float64Array(Bq * Nq * C);
  const p = new Float64Array(Nk);
  for (let b = 0; b < Bq; b++) {
    const kb = Math.floor(b / div);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < Nq; i++) {
        const qo = (b * Nq + i) * C + h * D;
        const n = s.opts.causal ? Math.min(i + 1, Nk) : Nk;
        let m = -Infinity;
        for (let j = 0; j < n; j++) {
          const ko = (kb * Nk + j) * C + h * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          p[j] = dot * scale;
          m = Math.max(m, p[j]);
        }
        let sum = 0;
        for (let j = 0; j < n; j++) sum += p[j] = Math.exp(p[j] - m);
        for (let j = 0; j < n; j++) {
          const vo = (kb * Nk + j) * C + h * D, w = p[j] / sum;
          for (let d = 0; d < D; d++) out[qo + d] += w * v[vo + d];
        }
      }
    }
  }
  return out;
}

interface Shape {
  Bq: number;
  Nq: number;
  Nk: number;
  heads: number;
  D: number;
  opts: AttentionOpts;
  internal?: AttentionInternal;
  /** Write into a preallocated `out`. */
  useOut?: boolean;
  /** Read q/k/v as columns of one packed tensor: "qkv" (self-attention, one projection) or "kv" (q apart), `pad`
   *  columns before each (1 by default: odd offsets, scalar loads; 4: aligned, vec4 loads as in production). */
  packed?: "qkv" | "kv";
  pad?: number;
  /** Scalar loads and stores even where vec4 ones fit (attentionHooks.vec4 = false). */
  scalar?: boolean;
}

// Every Nq/Nk below (but the 1-token and batch-split cases) is a non-multiple of the query blocks (16/32/64/128) and key tiles
// (4-128 in the rows kernel, 4 * ceil(D / 4) in the flash one) of the tilings used. Without `internal` a case runs the
// adapter's production tiling (attentionPrefs): on llvmpipe the flash kernel where it fits from D = 13 (here 20, 40,
// 42, 64), else rows up to D = 160, else tiled; on GPUs rows up to D = 160.
const shapes: Shape[] = [
  { Bq: 3, Nq: 37, Nk: 77, heads: 2, D: 4, opts: {} },
  { Bq: 3, Nq: 100, Nk: 100, heads: 8, D: 8, opts: {} },
  { Bq: 2, Nq: 70, Nk: 77, heads: 8, D: 40, opts: {} },
  { Bq: 3, Nq: 150, Nk: 150, heads: 2, D: 40, opts: {} },
  { Bq: 3, Nq: 100, Nk: 100, heads: 2, D: 64, opts: { scale: 0.3 } },
  { Bq: 2, Nq: 45, Nk: 77, heads: 2, D: 80, opts: {} },
  { Bq: 3, Nq: 40, Nk: 50, heads: 2, D: 160, opts: {} },
  { Bq: 3, Nq: 37, Nk: 45, heads: 1, D: 512, opts: {} },
  // Head dims that are not multiples of 4 (padded vec4 columns).
  { Bq: 3, Nq: 37, Nk: 41, heads: 3, D: 6, opts: {} },
  { Bq: 2, Nq: 19, Nk: 33, heads: 4, D: 1, opts: {} },
  { Bq: 2, Nq: 1, Nk: 1, heads: 2, D: 8, opts: {}, useOut: true },
  // Causal (CLIP text encoder: 77 tokens, D = 64).
  { Bq: 3, Nq: 77, Nk: 77, heads: 2, D: 8, opts: { causal: true } },
  { Bq: 2, Nq: 77, Nk: 77, heads: 2, D: 64, opts: { causal: true } },
  { Bq: 2, Nq: 150, Nk: 150, heads: 2, D: 40, opts: { causal: true, scale: 0.5 } },
  // Cross-frame: frames of a group read their anchor's K/V (Bq not a multiple of kvBatchDiv in the first).
  { Bq: 5, Nq: 140, Nk: 140, heads: 2, D: 8, opts: { kvBatchDiv: 2 } },
  { Bq: 6, Nq: 100, Nk: 100, heads: 2, D: 40, opts: { kvBatchDiv: 3 } },
  { Bq: 4, Nq: 37, Nk: 77, heads: 2, D: 40, opts: { kvBatchDiv: 2 } },
  // Rows kernel at its smaller key tiles (8 and 4 keys: s0..s1, s0 only) and other workgroup sizes; the 16 KiB
  // tiling of D = 160 is the 8-key one.
  { Bq: 2, Nq: 45, Nk: 77, heads: 2, D: 80, opts: { causal: true }, internal: { cfg: rowsCfg(4, 5, 4, 128) } },
  { Bq: 3, Nq: 40, Nk: 50, heads: 2, D: 160, opts: { kvBatchDiv: 2 }, internal: { cfg: rowsConfig(160, 16384) } },
  { Bq: 2, Nq: 70, Nk: 77, heads: 2, D: 40, opts: { scale: 0.4 }, internal: { cfg: rowsCfg(1, 10, 8, 64) } },
  // Head dims that are not a multiple of 4 (partial last vec4), one and two threads per row.
  { Bq: 3, Nq: 37, Nk: 41, heads: 3, D: 6, opts: {} },
  { Bq: 2, Nq: 33, Nk: 50, heads: 2, D: 42, opts: { causal: true } },
  // Flash kernel (production where it fits from D = 13: D = 20, 40, 42, 64, 80 above) at its other query blocks and
  // column counts (CPT 1 and 2, odd column counts padded), below D = 13, causal, cross-frame, and the rows kernel at
  // head dims flash takes in production.
  { Bq: 3, Nq: 100, Nk: 100, heads: 2, D: 40, opts: { causal: true }, internal: { cfg: flashCfg(32, 40, 1) } },
  { Bq: 5, Nq: 70, Nk: 77, heads: 2, D: 64, opts: { kvBatchDiv: 2 }, internal: { cfg: flashCfg(16, 64, 1) } },
  { Bq: 3, Nq: 70, Nk: 77, heads: 2, D: 36, opts: { scale: 0.3 }, internal: { cfg: flashCfg(16, 36, 2) } },
  { Bq: 3, Nq: 37, Nk: 41, heads: 3, D: 6, opts: { scale: 0.7 }, internal: { cfg: flashCfg(64, 6, 1) } },
  { Bq: 2, Nq: 77, Nk: 77, heads: 2, D: 8, opts: { causal: true }, internal: { cfg: flashCfg(16, 8, 2) } },
  { Bq: 2, Nq: 70, Nk: 77, heads: 2, D: 40, opts: {}, internal: { cfg: rowsConfig(40) } },
  { Bq: 2, Nq: 45, Nk: 77, heads: 2, D: 80, opts: {}, internal: { cfg: rowsConfig(80) } },
  // ... and flash at the tilings GPUs would take (D = 40: BQ 64, one column; D = 80: BQ 32, two).
  { Bq: 2, Nq: 150, Nk: 150, heads: 2, D: 40, opts: {}, internal: { cfg: flashCfg(64, 40, 1) } },
  { Bq: 2, Nq: 45, Nk: 77, heads: 2, D: 80, opts: { kvBatchDiv: 2 }, internal: { cfg: flashCfg(32, 80, 2) } },
  // Rows kernel with workgroup-memory tiles of more keys than it scores at once (BT > BK): the last tile partly and
  // its last sub-tiles wholly past Nk, causal (sub-tiles past a block's last query skipped), two threads per row
  // (row sums between sub-tiles), BK < 16.
  { Bq: 2, Nq: 70, Nk: 150, heads: 2, D: 40, opts: {}, internal: { cfg: rowsConfig(40, 32768, 64) } },
  { Bq: 2, Nq: 150, Nk: 150, heads: 2, D: 40, opts: { causal: true }, internal: { cfg: rowsCfg(1, 10, 16, 64, 64) } },
  { Bq: 4, Nq: 45, Nk: 77, heads: 2, D: 80, opts: { kvBatchDiv: 2 }, internal: { cfg: rowsConfig(80, 32768, 32) } },
  { Bq: 2, Nq: 77, Nk: 77, heads: 2, D: 8, opts: { causal: true }, internal: { cfg: rowsCfg(1, 2, 8, 128, 32) } },
  { Bq: 2, Nq: 37, Nk: 150, heads: 2, D: 20, opts: {}, internal: { cfg: rowsCfg(2, 3, 4, 64, 128) } },
  // Two rows per thread (QPT = 2): row B of the last block partly past Nq, causal (row B sees more keys than row A
  // in the same tile), one to four threads per row (row sums of s0..s3 and of s0/s2), 4 and 8 keys at once, larger
  // tiles, cross-frame, odd head dims.
  { Bq: 2, Nq: 150, Nk: 150, heads: 2, D: 40, opts: {}, internal: { cfg: rowsConfig(40, 32768, 16, 2) } },
  { Bq: 2, Nq: 150, Nk: 150, heads: 2, D: 40, opts: { causal: true }, internal: { cfg: rowsConfig(40, 32768, 64, 2) } },
  { Bq: 4, Nq: 45, Nk: 77, heads: 2, D: 80, opts: { kvBatchDiv: 2 }, internal: { cfg: rowsConfig(80, 32768, 32, 2) } },
  { Bq: 3, Nq: 77, Nk: 77, heads: 2, D: 8, opts: { causal: true }, internal: { cfg: rowsCfg(1, 2, 4, 32, 4, 2) } },
  { Bq: 2, Nq: 70, Nk: 41, heads: 3, D: 20, opts: { scale: 0.3 }, internal: { cfg: rowsCfg(1, 5, 8, 64, 32, 2) } },
  { Bq: 2, Nq: 33, Nk: 50, heads: 2, D: 42, opts: {}, internal: { cfg: rowsCfg(4, 3, 4, 128, 16, 2) } },
  { Bq: 2, Nq: 1, Nk: 9, heads: 2, D: 6, opts: {}, internal: { cfg: rowsCfg(1, 2, 8, 32, 8, 2) } },
  // Tiled kernel (production: D > 160) at small head dims and 16 KiB tilings (head dim split into chunks).
  { Bq: 3, Nq: 100, Nk: 77, heads: 2, D: 40, opts: {}, internal: { cfg: tiledConfig(40) } },
  { Bq: 3, Nq: 37, Nk: 41, heads: 3, D: 6, opts: {}, internal: { cfg: tiledConfig(6) } },
  { Bq: 3, Nq: 70, Nk: 50, heads: 2, D: 64, opts: { scale: 0.3 }, internal: { cfg: tiledConfig(64, 16384) } },
  { Bq: 2, Nq: 77, Nk: 77, heads: 2, D: 80, opts: { causal: true }, internal: { cfg: tiledConfig(80) } },
  { Bq: 6, Nq: 40, Nk: 50, heads: 2, D: 160, opts: { kvBatchDiv: 3 }, internal: { cfg: tiledConfig(160) } },
  { Bq: 2, Nq: 37, Nk: 45, heads: 1, D: 512, opts: {}, internal: { cfg: tiledConfig(512, 16384) } },
  {
    Bq: 2,
    Nq: 45,
    Nk: 37,
    heads: 2,
    D: 80,
    opts: { causal: true },
    internal: { cfg: { kind: "tiled", BQ: 16, BK: 8, WG: 128, CS: 1, DV: 24, NCH: 1, TCO: 8 } },
  },
  // Q/K/V read in place from one packed projection (strided rows, column offsets), both kernels, split batches.
  { Bq: 2, Nq: 37, Nk: 37, heads: 2, D: 8, opts: {}, packed: "qkv" },
  { Bq: 3, Nq: 30, Nk: 30, heads: 3, D: 6, opts: {}, packed: "qkv", internal: { cfg: tiledConfig(6) } },
  { Bq: 4, Nq: 37, Nk: 77, heads: 2, D: 40, opts: { kvBatchDiv: 2 }, packed: "kv" },
  { Bq: 2, Nq: 37, Nk: 37, heads: 2, D: 20, opts: {}, packed: "qkv" },
  { Bq: 5, Nq: 16, Nk: 16, heads: 2, D: 8, opts: {}, packed: "qkv", internal: { maxBinding: 2 * 16 * 60 * 4 } },
  // ... at column offsets that are multiples of 4 (vec4 loads from strided rows, as SD's packed projections), and
  // aligned shapes on scalar loads (attention_load.wgsl stays checked where production takes the vec4 file).
  { Bq: 2, Nq: 70, Nk: 70, heads: 2, D: 40, opts: {}, packed: "qkv", pad: 4 },
  { Bq: 4, Nq: 37, Nk: 77, heads: 2, D: 80, opts: { kvBatchDiv: 2 }, packed: "kv", pad: 4 },
  { Bq: 2, Nq: 45, Nk: 45, heads: 2, D: 40, opts: {}, packed: "qkv", pad: 4, internal: { cfg: flashCfg(32, 40, 2) } },
  { Bq: 3, Nq: 30, Nk: 30, heads: 3, D: 8, opts: {}, packed: "qkv", pad: 4, internal: { cfg: tiledConfig(8) } },
  { Bq: 2, Nq: 70, Nk: 77, heads: 2, D: 40, opts: {}, scalar: true, internal: { cfg: rowsConfig(40) } },
  { Bq: 2, Nq: 70, Nk: 77, heads: 2, D: 40, opts: {}, scalar: true, internal: { cfg: flashCfg(32, 40, 1) } },
  { Bq: 2, Nq: 45, Nk: 77, heads: 2, D: 80, opts: { causal: true }, scalar: true, internal: { cfg: tiledConfig(80) } },
  // Batch split at a small binding limit: 2 q batches per dispatch (within one kvBatchDiv group), then whole groups.
  { Bq: 7, Nq: 16, Nk: 16, heads: 2, D: 8, opts: { kvBatchDiv: 3 }, internal: { maxBinding: 2 * 16 * 16 * 4 } },
  { Bq: 7, Nq: 16, Nk: 16, heads: 2, D: 8, opts: { kvBatchDiv: 2 }, internal: { maxBinding: 4 * 16 * 16 * 4 } },
];

function flashCfg(BQ: number, D: number, CPT = 1): AttentionConfig {
  return { kind: "flash", BQ, D4: Math.ceil(D / 4), CPT };
}

function rowsCfg(TPR: number, DV: number, BK: number, WG: number, BT = BK, QPT = 1): AttentionConfig {
  return { kind: "rows", TPR, DV, BK, BT, WG, QPT };
}

function cfgText(c: AttentionConfig): string {
  if (c.kind === "flash") return `flash BQ=${c.BQ} CPT=${c.CPT}`;
  if (c.kind === "rows") {
    return `rows TPR=${c.TPR} BK=${c.BK}${c.BT > c.BK ? ` BT=${c.BT}` : ""} WG=${c.WG}${
      c.QPT > 1 ? ` QPT=${c.QPT}` : ""
    }`;
  }
  return `tiled BQ=${c.BQ} BK=${c.BK} NCH=${c.NCH}`;
}

function describe(s: Shape): string {
  const o = s.opts, i = s.internal;
  const extra = [
    o.causal ? "causal" : "",
    o.kvBatchDiv ? `kvBatchDiv=${o.kvBatchDiv}` : "",
    o.scale !== undefined ? `scale=${o.scale}` : "",
    i?.cfg ? cfgText(i.cfg) : "",
    i?.maxBinding ? `maxBinding=${i.maxBinding}` : "",
    s.useOut ? "out" : "",
    s.packed ? `packed=${s.packed}${s.pad ? ` pad=${s.pad}` : ""}` : "",
    s.scalar ? "scalar loads" : "",
  ].filter((x) => x).join(" ");
  return `B=${s.Bq} Nq=${s.Nq} Nk=${s.Nk} heads=${s.heads} D=${s.D}${extra ? " " + extra : ""}`;
}

function tolFor(dtype: DType) {
  // f16: output and reference are both rounded to f16, so an element is off by 0 or 1 ulp (|o| < 8: <= 4e-3), and
  // relL2 stays under 2^-11 even if every element were.
  return dtype === "f32" ? { maxAbs: 1e-5, relL2: 1e-5 } : { maxAbs: 4e-3, relL2: 5e-4 };
}

export const cases: OpCase[] = [];
for (const dtype of DTYPES) {
  shapes.forEach((s, n) => {
    cases.push({
      op: "attention",
      shape: describe(s),
      dtype,
      tol: tolFor(dtype),
      async run(dev) {
        const C = s.heads * s.D, Bk = Math.ceil(s.Bq / (s.opts.kvBatchDiv ?? 1));
        const q = quantize(randn(s.Bq * s.Nq * C, 100 + n), dtype);
        const k = quantize(randn(Bk * s.Nk * C, 200 + n), dtype);
        const v = quantize(randn(Bk * s.Nk * C, 300 + n), dtype);
        let tq: AttentionOperand, tk: AttentionOperand, tv: AttentionOperand;
        const owned: Tensor[] = [];
        if (s.packed) {
          // Columns: [pad, (q, pad,) k, pad, v, pad] per row.
          const parts = s.packed === "qkv" ? [q, k, v] : [k, v], pad = s.pad ?? 1;
          const W = parts.length * (C + pad) + pad, rows = Bk * s.Nk;
          const data = new Float32Array(rows * W);
          parts.forEach((src, i) => {
            for (let r = 0; r < rows; r++) data.set(src.subarray(r * C, r * C + C), r * W + pad + i * (C + pad));
          });
          const t = up(dev, data, [Bk, s.Nk, W], dtype);
          owned.push(t);
          const col = (i: number) => ({ t, col: pad + i * (C + pad), width: C });
          if (s.packed === "qkv") [tq, tk, tv] = [col(0), col(1), col(2)];
          else {
            tq = up(dev, q, [s.Bq, s.Nq, C], dtype);
            owned.push(tq);
            [tk, tv] = [col(0), col(1)];
          }
        } else {
          tq = up(dev, q, [s.Bq, s.Nq, C], dtype);
          tk = up(dev, k, [Bk, s.Nk, C], dtype), tv = up(dev, v, [Bk, s.Nk, C], dtype);
          owned.push(tq, tk, tv);
        }
        const out = s.useOut ? up(dev, randn(s.Bq * s.Nq * C, 400 + n), [s.Bq, s.Nq, C], dtype) : undefined;
        const opts = { ...s.opts, out };
        const before = dev.dispatches;
        if (s.scalar) attentionHooks.vec4 = false;
        let y: Tensor;
        try {
          y = s.internal ? attentionWith(tq, tk, tv, s.heads, opts, s.internal) : attention(tq, tk, tv, s.heads, opts);
        } finally {
          attentionHooks.vec4 = null;
        }
        if (out && y !== out) throw new Error("attention ignored opts.out");
        if (s.packed && s.internal?.maxBinding && dev.dispatches - before < 2) {
          throw new Error("the forced split did not happen");
        }
        const got = await y.read();
        for (const t of owned) t.release();
        y.release();
        return { got, want: quantize(Float32Array.from(refAttention(q, k, v, s)), dtype) };
      },
    });
  });
}

/** Uploads random q/k/v for one perf shape and returns the recorded call. */
function perfSetup(
  dev: Device,
  dtype: DType,
  [Bq, Nq, Nk, heads, D]: number[],
  opts: AttentionOpts = {},
  cfg?: AttentionConfig | ((dev: Device) => AttentionConfig),
): () => void {
  const C = heads * D, Bk = Math.ceil(Bq / (opts.kvBatchDiv ?? 1));
  const q = up(dev, randn(Bq * Nq * C, 1), [Bq, Nq, C], dtype);
  const k = up(dev, randn(Bk * Nk * C, 2), [Bk, Nk, C], dtype);
  const v = up(dev, randn(Bk * Nk * C, 3), [Bk, Nk, C], dtype);
  const out = up(dev, randn(Bq * Nq * C, 4), [Bq, Nq, C], dtype);
  const tiling = typeof cfg === "function" ? cfg(dev) : cfg;
  return () => attentionWith(q, k, v, heads, { ...opts, out }, { cfg: tiling });
}

/** A tiling chosen on the adapter that runs the perf case (its workgroup-memory budget and tile-table preferences). */
function onAdapter(pick: (budget: number, prefs: AttentionPrefs) => AttentionConfig): (dev: Device) => AttentionConfig {
  return (dev) => pick(attentionBudget(dev), attentionPrefs(adapterTiles(dev)));
}

/** The flash kernel as this adapter would tile it (null-safe: SD's head dims all fit). */
const flashOn = (D: number) => onAdapter((budget, prefs) => flashConfig(D, budget, prefs.lanes)!);
/** The rows kernel with workgroup-memory tiles of `keys` keys. */
const rowsOn = (D: number, keys: number, QPT = 1) => onAdapter((budget) => rowsConfig(D, budget, keys, QPT));

/** `cfg`: another tiling than production's, named in the shape by `label` (gpu-check's kernels section times both). */
function perfCase(
  op: string,
  dims: number[],
  opts: AttentionOpts = {},
  cfg?: AttentionConfig | ((dev: Device) => AttentionConfig),
  label = typeof cfg === "object" ? cfg.kind + " kernel" : "",
): PerfCase {
  const [Bq, Nq, Nk, heads, D] = dims;
  const Bk = Math.ceil(Bq / (opts.kvBatchDiv ?? 1));
  return {
    op,
    shape: `B=${Bq} Nq=${Nq} Nk=${Nk} heads=${heads} D=${D}${opts.kvBatchDiv ? ` kvBatchDiv=${opts.kvBatchDiv}` : ""}${
      cfg ? ` ${label}` : ""
    }`,
    flops: 4 * Bq * heads * Nq * Nk * D,
    // f32 bytes of the minimum traffic (q, k, v read once, o written once).
    bytes: 4 * heads * D * (2 * Bq * Nq + 2 * Bk * Nk),
    setup: (dev, dtype) => perfSetup(dev, dtype, dims, opts, cfg),
  };
}

/** `c` on scalar loads and stores (shaders/attention_load.wgsl) where production takes vec4 ones: timed beside it. */
function scalarLoads(c: PerfCase): PerfCase {
  return switched(c, "scalar loads", () => attentionHooks.vec4 = false, () => attentionHooks.vec4 = null);
}

export const perf: PerfCase[] = [
  // SD 1.5 at 512x512, CFG batch 2: 64x64 latent self-attention (production, then each kernel by name: which one an
  // adapter should take, tile-table `attention` / `rowsTileKeys`), text cross-attention, VAE mid-block.
  perfCase("attention.self", [2, 4096, 4096, 8, 40]),
  scalarLoads(perfCase("attention.self", [2, 4096, 4096, 8, 40])),
  perfCase("attention.self", [2, 4096, 4096, 8, 40], {}, flashOn(40), "flash kernel"),
  perfCase("attention.self", [2, 4096, 4096, 8, 40], {}, rowsOn(40, 16), "rows kernel"),
  perfCase("attention.self", [2, 4096, 4096, 8, 40], {}, rowsOn(40, 64), "rows kernel, tiles of up to 64 keys"),
  perfCase("attention.self", [2, 4096, 4096, 8, 40], {}, rowsOn(40, 16, 2), "rows kernel, two rows per thread"),
  perfCase("attention.cross", [2, 4096, 77, 8, 40]),
  // Text-to-video at 8 frames: each frame's queries against its anchor frame's keys (cross-frame attention).
  perfCase("attention.self", [16, 4096, 4096, 8, 40], { kvBatchDiv: 8 }),
  scalarLoads(perfCase("attention.self", [16, 4096, 4096, 8, 40], { kvBatchDiv: 8 })),
  // The 32x32 level (D = 80).
  perfCase("attention.self", [2, 1024, 1024, 8, 80]),
  scalarLoads(perfCase("attention.self", [2, 1024, 1024, 8, 80])),
  perfCase("attention.self", [2, 1024, 1024, 8, 80], {}, flashOn(80), "flash kernel"),
  perfCase("attention.self", [2, 1024, 1024, 8, 80], {}, rowsOn(80, 16), "rows kernel"),
  perfCase("attention.self", [2, 1024, 1024, 8, 80], {}, rowsOn(80, 64), "rows kernel, tiles of up to 64 keys"),
  perfCase("attention.self", [2, 1024, 1024, 8, 80], {}, rowsOn(80, 16, 2), "rows kernel, two rows per thread"),
  perfCase("attention.vae", [1, 4096, 4096, 1, 512]),
];
