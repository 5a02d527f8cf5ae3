import { adapterTiles, BK, gemmHooks, type GemmTile, linear, TILES, UNROLLS } from "../../pipeline/ops/matmul.ts";
import type { DType } from "../../pipeline/gpu/device.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import { type OpCase, type PerfCase, switched } from "./types.ts";
import { gelu, silu } from "../ref.ts";

// Inputs scaled like real layers (w ~ 1/sqrt(K)) keep |y| ~ 1, so absolute tolerances mean the same everywhere.
// f16: output rounding alone is up to 2^-11 relative.
export function gemmTol(dtype: DType) {
  return dtype === "f32" ? { maxAbs: 2e-5, relL2: 1e-5 } : { maxAbs: 1e-2, relL2: 1e-3 };
}

/** float64 y = x @ w^T + bias + res over dtype-rounded inputs. */
export function linearRef(
  x: Float32Array,
  w: Float32Array,
  M: number,
  N: number,
  K: number,
  bias?: Float32Array,
  res?: Float32Array,
): Float32Array {
  const y = new Float32Array(M * N);
  const w64 = Float64Array.from(w);
  for (let m = 0; m < M; m++) {
    const xr = Float64Array.from(x.subarray(m * K, m * K + K));
    for (let n = 0; n < N; n++) {
      let s = 0;
      const o = n * K;
      for (let k = 0; k < K; k++) s += xr[k] * w64[o + k];
      if (bias) s += bias[n];
      if (res) s += res[m * N + n];
      y[m * N + n] = s;
    }
  }
  return y;
}

/** float64 LayerNorm over rows of C (two-pass), as float32. */
function layerNormRef(x: Float32Array, C: number, g: Float32Array, b: Float32Array, eps: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += C) {
    let s = 0;
    for (let i = 0; i < C; i++) s += x[o + i];
    const mean = s / C;
    let q = 0;
    for (let i = 0; i < C; i++) q += (x[o + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / C + eps);
    for (let i = 0; i < C; i++) y[o + i] = (x[o + i] - mean) * rstd * g[i] + b[i];
  }
  return y;
}

/** diffusers GEGLU over [M, 2D] rows: h * gelu(gate), h = first half, gate = second. */
function gegluRef(x: Float32Array, M: number, D: number): Float32Array {
  const y = new Float32Array(M * D);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < D; j++) y[m * D + j] = x[m * 2 * D + j] * gelu(x[m * 2 * D + D + j]);
  }
  return y;
}

interface LinearShape {
  lead: number[];
  N: number;
  K: number;
  bias: boolean;
  res: boolean;
  tile?: GemmTile;
  maxBinding?: number;
  /** Forced workgroups-per-dimension limit (folded grid). */
  maxGroups?: number;
  /** residual passed as `out` too (y += x @ w^T in place). */
  inPlace?: boolean;
  /** SiLU after bias and residual. */
  silu?: boolean;
  /** LayerNorm prologue; x gets this mean offset (a large one exposes cancellation in the variance). */
  ln?: { offset: number };
  /** GEGLU epilogue: y = h * gelu(gate) over the two halves of the outputs. */
  geglu?: boolean;
  /** w and bias are views starting this many rows into larger tensors (rows of a stacked projection). */
  wRow0?: number;
}

