// Op-table cases for the scheduler and Text2Video-Zero latent kernels: weighted sums (guidance, DDPM forward),
// DDIM and Euler-ancestral steps, and the latent warp, each against a float64 reference written from diffusers'
// formulas (not from the coefficients the wrappers derive).
import { concatF32 } from "../../pipeline/modes/common.ts";
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import type { Tensor } from "../../pipeline/gpu/tensor.ts";
import { schedulerConfig } from "../../pipeline/schedulers/config.ts";
import { DDIM } from "../../pipeline/schedulers/ddim.ts";
import { ddpmForward, forwardAlphaVec } from "../../pipeline/schedulers/ddpm_forward.ts";
import { EulerAncestral } from "../../pipeline/schedulers/euler_ancestral.ts";
import { cfg, cfgPix2Pix, scaleAdd } from "../../pipeline/schedulers/guidance.ts";
import { motionGrid, warpLatents } from "../../pipeline/modes/motion.ts";
import { DTYPES, quantize, randn, type Tol, up } from "../util.ts";
import type { OpCase, PerfCase } from "./types.ts";

const numel = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);

/** Tolerance for outputs of magnitude up to `scale`: a few f32 ulps, or one f16 ulp of rounding either way. */
function tolFor(dtype: DType, scale: number): Tol {
  return dtype === "f32" ? { maxAbs: 4e-7 * scale, relL2: 1e-6 } : { maxAbs: 1e-3 * scale, relL2: 2e-4 };
}

/** Read the outputs, release every tensor, and quantize the reference the way the output is stored. */
async function finish(outs: Tensor[], temps: Tensor[], want: Float64Array, dtype: DType) {
  const parts: Float32Array[] = [];
  for (const o of outs) parts.push(await o.read());
  for (const t of [...outs, ...temps]) t.release();
  return { got: concatF32(parts), want: quantize(Float32Array.from(want), dtype) };
}

function input(dev: Device, shape: number[], seed: number, dtype: DType, scale = 1) {
  const data = quantize(randn(numel(shape), seed, scale), dtype);
  return { data, t: up(dev, data, shape, dtype) };
}

export const cases: OpCase[] = [];

