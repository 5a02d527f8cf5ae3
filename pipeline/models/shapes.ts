// Every parameter name and shape a diffusers model of a given config has. Used to build random-weight models
// (the SD 1.5-sized bench UNet, the built-in demo model) without any file.
import type { ClipTextConfig } from "./clip.ts";
import type { ControlNetConfig } from "./controlnet.ts";
import type { EncoderConfig, UNetConfig } from "./unet.ts";
import type { VAEConfig } from "./vae.ts";

export type ShapeMap = Map<string, number[]>;

const perBlock = <T>(v: T | T[], n: number): T[] => Array.isArray(v) ? v : Array(n).fill(v);

function linear(m: ShapeMap, name: string, inF: number, outF: number, bias = true) {
  m.set(`${name}.weight`, [outF, inF]);
  if (bias) m.set(`${name}.bias`, [outF]);
}
function conv(m: ShapeMap, name: string, cin: number, cout: number, k: number) {
  m.set(`${name}.weight`, [cout, cin, k, k]);
  m.set(`${name}.bias`, [cout]);
}
function norm(m: ShapeMap, name: string, c: number) {
  m.set(`${name}.weight`, [c]);
  m.set(`${name}.bias`, [c]);
}

function resnet(m: ShapeMap, name: string, cin: number, cout: number, temb?: number) {
  norm(m, `${name}.norm1`, cin);
  conv(m, `${name}.conv1`, cin, cout, 3);
  if (temb) linear(m, `${name}.time_emb_proj`, temb, cout);
  norm(m, `${name}.norm2`, cout);
  conv(m, `${name}.conv2`, cout, cout, 3);
  if (cin !== cout) conv(m, `${name}.conv_shortcut`, cin, cout, 1);
}

function transformer(m: ShapeMap, name: string, c: number, cross: number, linearProj: boolean) {
  norm(m, `${name}.norm`, c);
  const proj = (n: string) => linearProj ? linear(m, n, c, c) : conv(m, n, c, c, 1);
  proj(`${name}.proj_in`);
  const b = `${name}.transformer_blocks.0`;
  for (const [attn, kv] of [["attn1", c], ["attn2", cross]] as const) {
    linear(m, `${b}.${attn}.to_q`, c, c, false);
    linear(m, `${b}.${attn}.to_k`, kv, c, false);
    linear(m, `${b}.${attn}.to_v`, kv, c, false);
    linear(m, `${b}.${attn}.to_out.0`, c, c);
  }
  for (const n of ["norm1", "norm2", "norm3"]) norm(m, `${b}.${n}`, c);
  linear(m, `${b}.ff.net.0.proj`, c, 8 * c);
  linear(m, `${b}.ff.net.2`, 4 * c, c);
  proj(`${name}.proj_out`);
}

function encoderShapes(m: ShapeMap, cfg: EncoderConfig) {
  const boc = cfg.block_out_channels, c0 = boc[0], temb = 4 * c0, n = boc.length;
  const layers = perBlock(cfg.layers_per_block, n);
  const cross = perBlock(cfg.cross_attention_dim, n)[0];
  const lin = !!cfg.use_linear_projection;
  linear(m, "time_embedding.linear_1", c0, temb);
  linear(m, "time_embedding.linear_2", temb, temb);
  conv(m, "conv_in", cfg.in_channels, c0, 3);
  for (let i = 0; i < n; i++) {
    const out = boc[i], cin = i === 0 ? c0 : boc[i - 1];
    for (let j = 0; j < layers[i]; j++) {
      resnet(m, `down_blocks.${i}.resnets.${j}`, j === 0 ? cin : out, out, temb);
      if (cfg.down_block_types[i].startsWith("CrossAttn")) {
        transformer(m, `down_blocks.${i}.attentions.${j}`, out, cross, lin);
      }
    }
    if (i < n - 1) conv(m, `down_blocks.${i}.downsamplers.0.conv`, out, out, 3);
  }
  const cl = boc[n - 1];
  resnet(m, "mid_block.resnets.0", cl, cl, temb);
  transformer(m, "mid_block.attentions.0", cl, cross, lin);
  resnet(m, "mid_block.resnets.1", cl, cl, temb);
}

export function unetShapes(cfg: UNetConfig): ShapeMap {
  const m: ShapeMap = new Map();
  encoderShapes(m, cfg);
  const boc = cfg.block_out_channels, n = boc.length, temb = 4 * boc[0];
  const rev = [...boc].reverse();
  const layers = [...perBlock(cfg.layers_per_block, n)].reverse();
  const cross = perBlock(cfg.cross_attention_dim, n)[0];
  for (let i = 0; i < n; i++) {
    const out = rev[i], prev = i === 0 ? rev[0] : rev[i - 1], skipIn = rev[Math.min(i + 1, n - 1)];
    for (let j = 0; j <= layers[i]; j++) {
      const skip = j === layers[i] ? skipIn : out;
      resnet(m, `up_blocks.${i}.resnets.${j}`, (j === 0 ? prev : out) + skip, out, temb);
      if (cfg.up_block_types[i].startsWith("CrossAttn")) {
        transformer(m, `up_blocks.${i}.attentions.${j}`, out, cross, !!cfg.use_linear_projection);
      }
    }
    if (i < n - 1) conv(m, `up_blocks.${i}.upsamplers.0.conv`, out, out, 3);
  }
  norm(m, "conv_norm_out", boc[0]);
  conv(m, "conv_out", boc[0], cfg.out_channels, 3);
  return m;
}

