// Euler-ancestral (diffusers EulerAncestralDiscreteScheduler, v0.25.1 semantics). Timesteps and sigmas are built on
// the CPU exactly as diffusers does; each update is one weighted sum on the GPU (shaders/scale_add.wgsl) with
// float64 coefficients, so a denoising loop records work without readback.
import { GpuError } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { assertShape } from "../ops/launch.ts";
import {
  noiseTables,
  npLinspace,
  type SchedulerConfig,
  SchedulerError,
  SD15_SCHEDULER,
  type TimestepSpacing,
  trailingTimesteps,
} from "./config.ts";
import { scaleAdd } from "./guidance.ts";

const f32 = Math.fround;

/** The float64 coefficients of one step: prev = x*x + eps*model_output + noise*noise. */
export interface EulerCoefficients {
  x: number;
  eps: number;
  noise: number;
  sigma: number;
  sigmaUp: number;
  sigmaDown: number;
}

export class EulerAncestral {
  readonly cfg: SchedulerConfig;
  readonly alphasCumprod: Float32Array;
  readonly spacing: TimestepSpacing;
  /** sqrt((1 - alphas_cumprod) / alphas_cumprod), float32 arithmetic as torch computes it. */
  readonly trainSigmas: Float32Array;
  /** Descending float timesteps from the last setTimesteps() (empty before). */
  timesteps: Float32Array = new Float32Array(0);
  /** sigma per step plus a final 0 (length n + 1); before setTimesteps, the full training table (as diffusers). */
  sigmas: Float32Array;
  initNoiseSigma: number;
  numInferenceSteps = 0;

  constructor(cfg: SchedulerConfig = SD15_SCHEDULER) {
    if (cfg.prediction_type === "sample") {
      throw new SchedulerError('EulerAncestral: prediction_type "sample" is not supported (diffusers neither)');
    }
    this.cfg = cfg;
    this.alphasCumprod = noiseTables(cfg).alphasCumprod;
    this.spacing = cfg.timestep_spacing ?? "linspace";
    this.trainSigmas = this.alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
    this.sigmas = Float32Array.from([...this.trainSigmas.toReversed(), 0]);
    this.initNoiseSigma = this.noiseSigma();
  }

  // diffusers' init_noise_sigma: max sigma for "linspace"/"trailing", else sqrt(max^2 + 1) (float32 ops).
  private noiseSigma(): number {
    const m = this.sigmas.reduce((a, b) => Math.max(a, b), 0);
    return this.spacing === "leading" ? f32(Math.sqrt(f32(f32(m * m) + 1))) : m;
  }

