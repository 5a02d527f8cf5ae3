// Text2Video-Zero's DDPM forward jump (diffusers TextToVideoZeroPipeline.forward_loop):
//   x_t1 = sqrt(A) * x_t0 + sqrt(1 - A) * eps,   A = prod(alphas[t0:t1])  (float32, t1 EXCLUSIVE)
// The exact DDPM marginal would be alphas_cumprod[t1] / alphas_cumprod[t0] (factors t0+1..t1); the upstream code
// is off by one index and we copy it for parity (METHOD §1.4).
import { GpuError } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { assertShape } from "../ops/launch.ts";
import { noiseTables, type SchedulerConfig, SchedulerError, torchProdF32 } from "./config.ts";
import { scaleAdd } from "./guidance.ts";

/** alpha_vec = prod(alphas[t0:t1]) with PyTorch's float32 reduction order. t0/t1 are timesteps (e.g. 881, 941). */
export function forwardAlphaVec(t0: number, t1: number, cfg: SchedulerConfig): number {
  const N = cfg.num_train_timesteps;
  if (!Number.isInteger(t0) || !Number.isInteger(t1) || t0 < 0 || t1 > N || t0 >= t1) {
    throw new SchedulerError(`ddpmForward: need integer timesteps 0 <= t0 < t1 <= ${N}, got t0=${t0} t1=${t1}`);
  }
  return torchProdF32(noiseTables(cfg).alphas.subarray(t0, t1));
}

/**
 * Text2Video-Zero's t0/t1 are DDIM step indices counted from the end: T0 = timesteps[N-1-t0Index],
 * T1 = timesteps[N-1-t1Index] (defaults 44/47 with 50 steps give 881/941). Requires 0 <= t0Index < t1Index <= N-1
 * (diffusers crashes otherwise, issue #5365).
 */
export function forwardTimesteps(
  timesteps: ArrayLike<number>,
  t0Index: number,
  t1Index: number,
): { t0: number; t1: number } {
  const n = timesteps.length;
  if (
    !Number.isInteger(t0Index) || !Number.isInteger(t1Index) || t0Index < 0 || t0Index >= t1Index || t1Index > n - 1
  ) {
    throw new SchedulerError(
      `Text2Video-Zero needs integer step indices 0 <= t0 < t1 <= ${
        n - 1
      } for ${n} steps, got t0=${t0Index} t1=${t1Index}`,
    );
  }
  return { t0: timesteps[n - 1 - t0Index], t1: timesteps[n - 1 - t1Index] };
}

/** Records x_t1 = sqrt(A)*x_t0 + sqrt(1-A)*eps (a new tensor; coefficients in float64 from the float32 A). */
export function ddpmForward(xT0: Tensor, eps: Tensor, t0: number, t1: number, cfg: SchedulerConfig): Tensor {
  const a = forwardAlphaVec(t0, t1, cfg);
  assertShape("ddpmForward", "eps", eps, xT0.shape);
  if (eps.dtype !== xT0.dtype) throw new GpuError(`ddpmForward: eps is ${eps.dtype}, x_t0 is ${xT0.dtype}`);
  return scaleAdd(xT0.shape, [{ x: xT0, w: Math.sqrt(a) }, { x: eps, w: Math.sqrt(1 - a) }]);
}
