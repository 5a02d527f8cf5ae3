// Golden handlers for the model kinds: text encoder, UNet (plain, cross-frame, ControlNet residuals), ControlNet,
// VAE decode/encode. Each loads the model through the same loader the pipelines use.
import { type Tensor, upload } from "../../../pipeline/gpu/tensor.ts";
import { unary } from "../../../pipeline/ops/elementwise.ts";
import { ClipTextModel } from "../../../pipeline/models/clip.ts";
import { ControlNet } from "../../../pipeline/models/controlnet.ts";
import { UNet } from "../../../pipeline/models/unet.ts";
import { VAE } from "../../../pipeline/models/vae.ts";
import { loadComponent } from "../../../pipeline/weights/diffusers.ts";
import type { WeightSource } from "../../../pipeline/weights/source.ts";
import type { CaseContext, CaseOutputs, Handler } from "../types.ts";

/** A model folder's config and weights; the weights are read at load and closed right after. */
async function withModel<R>(ctx: CaseContext, load: (config: never, weights: WeightSource) => Promise<R>): Promise<R> {
  const c = await loadComponent(ctx.modelPath(), "");
  try {
    return await load(c.config as never, c.weights);
  } finally {
    c.weights.close();
  }
}

async function tensorInput(ctx: CaseContext, name: string): Promise<Tensor> {
  const { data, shape } = await ctx.input(name);
  return upload(ctx.dev, data, shape, ctx.precision);
}

async function read(...ts: Tensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) out.push(await t.read());
  for (const t of ts) t.release();
  return out;
}

async function textEncoder(ctx: CaseContext): Promise<CaseOutputs> {
  const m = await withModel(ctx, (config, weights) => ClipTextModel.load(ctx.dev, weights, config, ctx.precision));
  try {
    const ids = await ctx.data.int32("input_ids");
    const batch = ctx.data.info("input_ids").shape[0];
    const [h] = await read(m.forward(ids, batch));
    return { last_hidden_state: h };
  } finally {
    m.dispose();
  }
}

function unetHandler(crossFrame: boolean, residuals: boolean): Handler {
  return async (ctx) => {
    const unet = await withModel(ctx, (config, weights) => UNet.load(ctx.dev, weights, config, ctx.precision));
    const inputs: Tensor[] = [];
    try {
      const sample = await tensorInput(ctx, "sample");
      const context = await tensorInput(ctx, "encoder_hidden_states");
      inputs.push(sample, context);
      const timesteps = Array.from((await ctx.input("timestep")).data);
      let downResiduals: Tensor[] | undefined, midResidual: Tensor | undefined;
      if (residuals) {
        const n = ctx.c.params.num_down_residuals as number;
        downResiduals = [];
        for (let i = 0; i < n; i++) downResiduals.push(await tensorInput(ctx, `down_block_additional_residual_${i}`));
        midResidual = await tensorInput(ctx, "mid_block_additional_residual");
        inputs.push(...downResiduals, midResidual);
      }
      const attn = crossFrame ? { crossFrame: { groups: ctx.c.params.processor_batch_size as number } } : undefined;
      const [noise] = await read(unet.forward({ sample, timesteps, context, downResiduals, midResidual, attn }));
      return { noise_pred: noise };
    } finally {
      inputs.forEach((t) => t.release());
      unet.dispose();
    }
  };
}

function controlnetHandler(crossFrame: boolean): Handler {
  return async (ctx) => {
    const cn = await withModel(ctx, (config, weights) => ControlNet.load(ctx.dev, weights, config, ctx.precision));
    const inputs: Tensor[] = [];
    try {
      const sample = await tensorInput(ctx, "sample");
      const context = await tensorInput(ctx, "encoder_hidden_states");
      const cond = await tensorInput(ctx, "controlnet_cond");
      inputs.push(sample, context, cond);
      const timesteps = Array.from((await ctx.input("timestep")).data);
      const attn = crossFrame ? { crossFrame: { groups: ctx.c.params.processor_batch_size as number } } : undefined;
      const scale = ctx.c.params.conditioning_scale as number;
      const { down, mid } = cn.forward({ sample, timesteps, context, cond, scale, attn });
      const vals = await read(...down, mid);
      const out: CaseOutputs = { mid_block_res_sample: vals[down.length] };
      down.forEach((_, i) => out[`down_block_res_sample_${i}`] = vals[i]);
      return out;
    } finally {
      inputs.forEach((t) => t.release());
      cn.dispose();
    }
  };
}

async function vaeDecode(ctx: CaseContext): Promise<CaseOutputs> {
  const vae = await withModel(ctx, (config, weights) => VAE.load(ctx.dev, weights, config, ctx.precision, true));
  try {
    const latents = await tensorInput(ctx, "latents");
    const sample = vae.decode(latents);
    const image = VAE.toImage(sample, "nchw");
    latents.release();
    const [s, i] = await read(sample, image);
    return { sample: s, image: i };
  } finally {
    vae.dispose();
  }
}

async function vaeEncode(ctx: CaseContext): Promise<CaseOutputs> {
  const vae = await withModel(ctx, (config, weights) => VAE.load(ctx.dev, weights, config, ctx.precision));
  try {
    const image = await tensorInput(ctx, "image");
    const noise = await tensorInput(ctx, "noise");
    const post = vae.encode(image);
    const z = vae.sample(post, noise);
    const scaled = unary("identity", z, { alpha: vae.cfg.scaling_factor });
    image.release(), noise.release();
    const [mean, logvar, std, latent, sc] = await read(post.mean, post.logvar, post.std, z, scaled);
    return { mean, logvar, std, latent_sample: latent, scaled_latent_sample: sc, mode: mean };
  } finally {
    vae.dispose();
  }
}

export const handlers: Record<string, Handler> = {
  text_encoder: textEncoder,
  unet: async (ctx) => {
    const residuals = ctx.c.inputs.some((n) => n.startsWith("down_block_additional_residual_"));
    return await unetHandler(false, residuals)(ctx);
  },
  unet_cross_frame: unetHandler(true, false),
  controlnet: controlnetHandler(false),
  controlnet_cross_frame: controlnetHandler(true),
  vae_decode: vaeDecode,
  vae_encode: vaeEncode,
};
