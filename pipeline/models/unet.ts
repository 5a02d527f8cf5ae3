// UNet2DConditionModel (diffusers), driven by its config.json. The forward pass reads top to bottom as in
// diffusers: time embedding, conv_in, down blocks (collecting skips), mid block, up blocks, conv_out.
import type { Device, DType } from "../gpu/device.ts";
import { adopt, consume, scoped, type Tensor, uploadOwned } from "../gpu/tensor.ts";
import { binary } from "../ops/elementwise.ts";
import { concat, upsampleNearest } from "../ops/layout.ts";
import {
  type AttnContext,
  dropContextKV,
  loadResnet,
  loadTransformer2D,
  type Resnet,
  resnet,
  TimeProjections,
  timestepEmbedding,
  type Transformer2D,
  transformer2D,
} from "./blocks.ts";
import {
  applyConv,
  applyGroupNorm,
  applyLinear,
  type Conv,
  type Linear,
  type Norm,
  Params,
  type TensorSource,
} from "./layers.ts";

export interface UNetConfig {
  in_channels: number;
  out_channels: number;
  block_out_channels: number[];
  layers_per_block: number | number[];
  down_block_types: string[];
  up_block_types: string[];
  mid_block_type?: string | null;
  attention_head_dim: number | number[];
  num_attention_heads?: number | number[] | null;
  cross_attention_dim: number | number[];
  norm_num_groups: number;
  norm_eps: number;
  use_linear_projection?: boolean;
  flip_sin_to_cos?: boolean;
  freq_shift?: number;
  upcast_attention?: boolean;
  sample_size?: number;
}

/** SD 1.5's UNet config: the default for single-file checkpoints without a config. */
export const SD15_UNET: UNetConfig = {
  in_channels: 4,
  out_channels: 4,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  attention_head_dim: 8,
  cross_attention_dim: 768,
  norm_num_groups: 32,
  norm_eps: 1e-5,
  use_linear_projection: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  sample_size: 64,
};

export interface DownBlock {
  resnets: Resnet[];
  attentions: Transformer2D[];
  downsample?: Conv;
}
export interface MidBlock {
  resnets: Resnet[];
  attention?: Transformer2D;
}
export interface UpBlock {
  resnets: Resnet[];
  attentions: Transformer2D[];
  upsample?: Conv;
}

const perBlock = <T>(v: T | T[], n: number): T[] => Array.isArray(v) ? v : Array(n).fill(v);

/** Heads per down block: `num_attention_heads`, else (diffusers' naming quirk) `attention_head_dim`. */
export function headsPerBlock(cfg: EncoderConfig): number[] {
  return perBlock(cfg.num_attention_heads ?? cfg.attention_head_dim, cfg.down_block_types.length);
}

/** The config keys the encoder half needs (ControlNet configs have no up blocks). */
export type EncoderConfig = Omit<UNetConfig, "up_block_types" | "out_channels">;

/** The part of the UNet that ControlNet copies: time embedding, conv_in, down blocks and mid block. */
export class UNetEncoder<C extends EncoderConfig = EncoderConfig> {
  timeLinear1!: Linear;
  timeLinear2!: Linear;
  convIn!: Conv;
  down: DownBlock[] = [];
  mid!: MidBlock;
  /** Every resnet's time_emb_proj as one GEMM. */
  readonly timeProj = new TimeProjections();
  /** Sinusoidal timestep inputs by timestep list (LRU). */
  private sinusoids = new Map<string, Tensor>();

  constructor(readonly cfg: C, readonly params: Params) {}

  protected async loadEncoder(): Promise<void> {
    const p = this.params, cfg = this.cfg;
    const heads = headsPerBlock(cfg);
    const layers = perBlock(cfg.layers_per_block, cfg.down_block_types.length);
    const groups = cfg.norm_num_groups, lin = !!cfg.use_linear_projection;
    this.timeLinear1 = await p.linear("time_embedding.linear_1", cfg.block_out_channels[0]);
    this.timeLinear2 = await p.linear("time_embedding.linear_2");
    this.convIn = await p.conv("conv_in", cfg.in_channels, cfg.block_out_channels[0]);
    for (let i = 0; i < cfg.down_block_types.length; i++) {
      const name = `down_blocks.${i}`;
      const hasAttn = cfg.down_block_types[i].startsWith("CrossAttn");
      const block: DownBlock = { resnets: [], attentions: [] };
      for (let j = 0; j < layers[i]; j++) {
        block.resnets.push(await loadResnet(p, `${name}.resnets.${j}`, this.timeProj));
        if (hasAttn) {
          block.attentions.push(await loadTransformer2D(p, `${name}.attentions.${j}`, heads[i], groups, lin));
        }
      }
      if (i < cfg.down_block_types.length - 1) block.downsample = await p.conv(`${name}.downsamplers.0.conv`);
      this.down.push(block);
    }
    const midAttn = (cfg.mid_block_type ?? "UNetMidBlock2DCrossAttn") === "UNetMidBlock2DCrossAttn";
    this.mid = {
      resnets: [
        await loadResnet(p, "mid_block.resnets.0", this.timeProj),
        await loadResnet(p, "mid_block.resnets.1", this.timeProj),
      ],
      attention: midAttn
        ? await loadTransformer2D(p, "mid_block.attentions.0", heads[heads.length - 1], groups, lin)
        : undefined,
    };
  }

