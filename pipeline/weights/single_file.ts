// Original (CompVis / Stability) single-file SD 1.x / 2.x checkpoints, presented under diffusers names:
// model.diffusion_model.* -> unet, first_stage_model.* -> vae, cond_stage_model.* -> text_encoder.
// Tensors are renamed and reshaped (1x1 conv <-> linear), never copied; OpenCLIP's fused q/k/v are row ranges.
// The mapping follows diffusers' convert_original_stable_diffusion_to_diffusers / single_file_utils.
import { join } from "node:path";
import { Safetensors } from "./safetensors.ts";
import { type TensorRef, TensorTable } from "./source.ts";
import { type Component, type Json, loadConfig } from "./diffusers.ts";
import { WeightError } from "../errors.ts";

export type Family = "sd1" | "sd2";

export interface SingleFileOptions {
  /** A diffusers folder whose unet/vae/text_encoder (and scheduler, tokenizer) configs describe the checkpoint. */
  configDir?: string;
}

export interface SingleFileModel {
  path: string;
  family: Family;
  unet: Component;
  vae: Component;
  text_encoder: Component;
  /** Scheduler config: from configDir, else the family default. */
  scheduler: Json;
  /** `<configDir>/tokenizer` when it exists: a single file carries no tokenizer. */
  tokenizerDir: string | null;
  close(): void;
}

const UNET = "model.diffusion_model.";
const VAE = "first_stage_model.";
const CLIP = "cond_stage_model.transformer.";
const OPENCLIP = "cond_stage_model.model.";

