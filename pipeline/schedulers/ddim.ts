// DDIM (diffusers DDIMScheduler, v0.25.1 semantics). Timesteps and per-step coefficients are computed on the CPU
// in float64 from the float32 alphas_cumprod table; the update itself is one WGSL dispatch (shaders/ddim_step.wgsl)
// recorded without readback, so a denoising loop never waits for the GPU.
import ddimSrc from "../../shaders/ddim_step.wgsl" with { type: "text" };
import { GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { assertShape, grid1d } from "../ops/launch.ts";
import { vecConsts, vecSource, widthFor } from "../ops/vec.ts";
import {
  noiseTables,
  npLinspace,
  roundHalfEven,
  type SchedulerConfig,
  SchedulerError,
  SD15_SCHEDULER,
  type TimestepSpacing,
  trailingTimesteps,
} from "./config.ts";

/** The float64 coefficients of one DDIM step (see shaders/ddim_step.wgsl). */
export interface DDIMCoefficients {
  x0X: number;
  x0E: number;
  epsX: number;
  epsE: number;
  aPrev: number;
  dir: number;
  std: number;
  /** clip_sample_range, or 0 for no clipping. */
  clip: number;
}

/** Timesteps of DDIMScheduler.set_timesteps(n) for a spacing (integers, descending). */
export function ddimTimesteps(n: number, N: number, spacing: TimestepSpacing, stepsOffset: number): Int32Array {
  if (spacing === "linspace") return Int32Array.from(npLinspace(0, N - 1, n).map(roundHalfEven).reverse());
  if (spacing === "leading") {
    const ratio = Math.floor(N / n);
    return Int32Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + stepsOffset);
  }
  return Int32Array.from(trailingTimesteps(n, N, "DDIM.setTimesteps"));
}

export class DDIM {
  readonly cfg: SchedulerConfig;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** alpha_cumprod used after the last timestep: 1 with set_alpha_to_one, else alphas_cumprod[0]. */
  readonly finalAlphaCumprod: number;
  readonly spacing: TimestepSpacing;
  /** Descending timesteps from the last setTimesteps() (empty before). */
  timesteps: Int32Array = new Int32Array(0);
  numInferenceSteps = 0;

  constructor(cfg: SchedulerConfig = SD15_SCHEDULER) {
    this.cfg = cfg;
    const t = noiseTables(cfg);
    this.betas = t.betas;
    this.alphas = t.alphas;
    this.alphasCumprod = t.alphasCumprod;
    this.finalAlphaCumprod = cfg.set_alpha_to_one ? 1 : t.alphasCumprod[0];
    this.spacing = cfg.timestep_spacing ?? "leading";
  }

  setTimesteps(n: number): Int32Array {
    const N = this.cfg.num_train_timesteps;
    if (!Number.isInteger(n) || n < 1 || n > N) {
      throw new SchedulerError(`DDIM.setTimesteps: the step count must be an integer in [1, ${N}], got ${n}`);
    }
    const ts = ddimTimesteps(n, N, this.spacing, this.cfg.steps_offset);
    // "leading" with a large steps_offset would index past the table; diffusers would fail there too.
    const bad = ts.find((t) => t < 0 || t >= N);
    if (bad !== undefined) {
      throw new SchedulerError(`DDIM.setTimesteps(${n}): timestep ${bad} is outside [0, ${N - 1}]`);
    }
    this.timesteps = ts;
    this.numInferenceSteps = n;
    return ts;
  }

  /** diffusers' prev_timestep: always t - num_train_timesteps // n, whatever the spacing. */
  prevTimestep(t: number): number {
    return t - Math.floor(this.cfg.num_train_timesteps / this.numInferenceSteps);
  }

  private checkTimestep(t: number): void {
    if (!this.numInferenceSteps) throw new SchedulerError("DDIM.step: call setTimesteps(n) first");
    if (!this.timesteps.includes(t)) {
      const ts = this.timesteps, n = ts.length;
      const list = n <= 6 ? ts.join(", ") : `${ts[0]}, ${ts[1]}, ${ts[2]}, ..., ${ts[n - 1]}`;
      throw new SchedulerError(
        `DDIM.step: timestep ${t} is not one of the ${n} timesteps of setTimesteps(${n}) (${list})`,
      );
    }
  }

