// Golden handlers for the scheduler and Text2Video-Zero latent kinds: tables and timesteps come from the CPU-side
// schedulers; every tensor output is computed by the GPU kernels (stored as f16 on the GPU at --precision f16).
import { concatF32 } from "../../../pipeline/modes/common.ts";
import { upload } from "../../../pipeline/gpu/tensor.ts";
import type { Tensor } from "../../../pipeline/gpu/tensor.ts";
import { loadSchedulerConfig } from "../../../pipeline/schedulers/config.ts";
import { DDIM } from "../../../pipeline/schedulers/ddim.ts";
import { ddpmForward, forwardAlphaVec, forwardTimesteps } from "../../../pipeline/schedulers/ddpm_forward.ts";
import { EulerAncestral } from "../../../pipeline/schedulers/euler_ancestral.ts";
import { motionFlow, motionGrid, warpLatents } from "../../../pipeline/modes/motion.ts";
import type { CaseContext, Handler } from "../types.ts";

/** Slice i of a [steps, ...] input, uploaded in the storage dtype. */
function uploadSlice(ctx: CaseContext, x: { data: Float32Array; shape: number[] }, i: number): Tensor {
  const shape = x.shape.slice(1), n = shape.reduce((p, d) => p * d, 1);
  return upload(ctx.dev, x.data.subarray(i * n, (i + 1) * n), shape, ctx.dev.dtypeFor(ctx.precision));
}

async function readAll(ts: Tensor[]): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for (const t of ts) parts.push(await t.read());
  for (const t of ts) t.release();
  return concatF32(parts);
}

const scheduler_ddim: Handler = async (ctx) => {
  const p = ctx.c.params as { num_inference_steps: number; eta: number; step_timesteps: number[] };
  const ddim = new DDIM(await loadSchedulerConfig(ctx.modelPath()));
  const timesteps = ddim.setTimesteps(p.num_inference_steps);
  const eps = await ctx.input("model_output"), sample = await ctx.input("sample");
  // eta > 0 draws noise inside step(); a set that uses it injects it (diffusers calls it variance_noise).
  const noiseName = ["variance_noise", "noise"].find((n) => ctx.c.inputs.includes(n));
  const noise = noiseName ? await ctx.input(noiseName) : null;
  if ((p.eta ?? 0) > 0 && !noise) throw new Error("eta > 0 needs an injected noise input (variance_noise)");
  const prev: Tensor[] = [], x0: Tensor[] = [];
  p.step_timesteps.forEach((t, i) => {
    const e = uploadSlice(ctx, eps, i), x = uploadSlice(ctx, sample, i);
    const z = noise ? uploadSlice(ctx, noise, i) : undefined;
    const r = ddim.step(e, t, x, { eta: p.eta ?? 0, noise: z });
    prev.push(r.prev), x0.push(r.x0);
    e.release(), x.release(), z?.release();
  });
  return {
    timesteps,
    alphas_cumprod: ddim.alphasCumprod,
    prev_sample: await readAll(prev),
    pred_original_sample: await readAll(x0),
  };
};

const scheduler_euler_ancestral: Handler = async (ctx) => {
  const p = ctx.c.params as { num_inference_steps: number };
  const euler = new EulerAncestral(await loadSchedulerConfig(ctx.modelPath()));
  const timesteps = euler.setTimesteps(p.num_inference_steps);
  const init = await ctx.input("initial_noise"),
    eps = await ctx.input("model_output"),
    noise = await ctx.input("noise");
  const dtype = ctx.dev.dtypeFor(ctx.precision);
  const n0 = upload(ctx.dev, init.data, init.shape, dtype);
  let x = euler.scaleInitNoise(n0);
  n0.release();
  // The whole loop is recorded without readback; per-step tensors are kept and read at the end.
  const scaled: Tensor[] = [], prev: Tensor[] = [];
  for (let i = 0; i < p.num_inference_steps; i++) {
    scaled.push(euler.scaleModelInput(x, i));
    const e = uploadSlice(ctx, eps, i), z = uploadSlice(ctx, noise, i);
    x = euler.step(e, i, x, z);
    prev.push(x);
    e.release(), z.release();
  }
  return {
    timesteps,
    sigmas: euler.sigmas,
    init_noise_sigma: [euler.initNoiseSigma],
    scaled_model_input: await readAll(scaled),
    prev_sample: await readAll(prev),
  };
};

const ddpm_forward: Handler = async (ctx) => {
  const p = ctx.c.params as { num_inference_steps: number; t0_index: number; t1_index: number; t0: number; t1: number };
  const cfg = await loadSchedulerConfig(ctx.modelPath());
  const { t0, t1 } = forwardTimesteps(new DDIM(cfg).setTimesteps(p.num_inference_steps), p.t0_index, p.t1_index);
  if (t0 !== p.t0 || t1 !== p.t1) throw new Error(`timesteps ${t0}/${t1} differ from the case's ${p.t0}/${p.t1}`);
  const dtype = ctx.dev.dtypeFor(ctx.precision);
  const x = await ctx.input("x_t0"), e = await ctx.input("eps");
  const tx = upload(ctx.dev, x.data, x.shape, dtype), te = upload(ctx.dev, e.data, e.shape, dtype);
  const y = ddpmForward(tx, te, t0, t1, cfg);
  tx.release(), te.release();
  return { x_t1: await readAll([y]), alpha_vec: [forwardAlphaVec(t0, t1, cfg)] };
};

const warp: Handler = async (ctx) => {
  const p = ctx.c.params as {
    motion_field_strength_x: number;
    motion_field_strength_y: number;
    frame_ids: number[];
    latent_height: number;
    latent_width: number;
  };
  const sx = p.motion_field_strength_x, sy = p.motion_field_strength_y;
  const lat = await ctx.input("latents");
  const t = upload(ctx.dev, lat.data, lat.shape, ctx.dev.dtypeFor(ctx.precision));
  const warped = warpLatents(t, p.frame_ids, sx, sy);
  t.release();
  return {
    warped: await readAll([warped]),
    grid: motionGrid(p.latent_height, p.latent_width, p.frame_ids, sx, sy),
    flow_xy: motionFlow(p.frame_ids, sx, sy),
  };
};

export const handlers: Record<string, Handler> = { scheduler_ddim, scheduler_euler_ancestral, ddpm_forward, warp };