export function controlnetShapes(cfg: ControlNetConfig): ShapeMap {
  const m: ShapeMap = new Map();
  encoderShapes(m, cfg);
  const ce = cfg.conditioning_embedding_out_channels ?? [16, 32, 96, 256];
  conv(m, "controlnet_cond_embedding.conv_in", 3, ce[0], 3);
  for (let i = 0; i < ce.length - 1; i++) {
    conv(m, `controlnet_cond_embedding.blocks.${2 * i}`, ce[i], ce[i], 3);
    conv(m, `controlnet_cond_embedding.blocks.${2 * i + 1}`, ce[i], ce[i + 1], 3);
  }
  conv(m, "controlnet_cond_embedding.conv_out", ce[ce.length - 1], cfg.block_out_channels[0], 3);
  const boc = cfg.block_out_channels, layers = perBlock(cfg.layers_per_block, boc.length);
  const skips = [boc[0]];
  boc.forEach((c, i) => {
    for (let j = 0; j < layers[i]; j++) skips.push(c);
    if (i < boc.length - 1) skips.push(c);
  });
  skips.forEach((c, i) => conv(m, `controlnet_down_blocks.${i}`, c, c, 1));
  conv(m, "controlnet_mid_block", boc[boc.length - 1], boc[boc.length - 1], 1);
  return m;
}

export function vaeShapes(cfg: VAEConfig): ShapeMap {
  const m: ShapeMap = new Map();
  const boc = cfg.block_out_channels, n = boc.length, lc = cfg.latent_channels;
  const attn = (name: string, c: number) => {
    norm(m, `${name}.group_norm`, c);
    for (const p of ["to_q", "to_k", "to_v", "to_out.0"]) linear(m, `${name}.${p}`, c, c);
  };
  const mid = (name: string, c: number) => {
    resnet(m, `${name}.mid_block.resnets.0`, c, c);
    attn(`${name}.mid_block.attentions.0`, c);
    resnet(m, `${name}.mid_block.resnets.1`, c, c);
  };
  conv(m, "encoder.conv_in", cfg.in_channels, boc[0], 3);
  for (let i = 0; i < n; i++) {
    const cin = i === 0 ? boc[0] : boc[i - 1];
    for (let j = 0; j < cfg.layers_per_block; j++) {
      resnet(m, `encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? cin : boc[i], boc[i]);
    }
    if (i < n - 1) conv(m, `encoder.down_blocks.${i}.downsamplers.0.conv`, boc[i], boc[i], 3);
  }
  mid("encoder", boc[n - 1]);
  norm(m, "encoder.conv_norm_out", boc[n - 1]);
  conv(m, "encoder.conv_out", boc[n - 1], 2 * lc, 3);
  conv(m, "quant_conv", 2 * lc, 2 * lc, 1);
  conv(m, "post_quant_conv", lc, lc, 1);
  const rev = [...boc].reverse();
  conv(m, "decoder.conv_in", lc, rev[0], 3);
  mid("decoder", rev[0]);
  for (let i = 0; i < n; i++) {
    const cin = i === 0 ? rev[0] : rev[i - 1];
    for (let j = 0; j <= cfg.layers_per_block; j++) {
      resnet(m, `decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? cin : rev[i], rev[i]);
    }
    if (i < n - 1) conv(m, `decoder.up_blocks.${i}.upsamplers.0.conv`, rev[i], rev[i], 3);
  }
  norm(m, "decoder.conv_norm_out", rev[n - 1]);
  conv(m, "decoder.conv_out", rev[n - 1], cfg.out_channels, 3);
  return m;
}

export function clipTextShapes(cfg: ClipTextConfig): ShapeMap {
  const m: ShapeMap = new Map();
  const d = cfg.hidden_size;
  m.set("text_model.embeddings.token_embedding.weight", [cfg.vocab_size, d]);
  m.set("text_model.embeddings.position_embedding.weight", [cfg.max_position_embeddings, d]);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const l = `text_model.encoder.layers.${i}`;
    for (const p of ["q_proj", "k_proj", "v_proj", "out_proj"]) linear(m, `${l}.self_attn.${p}`, d, d);
    norm(m, `${l}.layer_norm1`, d);
    norm(m, `${l}.layer_norm2`, d);
    linear(m, `${l}.mlp.fc1`, d, cfg.intermediate_size);
    linear(m, `${l}.mlp.fc2`, cfg.intermediate_size, d);
  }
  norm(m, "text_model.final_layer_norm", d);
  return m;
}