function linearCase(s: LinearShape, dtype: DType): OpCase {
  const M = s.lead.reduce((a, b) => a * b, 1);
  const extras = [
    s.bias && "bias",
    s.res && (s.inPlace ? "res=out" : "res"),
    s.tile && `tile=${s.tile.BM}x${s.tile.BN}${s.tile.unroll ? ` unroll=${s.tile.unroll}` : ""}`,
    s.silu && "silu",
    s.ln && `layerNorm${s.ln.offset ? ` mean=${s.ln.offset}` : ""}`,
    s.geglu && "geglu",
    s.wRow0 && `w=rows ${s.wRow0}..`,
  ].filter(Boolean);
  const split = [s.maxBinding && `split@${s.maxBinding}B`, s.maxGroups && `grid<=${s.maxGroups}`].filter(Boolean);
  return {
    op: "linear",
    shape: `x=[${s.lead},${s.K}] w=[${s.N},${s.K}] ${[...extras, ...split].join(" ")}`.trim(),
    dtype,
    tol: gemmTol(dtype),
    async run(dev) {
      const seed = M * 7 + s.N * 13 + s.K;
      const x = quantize(randn(M * s.K, seed).map((v) => v + (s.ln?.offset ?? 0)), dtype);
      const g = quantize(randn(s.K, seed + 5, 0.3).map((v) => 1 + v), dtype),
        be = quantize(randn(s.K, seed + 6), dtype);
      const tg = up(dev, g, [s.K], dtype), tbe = up(dev, be, [s.K], dtype);
      const w = quantize(randn(s.N * s.K, seed + 1, 1 / Math.sqrt(s.K)), dtype);
      const b = s.bias ? quantize(randn(s.N, seed + 2, 0.5), dtype) : undefined;
      const r = s.res ? quantize(randn(M * s.N, seed + 3), dtype) : undefined;
      const r0 = s.wRow0 ?? 0;
      const wAll = new Float32Array((r0 + s.N + 2) * s.K), bAll = new Float32Array(r0 + s.N + 2);
      wAll.set(w, r0 * s.K);
      if (b) bAll.set(b, r0);
      const tx = up(dev, x, [...s.lead, s.K], dtype);
      const twAll = up(dev, wAll, [r0 + s.N + 2, s.K], dtype), tbAll = up(dev, bAll, [r0 + s.N + 2], dtype);
      const tw = twAll.view([s.N, s.K], r0 * s.K);
      const tb = b && tbAll.view([s.N], r0);
      const tr = r && up(dev, r, [...s.lead, s.N], dtype);
      gemmHooks.tile = s.tile ?? null;
      gemmHooks.maxBinding = s.maxBinding ?? 0;
      gemmHooks.maxGroups = s.maxGroups ?? 0;
      const before = dev.dispatches;
      let y;
      try {
        y = linear(tx, tw, tb, {
          residual: tr,
          out: s.inPlace ? tr : undefined,
          silu: s.silu,
          geglu: s.geglu,
          layerNorm: s.ln && { gamma: tg, beta: tbe, eps: 1e-5 },
        });
      } finally {
        gemmHooks.tile = null;
        gemmHooks.maxBinding = 0;
        gemmHooks.maxGroups = 0;
      }
      if (s.maxBinding && dev.dispatches - before < 2) throw new Error("the forced split did not happen");
      const got = await y.read();
      for (const t of new Set([tx, twAll, tbAll, tr, tg, tbe, y])) t?.release();
      // The fused LayerNorm keeps its output in f32 (it never becomes a tensor).
      let want = linearRef(s.ln ? layerNormRef(x, s.K, g, be, 1e-5) : x, w, M, s.N, s.K, b, r);
      if (s.silu) want.forEach((v, i) => want[i] = silu(v));
      if (s.geglu) want = gegluRef(want, M, s.N / 2);
      return { got, want: quantize(want, dtype) };
    },
  };
}

