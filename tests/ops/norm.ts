import { groupNorm, layerNorm } from "../../pipeline/ops/norm.ts";
import type { DType } from "../../pipeline/gpu/device.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import { silu } from "../ref.ts";
import type { OpCase, PerfCase } from "./types.ts";

// Outputs are O(1)-O(10): f16 allows a one-ulp rounding flip at |y| < 16.
const tolFor = (dtype: DType) => dtype === "f32" ? { maxAbs: 1e-5, relL2: 1e-6 } : { maxAbs: 8e-3, relL2: 1e-4 };

/** Random values with mean `offset` (a large offset exposes cancellation in the variance). */
function data(n: number, seed: number, dtype: DType, offset = 0, scale = 1): Float32Array {
  const r = randn(n, seed, scale);
  for (let i = 0; i < n; i++) r[i] += offset;
  return quantize(r, dtype);
}

/** Affine parameters: gamma around 1, beta around 0, never zero. */
const affine = (n: number, seed: number, dtype: DType) => ({
  g: quantize(Float32Array.from(randn(n, seed, 0.3), (v) => 1 + v), dtype),
  b: quantize(randn(n, seed + 1, 0.5), dtype),
});

function groupNormRef(
  x: Float32Array,
  shape: number[],
  groups: number,
  g: Float32Array,
  b: Float32Array,
  eps: number,
  act: boolean,
): Float32Array {
  const [N, C] = shape;
  const S = x.length / (N * C), cg = C / groups, m = cg * S;
  const y = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += m) {
    let s = 0;
    for (let i = 0; i < m; i++) s += x[base + i];
    const mean = s / m;
    let q = 0;
    for (let i = 0; i < m; i++) q += (x[base + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / m + eps);
    const c0 = ((base / m) % groups) * cg;
    for (let i = 0; i < m; i++) {
      const c = c0 + Math.floor(i / S);
      const v = (x[base + i] - mean) * rstd * g[c] + b[c];
      y[base + i] = act ? silu(v) : v;
    }
  }
  return y;
}

function layerNormRef(x: Float32Array, C: number, g: Float32Array, b: Float32Array, eps: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += C) {
    let s = 0;
    for (let i = 0; i < C; i++) s += x[base + i];
    const mean = s / C;
    let q = 0;
    for (let i = 0; i < C; i++) q += (x[base + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / C + eps);
    for (let i = 0; i < C; i++) y[base + i] = (x[base + i] - mean) * rstd * g[i] + b[i];
  }
  return y;
}

export const cases: OpCase[] = [];