for (const dtype of DTYPES) {
  // scaleAdd: 1-3 terms, element offsets into a larger tensor (term k at first + step*k, in a tensor that ends at
  // its range or k elements later), sizes that are not multiples of the workgroup. vec4 units only when the count
  // and every offset are multiples of 4 (the last three); scalars otherwise (an odd count, or odd offsets).
  const SA = [
    [5, [1.7], 1, 3],
    [1000, [0.3, -2.1], 1, 3],
    [70001, [1.25, -0.5, 3], 1, 3],
    [1000, [0.3, -2.1, 0.7], 2, 4],
    [1000, [0.3, -2.1, 0.7], 4, 4],
    [70004, [1.25, -0.5, 3], 0, 8],
    [12, [-0.75], 0, 0],
  ] as const;
  for (const [n, weights, first, step] of SA) {
    const at = (k: number) => first + step * k;
    cases.push({
      op: "scaleAdd",
      shape: `n=${n} terms=${weights.length} offsets=${weights.map((_, k) => at(k))}`,
      dtype,
      tol: tolFor(dtype, 20),
      run(dev) {
        const src = weights.map((_, k) => input(dev, [at(k) + n + k], 100 + k + n, dtype));
        const y = scaleAdd([n], weights.map((w, k) => ({ x: src[k].t, w, at: at(k) })));
        const want = Float64Array.from(
          { length: n },
          (_, i) => weights.reduce((s, w, k) => s + w * src[k].data[at(k) + i], 0),
        );
        return finish([y], src.map((s) => s.t), want, dtype);
      },
    });
  }

  // Classifier-free guidance on [2F, ...] and InstructPix2Pix guidance on [3F, ...]: vec4 units (512 and 420 elements
  // a frame group), scalars (918).
  for (const shape of [[2, 4, 8, 8], [3, 4, 5, 7], [2, 3, 17, 9]]) {
    const g = 7.5, gImg = 1.5;
    cases.push({
      op: "cfg",
      shape: `noise=[2x${shape[0]},${shape.slice(1)}] g=${g}`,
      dtype,
      tol: tolFor(dtype, 80),
      run(dev) {
        const F = shape[0], n = numel(shape);
        const x = input(dev, [2 * F, ...shape.slice(1)], 7 + F, dtype);
        const y = cfg(x.t, g);
        const want = Float64Array.from({ length: n }, (_, i) => {
          const u = x.data[i], c = x.data[n + i];
          return u + g * (c - u);
        });
        return finish([y], [x.t], want, dtype);
      },
    });
    cases.push({
      op: "cfgPix2Pix",
      shape: `noise=[3x${shape[0]},${shape.slice(1)}] g=${g} gImg=${gImg}`,
      dtype,
      tol: tolFor(dtype, 100),
      run(dev) {
        const F = shape[0], n = numel(shape);
        const x = input(dev, [3 * F, ...shape.slice(1)], 9 + F, dtype);
        const y = cfgPix2Pix(x.t, g, gImg);
        // Chunks (text+img, uncond+img, uncond+zero) as diffusers' noise_pred.chunk(3).
        const want = Float64Array.from({ length: n }, (_, i) => {
          const t = x.data[i], im = x.data[n + i], u = x.data[2 * n + i];
          return u + g * (t - im) + gImg * (im - u);
        });
        return finish([y], [x.t], want, dtype);
      },
    });
  }

  // DDIM steps: prediction types, clipping, eta > 0 with noise, the final step (prev timestep < 0). Counts that are
  // multiples of 4 run on vec4 units, the last two (105 and 18 elements) on scalars.
  const ddimVariants = [
    { pred: "epsilon", clip: false, eta: 0, steps: 50, t: 981, shape: [2, 4, 5, 7] },
    { pred: "epsilon", clip: false, eta: 0, steps: 50, t: 1, shape: [3, 4, 8, 9] },
    { pred: "epsilon", clip: true, eta: 0.7, steps: 20, t: 501, shape: [2, 4, 16, 9] },
    { pred: "v_prediction", clip: false, eta: 0, steps: 25, t: 441, shape: [2, 4, 5, 7] },
    { pred: "sample", clip: true, eta: 1, steps: 10, t: 901, shape: [1, 4, 6, 6] },
    { pred: "epsilon", clip: true, eta: 0.7, steps: 20, t: 501, shape: [1, 3, 5, 7] },
    { pred: "v_prediction", clip: false, eta: 0, steps: 25, t: 441, shape: [2, 1, 3, 3] },
  ] as const;
  for (const v of ddimVariants) {
    cases.push({
      op: "DDIM.step",
      shape: `x=[${v.shape}] ${v.pred} t=${v.t}/${v.steps} eta=${v.eta}${v.clip ? " clip" : ""}`,
      dtype,
      tol: tolFor(dtype, 100),
      run(dev) {
        const c = schedulerConfig({ prediction_type: v.pred, clip_sample: v.clip, clip_sample_range: 1.5 });
        const ddim = new DDIM(c);
        ddim.setTimesteps(v.steps);
        const m = input(dev, [...v.shape], 21 + v.t, dtype), x = input(dev, [...v.shape], 22 + v.t, dtype, 1.5);
        const z = input(dev, [...v.shape], 23 + v.t, dtype);
        const r = ddim.step(m.t, v.t, x.t, { eta: v.eta, noise: z.t });
        // diffusers DDIMScheduler.step in float64 on the float32 table.
        const ac = ddim.alphasCumprod, prevT = v.t - Math.floor(1000 / v.steps);
        const a = ac[v.t], aPrev = prevT >= 0 ? ac[prevT] : ac[0], b = 1 - a;
        const std = v.eta * Math.sqrt(((1 - aPrev) / b) * (1 - a / aPrev));
        const n = numel(v.shape), prev = new Float64Array(n), x0s = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          const mo = m.data[i], s = x.data[i];
          let x0: number, e: number;
          if (v.pred === "epsilon") [x0, e] = [(s - Math.sqrt(b) * mo) / Math.sqrt(a), mo];
          else if (v.pred === "sample") [x0, e] = [mo, (s - Math.sqrt(a) * mo) / Math.sqrt(b)];
          else [x0, e] = [Math.sqrt(a) * s - Math.sqrt(b) * mo, Math.sqrt(a) * mo + Math.sqrt(b) * s];
          if (v.clip) x0 = Math.min(1.5, Math.max(-1.5, x0));
          x0s[i] = x0;
          prev[i] = Math.sqrt(aPrev) * x0 + Math.sqrt(1 - aPrev - std * std) * e + std * z.data[i];
        }
        const want = new Float64Array(2 * n);
        want.set(prev), want.set(x0s, n);
        return finish([r.prev, r.x0], [m.t, x.t, z.t], want, dtype);
      },
    });
  }

  // Euler-ancestral steps (first, middle, last where sigma_up = 0), eps and v prediction, and model-input scaling.
  for (
    const [pred, i, shape] of [["epsilon", 0, [1, 4, 8, 8]], ["epsilon", 9, [2, 4, 5, 7]], ["epsilon", 19, [
      2,
      4,
      5,
      7,
    ]], ["v_prediction", 6, [3, 4, 9, 5]]] as const
  ) {
    cases.push({
      op: "EulerAncestral.step",
      shape: `x=[${shape}] ${pred} i=${i}/20`,
      dtype,
      tol: tolFor(dtype, 80),
      run(dev) {
        const e = new EulerAncestral(schedulerConfig({ prediction_type: pred, timestep_spacing: "linspace" }));
        e.setTimesteps(20);
        const sigma = e.sigmas[i], to = e.sigmas[i + 1];
        const m = input(dev, [...shape], 31 + i, dtype), z = input(dev, [...shape], 32 + i, dtype);
        const x = input(dev, [...shape], 33 + i, dtype, Math.sqrt(sigma * sigma + 1));
        const prev = e.step(m.t, i, x.t, z.t);
        const scaled = e.scaleModelInput(x.t, i);
        // diffusers EulerAncestralDiscreteScheduler.step in float64 on the float32 sigmas.
        const up = Math.sqrt(to ** 2 * (sigma ** 2 - to ** 2) / sigma ** 2), down = Math.sqrt(to ** 2 - up ** 2);
        const n = numel(shape), want = new Float64Array(2 * n);
        for (let k = 0; k < n; k++) {
          const s = x.data[k], mo = m.data[k];
          const x0 = pred === "epsilon"
            ? s - sigma * mo
            : mo * (-sigma / Math.sqrt(sigma ** 2 + 1)) + s / (sigma ** 2 + 1);
          want[k] = s + (s - x0) / sigma * (down - sigma) + z.data[k] * up;
          want[n + k] = s / Math.sqrt(sigma ** 2 + 1);
        }
        return finish([prev, scaled], [m.t, x.t, z.t], want, dtype);
      },
    });
  }

  // DDPM forward jump of Text2Video-Zero (default 881 -> 941, and another pair).
  for (const [t0, t1, shape] of [[881, 941, [3, 4, 8, 8]], [100, 437, [2, 4, 5, 7]]] as const) {
    cases.push({
      op: "ddpmForward",
      shape: `x=[${shape}] t0=${t0} t1=${t1}`,
      dtype,
      tol: tolFor(dtype, 6),
      run(dev) {
        const c = schedulerConfig({});
        const x = input(dev, [...shape], 41 + t0, dtype), e = input(dev, [...shape], 42 + t0, dtype);
        const y = ddpmForward(x.t, e.t, t0, t1, c);
        const A = forwardAlphaVec(t0, t1, c);
        const want = Float64Array.from(x.data, (v, i) => Math.sqrt(A) * v + Math.sqrt(1 - A) * e.data[i]);
        return finish([y], [x.t, e.t], want, dtype);
      },
    });
  }

  // Latent warp against diffusers' path: the bilinear-resized grid (motionGrid, float32 as torch) fed to a
  // float64 grid_sample(nearest, reflection, align_corners=False). Exact copies, so zero tolerance.
  const warps = [
    { shape: [7, 4, 8, 8], ids: [1, 2, 3, 4, 5, 6, 7], sx: 12, sy: 12 },
    { shape: [4, 4, 13, 21], ids: [0, 3, 9, 30], sx: -17, sy: 5 },
    { shape: [3, 3, 64, 40], ids: [2, 11, 5], sx: 20, sy: -20 },
    { shape: [1, 4, 12, 96], ids: [0, 1, 2, 7, 8], sx: 12, sy: 7.5 }, // one latent broadcast to 5 frames
    // Exact .5 ties (shift -0.5 / +0.5 at 8x8, where torch's float32 grid is exact): round half to even.
    { shape: [2, 4, 8, 8], ids: [1, 5], sx: 32.5, sy: -31.5 },
  ];
  for (const v of warps) {
    cases.push({
      op: "warpLatents",
      shape: `x=[${v.shape}] ids=[${v.ids}] s=(${v.sx},${v.sy})`,
      dtype,
      tol: { maxAbs: 0, relL2: 0 },
      run(dev) {
        const [b, C, h, w] = v.shape;
        const x = input(dev, v.shape, 51 + h * w, dtype);
        const y = warpLatents(x.t, v.ids, v.sx, v.sy);
        const grid = motionGrid(h, w, v.ids, v.sx, v.sy);
        const want = new Float64Array(v.ids.length * C * h * w);
        v.ids.forEach((_, f) => {
          for (let yy = 0; yy < h; yy++) {
            for (let xx = 0; xx < w; xx++) {
              const g = ((f * h + yy) * w + xx) * 2;
              const X = gridSampleIndex(grid[g], w), Y = gridSampleIndex(grid[g + 1], h);
              const src = b === 1 ? 0 : f;
              for (let c = 0; c < C; c++) {
                want[((f * C + c) * h + yy) * w + xx] = x.data[((src * C + c) * h + Y) * w + X];
              }
            }
          }
        });
        return finish([y], [x.t], want, dtype);
      },
    });
  }
}