  /**
   * Every resnet's time_emb_proj(silu(time_embedding(t))), stacked (TimeProjections): [1, total] when the whole batch
   * shares one timestep (the resnets broadcast it over the batch), else [batch, total]. The sinusoidal input is
   * computed on the CPU in float64 and kept in a small cache of mapped-at-creation buffers: no queue write, so a
   * step's work stays in one command buffer.
   */
  protected timeEmbedding(timesteps: number[], batch: number): Tensor {
    if (timesteps.length !== 1 && timesteps.length !== batch) {
      throw new Error(`unet: ${timesteps.length} timesteps for a batch of ${batch}`);
    }
    const ts = timesteps.every((t) => t === timesteps[0]) ? [timesteps[0]] : timesteps;
    const key = ts.join(",");
    let t = this.sinusoids.get(key);
    if (t) this.sinusoids.delete(key);
    else {
      const c0 = this.cfg.block_out_channels[0];
      const sin = timestepEmbedding(ts, c0, this.cfg.flip_sin_to_cos ?? true, this.cfg.freq_shift ?? 0);
      t = uploadOwned(this.params.dev, sin, [ts.length, c0], this.params.dtype);
      if (this.sinusoids.size >= 256) {
        const [oldest, old] = this.sinusoids.entries().next().value!;
        this.sinusoids.delete(oldest);
        old.release();
      }
    }
    this.sinusoids.set(key, t); // most recently used last
    const sin = t;
    return scoped(this.params.dev, () => {
      // diffusers: linear_2(silu(linear_1(t))), then each resnet's silu before its projection.
      const h = applyLinear(this.timeLinear1, sin, { silu: true });
      return this.timeProj.project(applyLinear(this.timeLinear2, h, { silu: true }));
    });
  }

  /** Down blocks: returns the output and every skip tensor (conv_in output first), as diffusers orders them. */
  protected encode(x: Tensor, temb: Tensor, context: Tensor, ctx: AttnContext): { x: Tensor; skips: Tensor[] } {
    const groups = this.cfg.norm_num_groups, eps = this.cfg.norm_eps;
    const skips: Tensor[] = [x];
    for (const block of this.down) {
      for (let j = 0; j < block.resnets.length; j++) {
        const attn = block.attentions[j];
        x = scoped(x.dev, () => {
          const r = resnet(block.resnets[j], x, temb, groups, eps);
          return attn ? transformer2D(attn, r, context, ctx) : r;
        });
        skips.push(x);
      }
      if (block.downsample) {
        x = applyConv(block.downsample, x, { stride: 2, padding: 1 });
        skips.push(x);
      }
    }
    return { x, skips };
  }

  protected midBlock(x: Tensor, temb: Tensor, context: Tensor, ctx: AttnContext): Tensor {
    const groups = this.cfg.norm_num_groups, eps = this.cfg.norm_eps;
    return scoped(x.dev, () => {
      let h = resnet(this.mid.resnets[0], x, temb, groups, eps);
      if (this.mid.attention) h = transformer2D(this.mid.attention, h, context, ctx);
      return resnet(this.mid.resnets[1], h, temb, groups, eps);
    });
  }

  /** Every Transformer2DModel of the model (encoder half; the UNet adds its up blocks). */
  protected transformers(): Transformer2D[] {
    const mid = this.mid?.attention ? [this.mid.attention] : [];
    return [...this.down.flatMap((b) => b.attentions), ...mid];
  }

  dispose(): void {
    for (const t of this.transformers()) for (const b of t.blocks) dropContextKV(b.attn2);
    for (const t of this.sinusoids.values()) t.release();
    this.sinusoids.clear();
    this.params.dispose();
  }
}

