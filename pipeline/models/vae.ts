// AutoencoderKL (diffusers): Encoder -> quant_conv -> diagonal Gaussian; post_quant_conv -> Decoder.
import type { Device, DType } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { attention } from "../ops/attention.ts";
import { binary, unary } from "../ops/elementwise.ts";
import { transposeLast2, upsampleNearest } from "../ops/layout.ts";
import { loadResnet, type Resnet, resnet } from "./blocks.ts";
import {
  applyConv,
  applyGroupNorm,
  applyLinear,
  type Conv,
  free,
  type Linear,
  type Norm,
  Params,
  type TensorSource,
} from "./layers.ts";

export interface VAEConfig {
  in_channels: number;
  out_channels: number;
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  norm_num_groups: number;
  scaling_factor: number;
  mid_block_add_attention?: boolean;
  [key: string]: unknown;
}

const EPS = 1e-6;

interface VaeAttention {
  group_norm: Norm;
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  to_out: Linear;
}

interface Mid {
  resnets: [Resnet, Resnet];
  attention?: VaeAttention;
}

interface Coder {
  convIn: Conv;
  blocks: { resnets: Resnet[]; resample?: Conv }[];
  mid: Mid;
  normOut: Norm;
  convOut: Conv;
}

export interface Posterior {
  mean: Tensor;
  logvar: Tensor;
  std: Tensor;
}

export class VAE {
  encoder?: Coder;
  quantConv?: Conv;
  decoder!: Coder;
  postQuantConv!: Conv;

  private constructor(readonly cfg: VAEConfig, readonly params: Params) {}

  /** Loads the decoder, and the encoder too unless `decoderOnly` (text-to-video never encodes). */
  static async load(dev: Device, src: TensorSource, cfg: VAEConfig, dtype: DType, decoderOnly = false): Promise<VAE> {
    const v = new VAE(cfg, new Params(dev, src, dtype, "vae"));
    try {
      const p = v.params;
      const n = cfg.block_out_channels.length;
      if (!decoderOnly) {
        v.encoder = await loadCoder(p, "encoder", n, cfg.layers_per_block, "downsamplers");
        v.quantConv = await p.conv("quant_conv", 2 * cfg.latent_channels, 2 * cfg.latent_channels);
      }
      v.decoder = await loadCoder(p, "decoder", n, cfg.layers_per_block + 1, "upsamplers");
      v.postQuantConv = await p.conv("post_quant_conv", cfg.latent_channels, cfg.latent_channels);
    } catch (e) {
      v.dispose();
      throw e;
    }
    return v;
  }

  /** image [B, 3, H, W] in [-1, 1] -> posterior (mean, clamped logvar, std), unscaled latent space. */
  encode(image: Tensor): Posterior {
    if (!this.encoder || !this.quantConv) throw new Error("vae: loaded without its encoder");
    const g = this.cfg.norm_num_groups;
    const e = this.encoder;
    let x = applyConv(e.convIn, image);
    e.blocks.forEach((b) => {
      for (const r of b.resnets) x = step(x, resnet(r, x, undefined, g, EPS));
      // diffusers pads (0, 1, 0, 1) then convolves with stride 2 and no padding.
      if (b.resample) x = step(x, applyConv(b.resample, x, { stride: 2, padding: [0, 1, 0, 1] }));
    });
    x = step(x, this.mid(e.mid, x));
    x = step(x, applyGroupNorm(e.normOut, x, g, EPS, true));
    x = step(x, applyConv(e.convOut, x));
    const moments = step(x, applyConv(this.quantConv, x));
    const lc = this.cfg.latent_channels;
    const mean = sliceChannels(moments, 0, lc);
    const raw = sliceChannels(moments, lc, lc);
    free(moments);
    const logvar = unary("clamp", raw, { lo: -30, hi: 20 });
    free(raw);
    const std = unary("exp", logvar, { alpha: 0.5 });
    return { mean, logvar, std };
  }

  /** latent = mean + std * noise (noise injected by the caller's noise source). */
  sample(post: Posterior, noise: Tensor): Tensor {
    const sn = binary("mul", post.std, noise);
    const z = binary("add", post.mean, sn);
    free(sn);
    return z;
  }

  /** latents [B, C, h, w] in UNet space (scaled) -> decoder output `sample` [B, 3, H, W] (about [-1, 1]). */
  decode(latents: Tensor): Tensor {
    const g = this.cfg.norm_num_groups;
    const d = this.decoder;
    let x = unary("identity", latents, { alpha: 1 / this.cfg.scaling_factor });
    x = step(x, applyConv(this.postQuantConv, x));
    x = step(x, applyConv(d.convIn, x));
    x = step(x, this.mid(d.mid, x));
    d.blocks.forEach((b) => {
      for (const r of b.resnets) x = step(x, resnet(r, x, undefined, g, EPS));
      if (b.resample) {
        x = step(x, upsampleNearest(x, x.shape[2] * 2, x.shape[3] * 2));
        x = step(x, applyConv(b.resample, x));
      }
    });
    x = step(x, applyGroupNorm(d.normOut, x, g, EPS, true));
    return step(x, applyConv(d.convOut, x));
  }