/** torch grid_sampler_2d source index: unnormalize, reflect_coordinates(-1, 2n-1), clip, nearbyint. */
function gridSampleIndex(coord: number, n: number): number {
  let u = ((coord + 1) * n - 1) / 2;
  const min = -0.5, span = n;
  u = Math.abs(u - min);
  const extra = u % span, flips = Math.floor(u / span);
  u = flips % 2 === 0 ? extra + min : span - extra + min;
  u = Math.min(n - 1, Math.max(u, 0));
  const r = Math.round(u);
  return Math.abs(u % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export const perf: PerfCase[] = [
  {
    op: "DDIM.step",
    shape: "16x4x64x64",
    flops: 0,
    bytes: 4 * 16 * 4 * 64 * 64 * 4,
    setup(dev, dtype) {
      const shape = [16, 4, 64, 64], n = numel(shape);
      const ddim = new DDIM(schedulerConfig({}));
      ddim.setTimesteps(50);
      const m = up(dev, randn(n, 1), shape, dtype), x = up(dev, randn(n, 2), shape, dtype);
      return () => {
        const r = ddim.step(m, 501, x);
        r.prev.release(), r.x0.release();
      };
    },
  },
  {
    op: "cfg",
    shape: "2x16x4x64x64",
    flops: 0,
    bytes: 3 * 16 * 4 * 64 * 64 * 4,
    setup(dev, dtype) {
      const shape = [32, 4, 64, 64];
      const noise = up(dev, randn(numel(shape), 3), shape, dtype);
      return () => cfg(noise, 7.5).release();
    },
  },
];