export interface UNetCall {
  /** [B, in_channels, h, w] */
  sample: Tensor;
  /** One timestep for the batch, or one per sample. */
  timesteps: number[];
  /** Prompt embeddings [Bc, 77, cross_attention_dim]; Bc may divide B ([uncond, cond] for B = 2F). Not rewritten
   *  while it lives: cross-attention caches its K/V per context tensor. */
  context: Tensor;
  /** ControlNet residuals, one per skip, and for the mid block. */
  downResiduals?: Tensor[];
  midResidual?: Tensor;
  attn?: AttnContext;
}

export class UNet extends UNetEncoder<UNetConfig> {
  up: UpBlock[] = [];
  normOut!: Norm;
  convOut!: Conv;

  protected override transformers(): Transformer2D[] {
    return [...super.transformers(), ...this.up.flatMap((b) => b.attentions)];
  }

  static async load(dev: Device, src: TensorSource, cfg: UNetConfig, dtype: DType): Promise<UNet> {
    const u = new UNet(cfg, new Params(dev, src, dtype, "unet"));
    try {
      await u.loadEncoder();
      const p = u.params;
      const heads = [...headsPerBlock(cfg)].reverse();
      const layers = [...perBlock(cfg.layers_per_block, cfg.up_block_types.length)].reverse();
      for (let i = 0; i < cfg.up_block_types.length; i++) {
        const name = `up_blocks.${i}`;
        const hasAttn = cfg.up_block_types[i].startsWith("CrossAttn");
        const block: UpBlock = { resnets: [], attentions: [] };
        for (let j = 0; j < layers[i] + 1; j++) {
          block.resnets.push(await loadResnet(p, `${name}.resnets.${j}`, u.timeProj));
          if (hasAttn) {
            block.attentions.push(
              await loadTransformer2D(
                p,
                `${name}.attentions.${j}`,
                heads[i],
                cfg.norm_num_groups,
                !!cfg.use_linear_projection,
              ),
            );
          }
        }
        if (i < cfg.up_block_types.length - 1) block.upsample = await p.conv(`${name}.upsamplers.0.conv`);
        u.up.push(block);
      }
      u.normOut = await p.norm("conv_norm_out");
      u.convOut = await p.conv("conv_out", undefined, cfg.out_channels);
      await u.timeProj.load(p);
    } catch (e) {
      u.dispose();
      throw e;
    }
    return u;
  }

  /** The predicted noise [B, out_channels, h, w]. Records GPU work only; nothing is read back. */
  forward(call: UNetCall): Tensor {
    const { sample, context } = call;
    const ctx = call.attn ?? {};
    const [B, C] = sample.shape;
    if (sample.shape.length !== 4 || C !== this.cfg.in_channels) {
      throw new Error(`unet: sample has shape [${sample.shape}], expected [B, ${this.cfg.in_channels}, h, w]`);
    }
    const groups = this.cfg.norm_num_groups, eps = this.cfg.norm_eps;
    return scoped(sample.dev, () => {
      const temb = this.timeEmbedding(call.timesteps, B);
      const { x, skips } = this.encode(applyConv(this.convIn, sample), temb, context, ctx);
      const res = call.downResiduals;
      if (res && res.length !== skips.length) {
        throw new Error(`unet: ${res.length} ControlNet residuals for ${skips.length} skips`);
      }
      // The mid block still takes the plain last output (diffusers adds residuals to the skips only).
      const ups = res
        ? scoped(sample.dev, () => {
          adopt(...skips.filter((s) => s !== x));
          return skips.map((s, i) => binary("add", s, res[i]));
        })
        : skips;
      let h = res ? consume(x, (x) => this.midBlock(x, temb, context, ctx)) : this.midBlock(x, temb, context, ctx);
      if (call.midResidual) {
        const mid = call.midResidual;
        h = consume(h, (h) => binary("add", h, mid));
      }

      for (const block of this.up) {
        for (let j = 0; j < block.resnets.length; j++) {
          const skip = ups.pop()!, attn = block.attentions[j];
          h = scoped(sample.dev, () => {
            adopt(h, skip);
            const r = resnet(block.resnets[j], concat([h, skip]), temb, groups, eps);
            return attn ? transformer2D(attn, r, context, ctx) : r;
          });
        }
        if (block.upsample) {
          // Upsample to the next skip's size (x2, or the odd size a non-divisible latent needs).
          const next = ups[ups.length - 1];
          h = consume(h, (h) => applyConv(block.upsample!, upsampleNearest(h, next.shape[2], next.shape[3])));
        }
      }
      return applyConv(this.convOut, applyGroupNorm(this.normOut, h, groups, eps, true));
    });
  }
}