  /** Coefficients of the step from t, in float64 from the float32 table (diffusers' formulas). */
  coefficients(t: number, eta = this.cfg.eta): DDIMCoefficients {
    this.checkTimestep(t);
    if (!(eta >= 0)) throw new SchedulerError(`DDIM.step: eta must be >= 0, got ${eta}`);
    const prev = this.prevTimestep(t);
    const a = this.alphasCumprod[t];
    const aPrev = prev >= 0 ? this.alphasCumprod[prev] : this.finalAlphaCumprod;
    const b = 1 - a, bPrev = 1 - aPrev;
    const sa = Math.sqrt(a), sb = Math.sqrt(b);
    let x0X: number, x0E: number, epsX: number, epsE: number;
    switch (this.cfg.prediction_type) {
      case "epsilon":
        [x0X, x0E, epsX, epsE] = [1 / sa, -sb / sa, 0, 1];
        break;
      case "sample":
        [x0X, x0E, epsX, epsE] = [0, 1, 1 / sb, -sa / sb];
        break;
      case "v_prediction":
        [x0X, x0E, epsX, epsE] = [sa, -sb, sb, sa];
        break;
    }
    const variance = (bPrev / b) * (1 - a / aPrev);
    const std = eta * Math.sqrt(variance);
    return {
      x0X,
      x0E,
      epsX,
      epsE,
      aPrev: Math.sqrt(aPrev),
      // max(): 1 - a_prev - std^2 is >= 0 mathematically (std^2 <= 1 - a_prev for eta <= 1).
      dir: Math.sqrt(Math.max(0, 1 - aPrev - std * std)),
      std,
      clip: this.cfg.clip_sample ? this.cfg.clip_sample_range : 0,
    };
  }

  /**
   * Records prev = DDIM step from t (eta 0, or eta > 0 with `noise` given: std_dev_t * noise added) and the
   * predicted x0. Returns new pooled tensors (the caller releases them); `eps` and `x` are not modified.
   */
  step(
    eps: Tensor,
    t: number,
    x: Tensor,
    opts: { eta?: number; noise?: Tensor } = {},
  ): { prev: Tensor; x0: Tensor } {
    const op = "DDIM.step";
    const c = this.coefficients(t, opts.eta ?? this.cfg.eta);
    assertShape(op, "model output", eps, x.shape);
    if (eps.dtype !== x.dtype) throw new GpuError(`${op}: model output is ${eps.dtype}, sample is ${x.dtype}`);
    const noisy = c.std > 0;
    if (noisy) {
      if (!opts.noise) throw new SchedulerError(`${op}: eta > 0 needs opts.noise (same shape as the sample)`);
      assertShape(op, "noise", opts.noise, x.shape);
      if (opts.noise.dtype !== x.dtype) throw new GpuError(`${op}: noise is ${opts.noise.dtype}, sample is ${x.dtype}`);
    }
    const dev = x.dev;
    const prev = empty(dev, x.shape, x.dtype), x0 = empty(dev, x.shape, x.dtype);
    // vec4 units when the element count allows (pipeline/ops/vec.ts).
    const w = widthFor(x.numel);
    const k = dev.kernel("ddim_step", vecSource(ddimSrc, w), vecConsts(w, { CLIP: c.clip > 0, NOISE: noisy }), x.dtype);
    const { groups, row } = grid1d(x.numel / w, 256);
    const p = new Params().u(x.numel / w, row).f(c.x0X, c.x0E, c.epsX, c.epsE, c.aPrev, c.dir, c.std, c.clip);
    // Without noise the kernel never reads binding 3; bind the sample there (two read-only uses are allowed).
    const noise = noisy ? opts.noise! : x;
    dev.dispatch(k, p, [eps.binding(), x.binding(), noise.binding(), prev.binding(), x0.binding()], groups);
    return { prev, x0 };
  }
}