const shapes: LinearShape[] = [
  { lead: [1], N: 1, K: 1, bias: false, res: false },
  { lead: [3, 5], N: 7, K: 17, bias: true, res: false }, // K % 4 != 0: scalar loads
  { lead: [2, 77], N: 96, K: 64, bias: true, res: true }, // text tokens
  { lead: [130], N: 70, K: 200, bias: false, res: false }, // K not a multiple of BK
  { lead: [3, 67], N: 129, K: 333, bias: true, res: true },
  { lead: [2, 300], N: 320, K: 320, bias: true, res: false },
  { lead: [4, 9], N: 3, K: 1280, bias: false, res: true }, // long K, tiny N
  { lead: [2, 33], N: 40, K: 24, bias: true, res: true, inPlace: true },
  { lead: [2], N: 130, K: 32, bias: true, res: false, silu: true }, // time embedding: silu(linear(x))
  // LayerNorm in the prologue (BasicTransformerBlock): ragged K (scalar), vec4 K with a large mean, + residual,
  // + GEGLU, every tile.
  { lead: [3, 13], N: 21, K: 37, bias: true, res: false, ln: { offset: 0 } },
  { lead: [2, 77], N: 96, K: 64, bias: false, res: true, ln: { offset: 50 } },
  { lead: [2, 40], N: 2 * 24, K: 48, bias: true, res: false, ln: { offset: 3 }, geglu: true },
  // Feed-forward GEGLU in the epilogue: 2D outputs -> D (odd D, scalar K; vec4 K).
  { lead: [3, 11], N: 2 * 13, K: 19, bias: true, res: false, geglu: true },
  { lead: [2, 64], N: 2 * 128, K: 32, bias: true, res: false, geglu: true },
  { lead: [2, 9], N: 40, K: 20, bias: true, res: false, wRow0: 20 }, // K/V rows of a stacked Q/K/V weight
  { lead: [7], N: 6, K: 7, bias: true, res: true, wRow0: 3 }, // odd element offset: scalar weight loads
  { lead: [3, 7], N: 21, K: 9, bias: true, res: true, silu: true },
  // Folded grid: 5 x 4 tiles of 32x64 on a 7 x 3 grid.
  { lead: [150], N: 200, K: 20, bias: true, res: false, tile: { BM: 32, BN: 64, TM: 4, TN: 4 }, maxGroups: 7 },
  // Split into several dispatches by rows (binding limit forced down; chunks start 256-byte aligned).
  { lead: [37], N: 32, K: 64, bias: true, res: true, maxBinding: 2048 },
  { lead: [5, 11], N: 64, K: 128, bias: false, res: true, maxBinding: 1024 },
];
// Every unrolling of the inner loop on the 8x8 block (every accumulator; K over three K-tiles, the last partial).
for (const unroll of UNROLLS.filter((u) => u > 1)) {
  shapes.push({ lead: [70], N: 72, K: 44, bias: true, res: true, tile: { BM: 64, BN: 64, TM: 8, TN: 8, unroll } });
}
// Every tile variant on ragged shapes, alternating vec4 and scalar K loads (few variants: compiling dominates).
for (const [i, tile] of TILES.entries()) {
  shapes.push({ lead: [70], N: 36, K: 44, bias: true, res: false, ln: { offset: 1 }, tile });
  shapes.push(
    i % 2
      ? { lead: [2, 45], N: 139, K: 52, bias: true, res: true, tile }
      : { lead: [149], N: 37, K: 35, bias: true, res: true, tile },
  );
}

/** The GEMM core's diagnostic PROBE (shaders/gemm.wgsl), which the perf rows "inner loop ..." time. 1 and 2 multiply
 *  the first K-tile again at every step: y = steps x P + bias, P = x[:, :BK] @ w[:, :BK]^T. 3 does so with every
 *  thread reading thread (0, 0)'s vec4s: output row m0 + i of a tile holds P's row m0 + src(i, MT), src(i, T) =
 *  floor(i / 4T) * 4T + i % 4 (columns likewise with NT). 4 repeats each K-tile's first step: y = steps x BK x
 *  x[:, 0] w[:, 0]^T + bias, on multiples of 1/8 so that every sum is exact even in f16. Checked so that those
 *  timings are of the computation they claim (every product, every step). */
