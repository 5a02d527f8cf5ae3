// ControlNetModel (diffusers): a copy of the UNet's encoder whose input gets the embedded control image, and whose
// skips and mid output pass through zero-initialised 1x1 convs into residuals for the UNet.
import type { Device, DType } from "../gpu/device.ts";
import { consume, scoped, type Tensor } from "../gpu/tensor.ts";
import { unary } from "../ops/elementwise.ts";
import type { AttnContext } from "./blocks.ts";
import { applyConv, type Conv, Params, type TensorSource } from "./layers.ts";
import { type EncoderConfig, UNetEncoder } from "./unet.ts";

export type ControlNetConfig = EncoderConfig & {
  conditioning_embedding_out_channels?: number[];
  controlnet_conditioning_channel_order?: "rgb" | "bgr";
};

export interface ControlNetCall {
  sample: Tensor;
  timesteps: number[];
  context: Tensor;
  /** Control image in [0, 1], [B, 3, H, W] with H = 8h, W = 8w. */
  cond: Tensor;
  /** controlnet_conditioning_scale */
  scale: number;
  attn?: AttnContext;
}

export interface ControlNetResiduals {
  down: Tensor[];
  mid: Tensor;
}

export class ControlNet extends UNetEncoder<ControlNetConfig> {
  condIn!: Conv;
  condBlocks: Conv[] = [];
  condOut!: Conv;
  zeroDown: Conv[] = [];
  zeroMid!: Conv;

  static async load(dev: Device, src: TensorSource, cfg: ControlNetConfig, dtype: DType): Promise<ControlNet> {
    const c = new ControlNet(cfg, new Params(dev, src, dtype, "controlnet"));
    try {
      await c.loadEncoder();
      const p = c.params;
      if ((cfg.controlnet_conditioning_channel_order ?? "rgb") !== "rgb") {
        throw new Error("controlnet: only controlnet_conditioning_channel_order 'rgb' is supported");
      }
      c.condIn = await p.conv("controlnet_cond_embedding.conv_in", 3);
      for (let i = 0; p.has(`controlnet_cond_embedding.blocks.${i}.weight`); i++) {
        c.condBlocks.push(await p.conv(`controlnet_cond_embedding.blocks.${i}`));
      }
      c.condOut = await p.conv("controlnet_cond_embedding.conv_out", undefined, cfg.block_out_channels[0]);
      for (let i = 0; p.has(`controlnet_down_blocks.${i}.weight`); i++) {
        c.zeroDown.push(await p.conv(`controlnet_down_blocks.${i}`));
      }
      c.zeroMid = await p.conv("controlnet_mid_block");
      await c.timeProj.load(p);
    } catch (e) {
      c.dispose();
      throw e;
    }
    return c;
  }

  forward(call: ControlNetCall): ControlNetResiduals {
    const { sample, context, cond } = call;
    const ctx = call.attn ?? {};
    const B = sample.shape[0];
    if (cond.shape.length !== 4 || cond.shape[0] !== B || cond.shape[1] !== 3) {
      throw new Error(`controlnet: control image has shape [${cond.shape}], expected [${B}, 3, H, W]`);
    }
    return scoped(sample.dev, () => {
      const temb = this.timeEmbedding(call.timesteps, B);
      // ControlNetConditioningEmbedding: conv_in, silu, (conv, silu, conv stride 2, silu) per level, conv_out.
      let e = unary("silu", applyConv(this.condIn, cond));
      this.condBlocks.forEach((b, i) => {
        e = consume(e, (e) => unary("silu", applyConv(b, e, { stride: i % 2 === 1 ? 2 : 1, padding: 1 })));
      });
      const x0 = consume(e, (e) => applyConv(this.convIn, sample, { residual: applyConv(this.condOut, e) }));
      const { x, skips } = this.encode(x0, temb, context, ctx);
      const h = this.midBlock(x, temb, context, ctx);
      if (skips.length !== this.zeroDown.length) {
        throw new Error(`controlnet: ${skips.length} skips but ${this.zeroDown.length} controlnet_down_blocks`);
      }
      const down = skips.map((s, i) => scaled(applyConv(this.zeroDown[i], s), call.scale));
      const mid = scaled(applyConv(this.zeroMid, h), call.scale);
      return { down, mid };
    });
  }
}

function scaled(x: Tensor, s: number): Tensor {
  return s === 1 ? x : unary("identity", x, { alpha: s });
}
