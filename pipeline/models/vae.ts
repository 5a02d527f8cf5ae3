// AutoencoderKL (diffusers): Encoder -> quant_conv -> diagonal Gaussian; post_quant_conv -> Decoder.
import type { Device, DType } from "../gpu/device.ts";
import { consume, empty, scoped, type Tensor } from "../gpu/tensor.ts";
import { attention } from "../ops/attention.ts";
import { binary, unary } from "../ops/elementwise.ts";
import { blockCopy, transposeLast2, upsampleNearest } from "../ops/layout.ts";
import { loadResnet, type Resnet, resnet } from "./blocks.ts";
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
  /** to_q, to_k, to_v stacked: one GEMM, read in place by attention. */
  to_qkv: Linear;
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
    // Each step consumes the activation it replaces, so only one full-resolution map lives at a time.
    let x = applyConv(e.convIn, image);
    e.blocks.forEach((b) => {
      for (const r of b.resnets) x = consume(x, (x) => resnet(r, x, undefined, g, EPS));
      // diffusers pads (0, 1, 0, 1) then convolves with stride 2 and no padding.
      if (b.resample) x = consume(x, (x) => applyConv(b.resample!, x, { stride: 2, padding: [0, 1, 0, 1] }));
    });
    return consume(x, (x) => this.encodeEnd(x));
  }

  /** The encoder past its down blocks, at the latents' resolution: the mid block (attention over the whole frame),
   *  conv_out and quant_conv -> posterior. The banded encode (vae_bands.ts) ends here too. */
  encodeEnd(x: Tensor): Posterior {
    const e = this.encoder!, quantConv = this.quantConv!, g = this.cfg.norm_num_groups;
    return consume(this.mid(e.mid, x), (x) => {
      const moments = applyConv(quantConv, applyConv(e.convOut, applyGroupNorm(e.normOut, x, g, EPS, true)));
      const lc = this.cfg.latent_channels;
      const logvar = unary("clamp", sliceChannels(moments, lc, lc), { lo: -30, hi: 20 });
      return { mean: sliceChannels(moments, 0, lc), logvar, std: unary("exp", logvar, { alpha: 0.5 }) };
    });
  }

  /** latent = mean + std * noise (noise injected by the caller's noise source). */
  sample(post: Posterior, noise: Tensor): Tensor {
    return scoped(noise.dev, () => binary("add", post.mean, binary("mul", post.std, noise)));
  }

  /** latents [B, C, h, w] in UNet space (scaled) -> decoder output `sample` [B, 3, H, W] (about [-1, 1]). */
  decode(latents: Tensor): Tensor {
    const g = this.cfg.norm_num_groups;
    const d = this.decoder;
    // Each step consumes the activation it replaces, so only one full-resolution map lives at a time.
    let x = this.decodeStart(latents);
    d.blocks.forEach((b) => {
      for (const r of b.resnets) x = consume(x, (x) => resnet(r, x, undefined, g, EPS));
      const up = b.resample;
      if (up) x = consume(x, (x) => applyConv(up, upsampleNearest(x, x.shape[2] * 2, x.shape[3] * 2)));
    });
    return consume(x, (x) => applyConv(d.convOut, applyGroupNorm(d.normOut, x, g, EPS, true)));
  }

  /** The decoder up to its up blocks, at the latents' resolution: conv_in and the mid block (whose attention sees
   *  the whole frame). The banded decode (vae_bands.ts) starts from here too. */
  decodeStart(latents: Tensor): Tensor {
    const x = unary("identity", latents, { alpha: 1 / this.cfg.scaling_factor });
    return consume(x, (x) => {
      const h = applyConv(this.decoder.convIn, applyConv(this.postQuantConv, x));
      return consume(h, (h) => this.mid(this.decoder.mid, h));
    });
  }

  /** Decoder output -> image clamp(sample / 2 + 0.5, 0, 1), NCHW or (for video frames) NHWC. */
  static toImage(sample: Tensor, layout: "nchw" | "nhwc"): Tensor {
    const img = unary("clamp01", sample, { alpha: 0.5, beta: 0.5 });
    if (layout === "nchw") return img;
    const [B, C, H, W] = img.shape;
    return consume(img, (img) => transposeLast2(img.view([B, C, H * W]))).reshape([B, H, W, C]);
  }

  private mid(m: Mid, x: Tensor): Tensor {
    const g = this.cfg.norm_num_groups, attn = m.attention;
    let h = resnet(m.resnets[0], x, undefined, g, EPS);
    if (attn) h = consume(h, (h) => vaeAttention(attn, h, g));
    return consume(h, (h) => resnet(m.resnets[1], h, undefined, g, EPS));
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
          to_qkv: (await p.linearStack([`${attn}.to_q`, `${attn}.to_k`, `${attn}.to_v`])).linear,
          to_out: await p.linear(`${attn}.to_out.0`),
        }
        : undefined,
    },
    normOut: await p.norm(`${name}.conv_norm_out`),
    convOut: await p.conv(`${name}.conv_out`),
  };
}

/** Single-head spatial self-attention with a residual connection (the VAE mid block): the Q/K/V GEMM reads the
 *  normalised feature map and to_out writes the feature map plus x, with no transposes. */
function vaeAttention(a: VaeAttention, x: Tensor, groups: number): Tensor {
  const [, C, H, W] = x.shape;
  return scoped(x.dev, () => {
    const qkv = applyLinear(a.to_qkv, applyGroupNorm(a.group_norm, x, groups, EPS), { xChannelsFirst: true });
    const col = (i: number) => ({ t: qkv, col: i * C, width: C });
    const o = attention(col(0), col(1), col(2), 1);
    return applyLinear(a.to_out, o, { yChannelsFirst: [H, W], residual: x });
  });
}

/** Channels [start, start+count) of an NCHW tensor: one strided block copy (any plane size, f16 odd ones too). */
function sliceChannels(x: Tensor, start: number, count: number): Tensor {
  const [B, C, H, W] = x.shape, plane = H * W;
  const out = empty(x.dev, [B, count, H, W], x.dtype);
  blockCopy(x, out, {
    n: B * count * plane,
    blk: count * plane,
    ss: C * plane,
    ds: count * plane,
    so: start * plane,
    do: 0,
  });
  return out;
}