function probeCase(probe: 1 | 2 | 3 | 4, dtype: DType, tile: GemmTile = { BM: 32, BN: 64, TM: 4, TN: 4 }): OpCase {
  const [M, N, K] = [70, 36, 44];
  const eighths = (a: Float32Array) => a.map((v) => Math.max(-4, Math.min(4, Math.round(2 * v))) / 8);
  return {
    op: "linear",
    shape: `x=[${M},${K}] w=[${N},${K}] bias tile=${tile.BM}x${tile.BN}/${tile.TM}x${tile.TN} probe=${probe}`,
    dtype,
    tol: gemmTol(dtype),
    async run(dev) {
      let x = quantize(randn(M * K, 91), dtype), w = quantize(randn(N * K, 92, 1 / Math.sqrt(BK)), dtype);
      if (probe === 4) x = eighths(x), w = eighths(w);
      const b = quantize(randn(N, 93, 0.5), dtype);
      const [tx, tw, tb] = [up(dev, x, [M, K], dtype), up(dev, w, [N, K], dtype), up(dev, b, [N], dtype)];
      gemmHooks.tile = tile;
      gemmHooks.probe = probe;
      let y;
      try {
        y = linear(tx, tw, tb);
      } finally {
        gemmHooks.tile = null;
        gemmHooks.probe = null;
      }
      const got = await y.read();
      for (const t of [tx, tw, tb, y]) t.release();
      const steps = Math.ceil(K / BK);
      if (probe === 4) {
        const want = Float32Array.from({ length: M * N }, (_, i) => {
          const [m, n] = [Math.floor(i / N), i % N];
          return steps * BK * x[m * K] * w[n * K] + b[n];
        });
        return { got, want: quantize(want, dtype) };
      }
      const first = (a: Float32Array, rows: number) =>
        Float32Array.from({ length: rows * BK }, (_, i) => a[Math.floor(i / BK) * K + (i % BK)]);
      const P = linearRef(first(x, M), first(w, N), M, N, BK);
      const src = (i: number, B: number, T: number) => {
        if (probe !== 3) return i;
        const [t0, l] = [Math.floor(i / B) * B, i % B];
        return t0 + Math.floor(l / (4 * T)) * 4 * T + (l % 4);
      };
      const [MT, NT] = [tile.BM / tile.TM, tile.BN / tile.TN];
      const want = Float32Array.from({ length: M * N }, (_, i) => {
        const [m, n] = [Math.floor(i / N), i % N];
        return steps * P[src(m, tile.BM, MT) * N + src(n, tile.BN, NT)] + b[n];
      });
      return { got, want: quantize(want, dtype) };
    },
  };
}

export const cases: OpCase[] = [];
for (const dtype of DTYPES) for (const s of shapes) cases.push(linearCase(s, dtype));
const block8 = { BM: 64, BN: 64, TM: 8, TN: 8 };
for (const dtype of DTYPES) {
  cases.push(probeCase(1, dtype), probeCase(2, dtype), probeCase(3, dtype), probeCase(3, dtype, block8));
  cases.push(probeCase(4, dtype), probeCase(4, dtype, block8));
}

/**
 * The GEMM core's two f16 maths (shaders/gemm.wgsl): each f16 case pinned to f32 math at its own tolerance, and a
 * twin with F16MATH. There each K-tile's BK = 16 products sum in f16 before the f32 accumulation; for random data
 * that adds about 1.7 u (u = 2^-11) relative error to the ~0.6 u of f32 accumulation and f16 output rounding, so
 * the twin gets three times the case's tolerance. The f32-math f16 cases also run the K-tile staging the other way
 * round from the adapter's default (PREFETCH), so both orders are checked on every adapter.
 */
export function withF16Math(list: OpCase[]): OpCase[] {
  const pinned = (c: OpCase, on: boolean): OpCase => ({
    ...c,
    shape: on ? `${c.shape} f16math` : c.shape,
    tol: on ? Object.fromEntries(Object.entries(c.tol).map(([k, v]) => [k, 3 * v])) : c.tol,
    async run(dev) {
      gemmHooks.f16Math = on;
      if (!on) gemmHooks.prefetch = !(adapterTiles(dev).prefetch ?? true);
      try {
        const r = await c.run(dev);
        if (on && !dev.kernelKeys().some((k) => k.includes(`"F16MATH":true`))) {
          throw new Error("no GEMM kernel with F16MATH was compiled");
        }
        return r;
      } finally {
        gemmHooks.f16Math = null;
        gemmHooks.prefetch = null;
      }
    },
  });
  return list.flatMap((c) => c.dtype === "f16" ? [pinned(c, false), pinned(c, true)] : [c]);
}

function linearPerf(M: number, N: number, K: number): PerfCase {
  return {
    op: "linear",
    shape: `M=${M} N=${N} K=${K}`,
    flops: 2 * M * N * K,
    bytes: (M * K + N * K + M * N) * 4,
    setup(dev, dtype) {
      const x = up(dev, randn(M * K, 1), [M, K], dtype);
      const w = up(dev, randn(N * K, 2, 1 / Math.sqrt(K)), [N, K], dtype);
      const b = up(dev, randn(N, 3), [N], dtype);
      const y = up(dev, randn(M * N, 4), [M, N], dtype);
      return () => linear(x, w, b, { out: y });
    },
  };
}