// [shape, groups, eps, silu, offset]
const GN: [number[], number, number, boolean, number][] = [
  // Groups of up to 1024 units run in one dispatch (statistics in the normalising kernel), larger ones in two.
  [[2, 12, 5, 7], 3, 1e-5, false, 0], // odd spatial: scalar path, one pass
  [[2, 16, 7, 9], 4, 1e-5, true, 100], // large mean, one pass
  [[2, 12, 5, 7], 3, 1e-5, true, 0],
  [[3, 32, 9, 8], 8, 1e-6, true, 0], // batch 3, vec4 path
  [[2, 8, 1, 1], 4, 1e-5, false, 0], // 1x1 spatial
  [[3, 6], 2, 1e-5, false, 0], // no spatial dims
  [[2, 6, 11], 3, 1e-6, true, 0], // one spatial dim
  [[2, 64, 48, 48], 4, 1e-5, true, 0], // 9 chunks per group, vec4
  [[2, 64, 33, 31], 8, 1e-6, false, 100], // large mean, 8 uneven chunks, scalar
  [[2, 32, 32, 32], 4, 1e-6, false, 100], // large mean, vec4
  [[1, 32, 256, 272], 2, 1e-6, true, 3], // 1.1M elements per group: chunk count capped at 256
];
for (const dtype of DTYPES) {
  for (const [shape, groups, eps, act, offset] of GN) {
    cases.push({
      op: "groupNorm",
      shape: `x=[${shape}] groups=${groups} eps=${eps}${act ? " silu" : ""}${offset ? ` mean=${offset}` : ""}`,
      dtype,
      tol: tolFor(dtype),
      async run(dev) {
        const n = shape.reduce((p, d) => p * d, 1);
        const C = shape[1];
        const x = data(n, n + C, dtype, offset, 1.5);
        const { g, b } = affine(C, C + 5, dtype);
        const tx = up(dev, x, shape, dtype), tg = up(dev, g, [C], dtype), tb = up(dev, b, [C], dtype);
        const y = groupNorm(tx, groups, tg, tb, eps, { silu: act });
        const got = await y.read();
        tx.release(), tg.release(), tb.release(), y.release();
        return { got, want: quantize(groupNormRef(x, shape, groups, g, b, eps, act), dtype) };
      },
    });
  }
  // Writing into a caller's tensor.
  cases.push({
    op: "groupNorm",
    shape: "x=[2,20,3,4] groups=5 out=",
    dtype,
    tol: tolFor(dtype),
    async run(dev) {
      const shape = [2, 20, 3, 4], n = 480;
      const x = data(n, 3, dtype, -2);
      const { g, b } = affine(20, 4, dtype);
      const tx = up(dev, x, shape, dtype), tg = up(dev, g, [20], dtype), tb = up(dev, b, [20], dtype);
      const out = up(dev, data(n, 9, dtype), shape, dtype);
      const y = groupNorm(tx, 5, tg, tb, 1e-5, { out });
      if (y !== out) throw new Error("groupNorm did not return opts.out");
      const got = await y.read();
      tx.release(), tg.release(), tb.release(), y.release();
      return { got, want: quantize(groupNormRef(x, shape, 5, g, b, 1e-5, false), dtype) };
    },
  });

  // Given statistics (the banded VAE decode): rows [r0, r1) of a map, normalised with the whole map's (count, mean,
  // M2) computed on the host, equal those rows of the map's GroupNorm. [shape N,C,H,W; groups; r0; r1; silu; offset]
  const BAND: [number[], number, number, number, boolean, number][] = [
    [[1, 16, 9, 12], 4, 3, 7, true, 0], // band rows of 12: vec4
    [[2, 12, 11, 7], 3, 0, 4, false, 50], // batch 2, odd width: scalar, large mean
    [[1, 32, 40, 40], 8, 10, 31, true, 0], // 630 units per band group
  ];
  for (const [shape, groups, r0, r1, act, offset] of BAND) {
    cases.push({
      op: "groupNorm",
      shape: `x=[${shape}] groups=${groups} rows ${r0}..${r1} given stats${act ? " silu" : ""}`,
      dtype,
      tol: tolFor(dtype),
      async run(dev) {
        const [N, C, H, W] = shape, n = N * C * H * W, cg = C / groups, R = r1 - r0;
        const x = data(n, n + 7, dtype, offset, 1.5);
        const { g, b } = affine(C, C + 3, dtype);
        const stats = new Float32Array(N * groups * 4);
        for (let ng = 0; ng < N * groups; ng++) {
          const part = x.subarray(ng * cg * H * W, (ng + 1) * cg * H * W);
          let s = 0, q = 0;
          for (const v of part) s += v;
          const mean = s / part.length;
          for (const v of part) q += (v - mean) ** 2;
          stats.set([part.length, mean, q], ng * 4);
        }
        const band = new Float32Array(N * C * R * W);
        for (let nc = 0; nc < N * C; nc++) band.set(x.subarray((nc * H + r0) * W, (nc * H + r1) * W), nc * R * W);
        const tx = up(dev, band, [N, C, R, W], dtype), tg = up(dev, g, [C], dtype), tb = up(dev, b, [C], dtype);
        const ts = up(dev, stats, [N * groups * 4], "f32");
        const y = groupNorm(tx, groups, tg, tb, 1e-5, { silu: act, stats: ts });
        const got = await y.read();
        tx.release(), tg.release(), tb.release(), ts.release(), y.release();
        const full = groupNormRef(x, shape, groups, g, b, 1e-5, act), want = new Float32Array(band.length);
        for (let nc = 0; nc < N * C; nc++) want.set(full.subarray((nc * H + r0) * W, (nc * H + r1) * W), nc * R * W);
        return { got, want: quantize(want, dtype) };
      },
    });
  }

  // [shape, offset]: C=13 scalar; 768/320/1280 vec4 (CLIP, UNet); 1030 scalar with 256 threads; 16388 vec4 past
  // the register cache; 70000 rows fold the workgroup grid into 2-D.
  const LN: [number[], number][] = [
    [[5, 13], 0],
    [[3, 77, 768], 0],
    [[2, 33, 320], 0],
    [[7, 1280], 100],
    [[3, 1030], 0],
    [[3, 1030], -50],
    [[2, 16388], 0],
    [[70000, 6], 0],
  ];
  for (const [shape, offset] of LN) {
    cases.push({
      op: "layerNorm",
      shape: `x=[${shape}]${offset ? ` mean=${offset}` : ""}`,
      dtype,
      tol: tolFor(dtype),
      async run(dev) {
        const n = shape.reduce((p, d) => p * d, 1);
        const C = shape[shape.length - 1];
        const x = data(n, n + 1, dtype, offset, 2);
        const { g, b } = affine(C, C + 2, dtype);
        const tx = up(dev, x, shape, dtype), tg = up(dev, g, [C], dtype), tb = up(dev, b, [C], dtype);
        const y = layerNorm(tx, tg, tb, 1e-5);
        const got = await y.read();
        tx.release(), tg.release(), tb.release(), y.release();
        return { got, want: quantize(layerNormRef(x, C, g, b, 1e-5), dtype) };
      },
    });
  }
}

function perfGroupNorm(shape: number[], groups: number, act: boolean): PerfCase {
  const n = shape.reduce((p, d) => p * d, 1);
  return {
    op: "groupNorm",
    shape: `${shape.join("x")} groups=${groups}${act ? " silu" : ""}`,
    flops: 0,
    // One read and one write (the kernels read x a second time, so DRAM traffic is 1.5x this).
    bytes: 2 * n * 4,
    setup(dev, dtype) {
      const C = shape[1];
      const x = up(dev, randn(n, 1), shape, dtype);
      const g = up(dev, randn(C, 2), [C], dtype), b = up(dev, randn(C, 3), [C], dtype);
      const y = up(dev, randn(n, 4), shape, dtype);
      return () => groupNorm(x, groups, g, b, 1e-5, { silu: act, out: y });
    },
  };
}

export const perf: PerfCase[] = [
  perfGroupNorm([2, 320, 64, 64], 32, true),
  perfGroupNorm([2, 1280, 8, 8], 32, false),
  perfGroupNorm([1, 128, 512, 512], 32, true),
  {
    op: "layerNorm",
    shape: "8192x320",
    flops: 0,
    bytes: 2 * 8192 * 320 * 4,
    setup(dev, dtype) {
      const x = up(dev, randn(8192 * 320, 1), [8192, 320], dtype);
      const g = up(dev, randn(320, 2), [320], dtype), b = up(dev, randn(320, 3), [320], dtype);
      const y = up(dev, randn(8192 * 320, 4), [8192, 320], dtype);
      return () => layerNorm(x, g, b, 1e-5, { out: y });
    },
  },
];