export async function loadSingleFile(path: string, opts: SingleFileOptions = {}): Promise<SingleFileModel> {
  if (!/\.safetensors$/i.test(path)) {
    throw new WeightError(
      `${path}: only .safetensors single files are supported (.ckpt is PyTorch pickle, which can run code); ` +
        `convert it to safetensors first`,
    );
  }
  const file = await Safetensors.open(path);
  try {
    const keys = [...file.tensors.keys()];
    if (keys.some((k) => k.startsWith("conditioner.embedders."))) {
      throw new WeightError(`${path}: an SDXL checkpoint; only SD 1.x / 2.x single files are supported`);
    }
    for (const p of [UNET, VAE]) {
      if (!keys.some((k) => k.startsWith(p))) {
        throw new WeightError(`${path}: no "${p}*" tensors: not an original-layout Stable Diffusion checkpoint`);
      }
    }
    const openclip = keys.some((k) => k.startsWith(OPENCLIP));
    if (!openclip && !keys.some((k) => k.startsWith(CLIP))) {
      throw new WeightError(`${path}: no text encoder ("${CLIP}*" or "${OPENCLIP}*")`);
    }
    const family: Family = openclip ? "sd2" : "sd1";
    const defaults = family === "sd1" ? SD15 : SD21;
    let cfg: { unet: Json; vae: Json; text_encoder: Json; scheduler: Json };
    let tokenizerDir: string | null = null;
    if (opts.configDir) {
      const dir = opts.configDir;
      cfg = {
        unet: await loadConfig(dir, "unet"),
        vae: await loadConfig(dir, "vae"),
        text_encoder: await loadConfig(dir, "text_encoder"),
        scheduler: await isDir(join(dir, "scheduler"))
          ? await loadConfig(dir, "scheduler")
          : structuredClone(defaults.scheduler),
      };
      tokenizerDir = await isDir(join(dir, "tokenizer")) ? join(dir, "tokenizer") : null;
    } else {
      cfg = structuredClone(defaults);
      adaptDefaults(file, cfg.unet);
    }
    // The file closes when the model or all three components are closed.
    let users = 3;
    let closed = false;
    const closeFile = () => {
      if (!closed) file.close();
      closed = true;
    };
    const table = (name: string, e: Map<string, TensorRef>) =>
      new TensorTable(`${name} of ${path}`, e, () => --users === 0 && closeFile());
    const unet = { name: "unet", config: cfg.unet, weights: table("unet", unetEntries(file, cfg.unet)) };
    const vae = { name: "vae", config: cfg.vae, weights: table("vae", vaeEntries(file, cfg.vae)) };
    const te = openclip ? openClipEntries(file, cfg.text_encoder) : clipEntries(file);
    const text_encoder = { name: "text_encoder", config: cfg.text_encoder, weights: table("text_encoder", te) };
    return { path, family, unet, vae, text_encoder, scheduler: cfg.scheduler, tokenizerDir, close: closeFile };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Default configs know nothing of inpainting / pix2pix inputs or SD2-style linear projections: read them off. */
function adaptDefaults(file: Safetensors, unet: Json): void {
  const convIn = file.tensors.get(`${UNET}input_blocks.0.0.weight`);
  if (convIn) unet.in_channels = convIn.shape[1];
  const toK = [...file.tensors.entries()].find(([k]) => k.startsWith(UNET) && k.endsWith(".attn2.to_k.weight"));
  if (toK) unet.cross_attention_dim = toK[1].shape[1];
  const projIn = [...file.tensors.entries()].find(([k]) => k.startsWith(UNET) && k.endsWith(".proj_in.weight"));
  if (projIn) unet.use_linear_projection = projIn[1].shape.length === 2;
}

// --- UNet -----------------------------------------------------------------------------------------------------

const RESNET: [string, string][] = [
  ["in_layers.0.", "norm1."],
  ["in_layers.2.", "conv1."],
  ["emb_layers.1.", "time_emb_proj."],
  ["out_layers.0.", "norm2."],
  ["out_layers.3.", "conv2."],
  ["skip_connection.", "conv_shortcut."],
];

function renameResnet(rest: string): string {
  for (const [a, b] of RESNET) if (rest.startsWith(a)) return b + rest.slice(a.length);
  return rest;
}

/** Original input_blocks / output_blocks indices -> diffusers block and layer, from the config. */
function unetLayout(config: Json) {
  const channels = config.block_out_channels as number[];
  const n = channels.length;
  const lpb = Array.isArray(config.layers_per_block)
    ? config.layers_per_block as number[]
    : Array(n).fill(config.layers_per_block as number);
  // input_blocks.0 is conv_in; then each level's layers and (but for the last level) its downsampler.
  const input: ({ block: number; layer: number } | { block: number; down: true } | undefined)[] = [undefined];
  for (let b = 0; b < n; b++) {
    for (let l = 0; l < lpb[b]; l++) input.push({ block: b, layer: l });
    if (b < n - 1) input.push({ block: b, down: true });
  }
  // Up blocks have one layer more than the matching down block.
  const output: { block: number; layer: number }[] = [];
  for (let u = 0; u < n; u++) for (let l = 0; l <= lpb[n - 1 - u]; l++) output.push({ block: u, layer: l });
  return { input, output };
}

function unetEntries(file: Safetensors, config: Json): Map<string, TensorRef> {
  const layout = unetLayout(config);
  const linear = config.use_linear_projection === true;
  const out = new Map<string, TensorRef>();
  const unknown: string[] = [];
  for (const [key, info] of file.tensors) {
    if (!key.startsWith(UNET)) continue;
    const name = unetName(key.slice(UNET.length), layout);
    if (!name) {
      unknown.push(key);
      continue;
    }
    let shape = info.shape;
    // proj_in/proj_out: 1x1 conv in SD1, Linear in SD2; present what the config builds.
    if (/\.attentions\.\d+\.proj_(in|out)\.weight$/.test(name)) {
      shape = linear ? shape.slice(0, 2) : [...shape.slice(0, 2), 1, 1];
    }
    out.set(name, ref(file, key, shape));
  }
  if (unknown.length) {
    throw new WeightError(
      `${file.source}: ${unknown.length} UNet tensors do not fit an SD 1.x/2.x UNet with the given config, e.g. ` +
        unknown.slice(0, 3).map((k) => `"${k}"`).join(", "),
    );
  }
  return out;
}

function unetName(k: string, layout: ReturnType<typeof unetLayout>): string | null {
  let m: RegExpMatchArray | null;
  if ((m = k.match(/^time_embed\.(0|2)\.(.+)$/))) return `time_embedding.linear_${m[1] === "0" ? 1 : 2}.${m[2]}`;
  if ((m = k.match(/^input_blocks\.0\.0\.(.+)$/))) return `conv_in.${m[1]}`;
  if ((m = k.match(/^out\.(0|2)\.(.+)$/))) return `${m[1] === "0" ? "conv_norm_out" : "conv_out"}.${m[2]}`;
  if ((m = k.match(/^middle_block\.(\d)\.(.+)$/))) {
    if (m[1] === "1") return `mid_block.attentions.0.${m[2]}`;
    return `mid_block.resnets.${m[1] === "0" ? 0 : 1}.${renameResnet(m[2])}`;
  }
  if ((m = k.match(/^input_blocks\.(\d+)\.(\d+)\.(.+)$/))) {
    const e = layout.input[+m[1]];
    if (!e) return null;
    if ("down" in e) {
      return m[3].startsWith("op.") ? `down_blocks.${e.block}.downsamplers.0.conv.${m[3].slice(3)}` : null;
    }
    if (m[2] === "0") return `down_blocks.${e.block}.resnets.${e.layer}.${renameResnet(m[3])}`;
    return m[2] === "1" ? `down_blocks.${e.block}.attentions.${e.layer}.${m[3]}` : null;
  }
  if ((m = k.match(/^output_blocks\.(\d+)\.(\d+)\.(.+)$/))) {
    const e = layout.output[+m[1]];
    if (!e) return null;
    if (m[2] === "0") return `up_blocks.${e.block}.resnets.${e.layer}.${renameResnet(m[3])}`;
    // Sub-module 1 is the attention, or the upsampler in blocks without attention; 2 is always the upsampler.
    if (m[3].startsWith("conv.")) return `up_blocks.${e.block}.upsamplers.0.${m[3]}`;
    return m[2] === "1" ? `up_blocks.${e.block}.attentions.${e.layer}.${m[3]}` : null;
  }
  return null;
}

// --- VAE ------------------------------------------------------------------------------------------------------

const VAE_ATTN: Record<string, string> = { norm: "group_norm", q: "to_q", k: "to_k", v: "to_v", proj_out: "to_out.0" };

function vaeEntries(file: Safetensors, config: Json): Map<string, TensorRef> {
  const levels = (config.block_out_channels as number[]).length;
  const out = new Map<string, TensorRef>();
  const unknown: string[] = [];
  for (const [key, info] of file.tensors) {
    if (!key.startsWith(VAE) || key.startsWith(`${VAE}loss.`)) continue;
    const k = key.slice(VAE.length);
    let m: RegExpMatchArray | null;
    let name: string | null = null;
    let shape = info.shape;
    if (/^(quant_conv|post_quant_conv|(en|de)coder\.conv_(in|out))\./.test(k)) name = k;
    else if ((m = k.match(/^(encoder|decoder)\.norm_out\.(.+)$/))) name = `${m[1]}.conv_norm_out.${m[2]}`;
    else if ((m = k.match(/^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/))) {
      name = `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${m[3].replace(/^nin_shortcut\./, "conv_shortcut.")}`;
    } else if ((m = k.match(/^encoder\.down\.(\d+)\.downsample\.conv\.(.+)$/))) {
      name = `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`;
    } else if ((m = k.match(/^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/))) {
      // The original decoder counts levels from the lowest resolution up; diffusers' up_blocks the other way.
      name = `decoder.up_blocks.${levels - 1 - +m[1]}.resnets.${m[2]}.${
        m[3].replace(/^nin_shortcut\./, "conv_shortcut.")
      }`;
    } else if ((m = k.match(/^decoder\.up\.(\d+)\.upsample\.conv\.(.+)$/))) {
      name = `decoder.up_blocks.${levels - 1 - +m[1]}.upsamplers.0.conv.${m[2]}`;
    } else if ((m = k.match(/^(encoder|decoder)\.mid\.block_(1|2)\.(.+)$/))) {
      name = `${m[1]}.mid_block.resnets.${+m[2] - 1}.${m[3].replace(/^nin_shortcut\./, "conv_shortcut.")}`;
    } else if ((m = k.match(/^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/))) {
      name = `${m[1]}.mid_block.attentions.0.${VAE_ATTN[m[2]]}.${m[3]}`;
      // 1x1 convs (and [C,1,1] biases) become the Linear layers diffusers uses.
      if (m[2] !== "norm") shape = m[3] === "weight" ? shape.slice(0, 2) : shape.slice(0, 1);
    }
    if (name) out.set(name, ref(file, key, shape));
    else unknown.push(key);
  }
  if (unknown.length) {
    throw new WeightError(
      `${file.source}: ${unknown.length} VAE tensors are not AutoencoderKL ones, e.g. ` +
        unknown.slice(0, 3).map((k) => `"${k}"`).join(", "),
    );
  }
  return out;
}

// --- Text encoders --------------------------------------------------------------------------------------------

/** SD 1.x: a Hugging Face CLIPTextModel, with or without the `text_model.` level (older transformers). */
function clipEntries(file: Safetensors): Map<string, TensorRef> {
  const out = new Map<string, TensorRef>();
  for (const [key, info] of file.tensors) {
    if (!key.startsWith(CLIP) || key.endsWith("position_ids")) continue;
    const k = key.slice(CLIP.length);
    out.set(k.startsWith("text_model.") ? k : `text_model.${k}`, ref(file, key, info.shape));
  }
  return out;
}

const OPENCLIP_LAYER: [RegExp, string][] = [
  [/^ln_1\./, "layer_norm1."],
  [/^ln_2\./, "layer_norm2."],
  [/^mlp\.c_fc\./, "mlp.fc1."],
  [/^mlp\.c_proj\./, "mlp.fc2."],
  [/^attn\.out_proj\./, "self_attn.out_proj."],
];

/** SD 2.x: OpenCLIP ViT-H text tower; layers past the config's num_hidden_layers are unused (SD2 uses 23). */
function openClipEntries(file: Safetensors, config: Json): Map<string, TensorRef> {
  const layers = (config.num_hidden_layers as number | undefined) ?? Infinity;
  const out = new Map<string, TensorRef>();
  const unknown: string[] = [];
  const top: Record<string, string> = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
  };
  for (const [key, info] of file.tensors) {
    if (!key.startsWith(OPENCLIP)) continue;
    const k = key.slice(OPENCLIP.length);
    if (top[k]) {
      out.set(top[k], ref(file, key, info.shape));
      continue;
    }
    if (/^(text_projection|logit_scale|attn_mask)$/.test(k) || k.startsWith("visual.")) continue;
    const m = k.match(/^transformer\.resblocks\.(\d+)\.(.+)$/);
    if (!m) {
      unknown.push(key);
      continue;
    }
    if (+m[1] >= layers) continue;
    const p = `text_model.encoder.layers.${m[1]}.`;
    const fused = m[2].match(/^attn\.in_proj_(weight|bias)$/);
    if (fused) {
      const d = info.shape[0] / 3;
      ["q", "k", "v"].forEach((x, i) => {
        out.set(`${p}self_attn.${x}_proj.${fused[1]}`, {
          file,
          key,
          shape: [d, ...info.shape.slice(1)],
          rows: [i * d, d],
        });
      });
      continue;
    }
    const rule = OPENCLIP_LAYER.find(([re]) => re.test(m[2]));
    if (rule) out.set(p + m[2].replace(rule[0], rule[1]), ref(file, key, info.shape));
    else unknown.push(key);
  }
  if (unknown.length) {
    throw new WeightError(
      `${file.source}: ${unknown.length} OpenCLIP tensors are not understood, e.g. ` +
        unknown.slice(0, 3).map((k) => `"${k}"`).join(", "),
    );
  }
  return out;
}

function ref(file: Safetensors, key: string, shape: readonly number[]): TensorRef {
  return { file, key, shape: [...shape] };
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch {
    return false;
  }
}

// --- Default configs (no --config): the diffusers configs of SD 1.5 and SD 2.1 ----------------------------------

const SCHEDULER: Json = {
  _class_name: "PNDMScheduler",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  trained_betas: null,
};

const VAE_CONFIG: Json = {
  _class_name: "AutoencoderKL",
  act_fn: "silu",
  block_out_channels: [128, 256, 512, 512],
  down_block_types: Array(4).fill("DownEncoderBlock2D"),
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 512,
  scaling_factor: 0.18215,
  up_block_types: Array(4).fill("UpDecoderBlock2D"),
};

const UNET_SD1: Json = {
  _class_name: "UNet2DConditionModel",
  act_fn: "silu",
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  use_linear_projection: false,
};

/** SD 1.5: runwayml/stable-diffusion-v1-5 (text encoder: openai/clip-vit-large-patch14). */
export const SD15: { unet: Json; vae: Json; text_encoder: Json; scheduler: Json } = {
  unet: UNET_SD1,
  vae: VAE_CONFIG,
  text_encoder: {
    architectures: ["CLIPTextModel"],
    attention_dropout: 0,
    bos_token_id: 0,
    dropout: 0,
    eos_token_id: 2,
    hidden_act: "quick_gelu",
    hidden_size: 768,
    initializer_factor: 1,
    initializer_range: 0.02,
    intermediate_size: 3072,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: "clip_text_model",
    num_attention_heads: 12,
    num_hidden_layers: 12,
    pad_token_id: 1,
    projection_dim: 768,
    vocab_size: 49408,
  },
  scheduler: SCHEDULER,
};

/**
 * SD 2.1 (768, v-prediction): stabilityai/stable-diffusion-2-1. The 512 "-base" models share the weights' layout
 * but predict epsilon at 512x512: give their folder with --config.
 */
export const SD21: { unet: Json; vae: Json; text_encoder: Json; scheduler: Json } = {
  unet: {
    ...UNET_SD1,
    attention_head_dim: [5, 10, 20, 20],
    cross_attention_dim: 1024,
    sample_size: 96,
    upcast_attention: true,
    use_linear_projection: true,
  },
  vae: { ...VAE_CONFIG, sample_size: 768 },
  text_encoder: {
    architectures: ["CLIPTextModel"],
    attention_dropout: 0,
    bos_token_id: 0,
    dropout: 0,
    eos_token_id: 2,
    hidden_act: "gelu",
    hidden_size: 1024,
    initializer_factor: 1,
    initializer_range: 0.02,
    intermediate_size: 4096,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: "clip_text_model",
    num_attention_heads: 16,
    num_hidden_layers: 23,
    pad_token_id: 1,
    projection_dim: 512,
    vocab_size: 49408,
  },
  scheduler: { ...SCHEDULER, _class_name: "DDIMScheduler", prediction_type: "v_prediction" },
};