/** The GEMM core's switches a perf case can force (shaders/gemm.wgsl), as the gemmHooks each sets: F16MATH (f16 only),
 *  PREFETCH off, the inner loop unrolled (UNROLL: 4 steps or the whole K-tile), Winograd (the adapter's tile, or in
 *  f32 each tile: f16 runs only take F(2x2, 3x3)) or the implicit GEMM on a 3x3 conv, and the diagnostic PROBE (wrong
 *  results, time only): 1 / 2 the inner product alone, with and without its barriers (1 also with the whole K-tile
 *  unrolled), 3 its shared-memory reads broadcast, 4 without them (also unrolled), so the rows split the inner
 *  product's time into bank traffic, read instructions, and the FMAs with their loop. A probe row pins a conv to the
 *  implicit GEMM: its probe is the yardstick of runs 3-4. */
const variants = {
  "f16math": { f16Math: true },
  "no prefetch": { prefetch: false },
  "unrolled x4": { unroll: 4 },
  "unrolled x16": { unroll: 16 },
  "winograd": { winograd: true },
  "winograd F(2x2)": { winograd: true, winogradTile: 2 },
  "winograd F(4x4)": { winograd: true, winogradTile: 4 },
  "implicit GEMM": { winograd: false },
  "inner loop only": { probe: 1, winograd: false },
  "inner loop only, unrolled x16": { probe: 1, unroll: 16, winograd: false },
  "inner loop, no barriers": { probe: 2, winograd: false },
  "inner loop, broadcast reads": { probe: 3, winograd: false },
  "inner loop, no shared reads": { probe: 4, winograd: false },
  "inner loop, no shared reads, unrolled x16": { probe: 4, unroll: 16, winograd: false },
} satisfies Record<string, Partial<typeof gemmHooks>>;
export type GemmVariant = keyof typeof variants;
/** Variants that differ from the default in one dtype only. */
const only: Partial<Record<GemmVariant, DType[]>> = {
  "f16math": ["f16"],
  "winograd F(2x2)": ["f32"],
  "winograd F(4x4)": ["f32"],
};

/** A GEMM perf case again with one of the GEMM core's switches forced, so that one bench or gpu-check run times each
 *  beside the default. */
export function gemmVariant(c: PerfCase, v: GemmVariant): PerfCase {
  const set: Partial<typeof gemmHooks> = variants[v];
  const on = () => Object.assign(gemmHooks, set);
  const off = () => Object.assign(gemmHooks, Object.fromEntries(Object.keys(set).map((k) => [k, null])));
  return switched(c, v, on, off, only[v] ?? c.dtypes);
}

/** The diagnostic rows of a GEMM perf case (shaders/gemm.wgsl PROBE), beside its default and unrolled rows. */
export function probeRows(c: PerfCase): PerfCase[] {
  return (Object.keys(variants) as GemmVariant[]).filter((v) => "probe" in variants[v]).map((v) => gemmVariant(c, v));
}

// SD 1.5 at 512x512 (64x64 latent), batch 2 (CFG): attention projections, GEGLU/FF, cross-attn K/V from CLIP.
const ffUp = linearPerf(2 * 4096, 2560, 320), ffDown = linearPerf(2 * 4096, 320, 1280);
export const perf: PerfCase[] = [
  linearPerf(2 * 4096, 320, 320),
  ffUp,
  gemmVariant(ffUp, "f16math"),
  gemmVariant(ffUp, "no prefetch"),
  gemmVariant(ffUp, "unrolled x4"),
  gemmVariant(ffUp, "unrolled x16"),
  ...probeRows(ffUp),
  ffDown,
  gemmVariant(ffDown, "f16math"),
  linearPerf(2 * 1024, 640, 640),
  linearPerf(2 * 77, 320, 768),
  linearPerf(2 * 77, 1280, 768),
];