  setTimesteps(n: number): Float32Array {
    const N = this.cfg.num_train_timesteps;
    if (!Number.isInteger(n) || n < 1 || n > N) {
      throw new SchedulerError(`EulerAncestral.setTimesteps: the step count must be an integer in [1, ${N}], got ${n}`);
    }
    let ts: Float64Array;
    if (this.spacing === "linspace") ts = npLinspace(0, N - 1, n).reverse();
    else if (this.spacing === "leading") {
      const ratio = Math.floor(N / n);
      ts = Float64Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + this.cfg.steps_offset);
    } else ts = trailingTimesteps(n, N, "EulerAncestral.setTimesteps");
    const timesteps = Float32Array.from(ts);
    // np.interp(timesteps, arange(N), train_sigmas) in float64, then float32; clamped at the table ends.
    const s = this.trainSigmas;
    const sigmas = new Float32Array(n + 1);
    for (let i = 0; i < n; i++) {
      const t = timesteps[i];
      if (t >= N - 1) sigmas[i] = s[N - 1];
      else if (t <= 0) sigmas[i] = s[0];
      else {
        const j = Math.floor(t);
        sigmas[i] = (s[j + 1] - s[j]) * (t - j) + s[j];
      }
    }
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.numInferenceSteps = n;
    this.initNoiseSigma = this.noiseSigma();
    return timesteps;
  }

  private checkIndex(op: string, i: number): void {
    if (!this.numInferenceSteps) throw new SchedulerError(`EulerAncestral.${op}: call setTimesteps(n) first`);
    if (!Number.isInteger(i) || i < 0 || i >= this.numInferenceSteps) {
      throw new SchedulerError(
        `EulerAncestral.${op}: step index ${i} is outside [0, ${
          this.numInferenceSteps - 1
        }] (setTimesteps(${this.numInferenceSteps}))`,
      );
    }
  }

  /** Step index of a timestep of the current schedule (diffusers' _init_step_index picks the second match). */
  indexOf(t: number): number {
    const hits = [...this.timesteps.keys()].filter((i) => this.timesteps[i] === f32(t));
    if (!hits.length) throw new SchedulerError(`EulerAncestral: timestep ${t} is not in the current schedule`);
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /** Records latents = noise * init_noise_sigma (a new tensor). */
  scaleInitNoise(noise: Tensor): Tensor {
    return scaleAdd(noise.shape, [{ x: noise, w: this.initNoiseSigma }]);
  }

  /** Records x / sqrt(sigma_i^2 + 1) (a new tensor). */
  scaleModelInput(x: Tensor, i: number): Tensor {
    this.checkIndex("scaleModelInput", i);
    const s = this.sigmas[i];
    return scaleAdd(x.shape, [{ x, w: 1 / Math.sqrt(s * s + 1) }]);
  }

  /** Coefficients of step i in float64 from the float32 sigmas. */
  coefficients(i: number): EulerCoefficients {
    this.checkIndex("step", i);
    const sigma = this.sigmas[i], to = this.sigmas[i + 1];
    const sigmaUp = Math.sqrt(to * to * (sigma * sigma - to * to) / (sigma * sigma));
    const sigmaDown = Math.sqrt(Math.max(0, to * to - sigmaUp * sigmaUp));
    const dt = sigmaDown - sigma;
    // derivative = (x - x0)/sigma: for epsilon x0 = x - sigma*eps, so prev = x + dt*eps exactly;
    // for v_prediction x0 = -sigma/sqrt(s^2+1)*v + x/(s^2+1).
    if (this.cfg.prediction_type === "v_prediction") {
      const s2 = sigma * sigma + 1;
      return { x: 1 + dt * sigma / s2, eps: dt / Math.sqrt(s2), noise: sigmaUp, sigma, sigmaUp, sigmaDown };
    }
    return { x: 1, eps: dt, noise: sigmaUp, sigma, sigmaUp, sigmaDown };
  }

  /** Records the predicted clean sample of step i (x0 = x - sigma * eps, or the v-prediction form): previews. */
  predictX0(eps: Tensor, i: number, x: Tensor): Tensor {
    this.checkIndex("predictX0", i);
    const sigma = this.sigmas[i];
    if (this.cfg.prediction_type === "v_prediction") {
      const s2 = sigma * sigma + 1;
      return scaleAdd(x.shape, [{ x, w: 1 / s2 }, { x: eps, w: -sigma / Math.sqrt(s2) }]);
    }
    return scaleAdd(x.shape, [{ x, w: 1 }, { x: eps, w: -sigma }]);
  }

  /**
   * Records prev = step i from x with model output `eps` and this step's injected N(0,1) `noise` (diffusers draws
   * it at every step, also the last where sigma_up = 0). Returns a new tensor; inputs are not modified.
   */
  step(eps: Tensor, i: number, x: Tensor, noise: Tensor): Tensor {
    const op = "EulerAncestral.step";
    const c = this.coefficients(i);
    assertShape(op, "model output", eps, x.shape);
    assertShape(op, "noise", noise, x.shape);
    if (eps.dtype !== x.dtype || noise.dtype !== x.dtype) {
      throw new GpuError(`${op}: mixed dtypes (model output ${eps.dtype}, sample ${x.dtype}, noise ${noise.dtype})`);
    }
    return scaleAdd(x.shape, [{ x, w: c.x }, { x: eps, w: c.eps }, { x: noise, w: c.noise }]);
  }
}