  /** Decoder output -> image clamp(sample / 2 + 0.5, 0, 1), NCHW or (for video frames) NHWC. */
  static toImage(sample: Tensor, layout: "nchw" | "nhwc"): Tensor {
    const img = unary("clamp01", sample, { alpha: 0.5, beta: 0.5 });
    if (layout === "nchw") return img;
    const [B, C, H, W] = img.shape;
    const nhwc = transposeLast2(img.view([B, C, H * W]));
    free(img);
    return nhwc.reshape([B, H, W, C]);
  }

  private mid(m: Mid, x: Tensor): Tensor {
    const g = this.cfg.norm_num_groups;
    let h = resnet(m.resnets[0], x, undefined, g, EPS);
    if (m.attention) h = step(h, vaeAttention(m.attention, h, g));
    return step(h, resnet(m.resnets[1], h, undefined, g, EPS));
  }

  dispose(): void {
    this.params.dispose();
  }
}

async function loadCoder(p: Params, name: string, n: number, resnets: number, resample: string): Promise<Coder> {
  const blocks: Coder["blocks"] = [];
  const kind = resample === "downsamplers" ? "down_blocks" : "up_blocks";
  for (let i = 0; i < n; i++) {
    const b = `${name}.${kind}.${i}`;
    const rs: Resnet[] = [];
    for (let j = 0; j < resnets; j++) rs.push(await loadResnet(p, `${b}.resnets.${j}`));
    const conv = p.has(`${b}.${resample}.0.conv.weight`) ? await p.conv(`${b}.${resample}.0.conv`) : undefined;
    blocks.push({ resnets: rs, resample: conv });
  }
  const attn = `${name}.mid_block.attentions.0`;
  return {
    convIn: await p.conv(`${name}.conv_in`),
    blocks,
    mid: {
      resnets: [await loadResnet(p, `${name}.mid_block.resnets.0`), await loadResnet(p, `${name}.mid_block.resnets.1`)],
      attention: p.has(`${attn}.to_q.weight`)
        ? {
          group_norm: await p.norm(`${attn}.group_norm`),
          to_q: await p.linear(`${attn}.to_q`),
          to_k: await p.linear(`${attn}.to_k`),
          to_v: await p.linear(`${attn}.to_v`),
          to_out: await p.linear(`${attn}.to_out.0`),
        }
        : undefined,
    },
    normOut: await p.norm(`${name}.conv_norm_out`),
    convOut: await p.conv(`${name}.conv_out`),
  };
}

/** Single-head spatial self-attention with a residual connection (the VAE mid block). */
function vaeAttention(a: VaeAttention, x: Tensor, groups: number): Tensor {
  const [B, C, H, W] = x.shape;
  const n = applyGroupNorm(a.group_norm, x, groups, EPS);
  const tokens = transposeLast2(n.view([B, C, H * W]));
  const residual = transposeLast2(x.view([B, C, H * W]));
  free(n);
  const q = applyLinear(a.to_q, tokens), k = applyLinear(a.to_k, tokens), v = applyLinear(a.to_v, tokens);
  free(tokens);
  const o = attention(q, k, v, 1);
  free(q, k, v);
  const out = applyLinear(a.to_out, o, { residual });
  free(o, residual);
  const back = transposeLast2(out);
  free(out);
  return back.reshape([B, C, H, W]);
}

/** Channels [start, start+count) of an NCHW tensor, by one buffer copy per sample. */
function sliceChannels(x: Tensor, start: number, count: number): Tensor {
  const [B, C, H, W] = x.shape;
  const out = empty(x.dev, [B, count, H, W], x.dtype);
  const plane = H * W * (x.dtype === "f32" ? 4 : 2);
  if (plane % 4 !== 0) throw new Error(`vae: latent plane of ${H}x${W} ${x.dtype} is not 4-byte aligned`);
  for (let b = 0; b < B; b++) {
    x.dev.copy(
      { buffer: x.buffer, offset: x.offset + (b * C + start) * plane, size: count * plane },
      { buffer: out.buffer, offset: out.offset + b * count * plane, size: count * plane },
    );
  }
  return out;
}

/** Replace `prev` by `next`, releasing prev (keeps the forward pass readable). */
function step(prev: Tensor, next: Tensor): Tensor {
  if (prev !== next) free(prev);
  return next;
}