/** [B, C, S] <-> [B, S, C] on the host. */
function transposeBS(x: Float32Array, B: number, A: number, C: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let a = 0; a < A; a++) for (let c = 0; c < C; c++) y[(b * C + c) * A + a] = x[(b * A + a) * C + c];
  }
  return y;
}

interface LayoutShape {
  B: number;
  spatial: number[];
  N: number;
  K: number;
  xcf: boolean;
  ycf: boolean;
  res: boolean;
  maxBinding?: number;
}

// Transformer2DModel's proj_in / proj_out reading and writing feature maps directly (no transposes).
function layoutCase(s: LayoutShape, dtype: DType): OpCase {
  const S = s.spatial.reduce((a, b) => a * b, 1), M = s.B * S;
  const layout = `${s.xcf ? "x=NCHW" : "x=tokens"} ${s.ycf ? "y=NCHW" : "y=tokens"}`;
  return {
    op: "linear",
    shape: `B=${s.B} S=[${s.spatial}] N=${s.N} K=${s.K} ${layout}${s.res ? " res" : ""}${
      s.maxBinding ? ` split@${s.maxBinding}B` : ""
    }`,
    dtype,
    tol: gemmTol(dtype),
    async run(dev) {
      const seed = M * 5 + s.N * 3 + s.K + (s.xcf ? 1 : 0) + (s.ycf ? 2 : 0);
      const xTok = quantize(randn(M * s.K, seed), dtype); // [B, S, K]
      const w = quantize(randn(s.N * s.K, seed + 1, 1 / Math.sqrt(s.K)), dtype);
      const b = quantize(randn(s.N, seed + 2, 0.5), dtype);
      const rTok = s.res ? quantize(randn(M * s.N, seed + 3), dtype) : undefined; // [B, S, N]
      const xData = s.xcf ? transposeBS(xTok, s.B, S, s.K) : xTok;
      const tx = up(dev, xData, s.xcf ? [s.B, s.K, ...s.spatial] : [s.B, S, s.K], dtype);
      const tw = up(dev, w, [s.N, s.K], dtype), tb = up(dev, b, [s.N], dtype);
      const yShape = s.ycf ? [s.B, s.N, ...s.spatial] : [s.B, S, s.N];
      const tr = rTok && up(dev, s.ycf ? transposeBS(rTok, s.B, S, s.N) : rTok, yShape, dtype);
      gemmHooks.maxBinding = s.maxBinding ?? 0;
      const before = dev.dispatches;
      let y;
      try {
        y = linear(tx, tw, tb, {
          residual: tr,
          xChannelsFirst: s.xcf,
          yChannelsFirst: s.ycf ? s.spatial : undefined,
        });
      } finally {
        gemmHooks.maxBinding = 0;
      }
      if (s.maxBinding && dev.dispatches - before < 2) throw new Error("the forced split did not happen");
      if (y.shape.join() !== yShape.join()) throw new Error(`output shape [${y.shape}], expected [${yShape}]`);
      const got = await y.read();
      for (const t of [tx, tw, tb, tr, y]) t?.release();
      const want = linearRef(xTok, w, M, s.N, s.K, b, rTok);
      return { got, want: quantize(s.ycf ? transposeBS(want, s.B, S, s.N) : want, dtype) };
    },
  };
}

const layouts: LayoutShape[] = [
  { B: 2, spatial: [4, 6], N: 20, K: 12, xcf: true, ycf: false, res: false }, // S % 4 == 0: vec4 row loads
  { B: 3, spatial: [5, 3], N: 33, K: 17, xcf: true, ycf: false, res: false }, // odd S: scalar loads
  { B: 2, spatial: [7, 5], N: 24, K: 40, xcf: false, ycf: true, res: true }, // proj_out + residual
  { B: 2, spatial: [3, 3], N: 9, K: 9, xcf: true, ycf: true, res: true }, // 1x1 conv as a GEMM
  { B: 3, spatial: [8, 8], N: 16, K: 16, xcf: true, ycf: true, res: true, maxBinding: 4096 }, // split by image
];
for (const dtype of DTYPES) for (const s of layouts) cases.push(layoutCase(s, dtype));
cases.splice(0, cases.length, ...withF16Math(cases));
