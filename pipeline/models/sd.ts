// One Stable Diffusion checkpoint on the GPU: tokenizer, text encoder, UNet, VAE and the scheduler config, from a
// diffusers folder or an original-layout single file (with SD 1.5's configs or those of a diffusers folder).
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Device, DType } from "../gpu/device.ts";
import { type SchedulerConfig, schedulerConfig } from "../schedulers/config.ts";
import { type Json, loadComponent, loadConfig } from "../weights/diffusers.ts";
import { loadSingleFile } from "../weights/single_file.ts";
import { type ClipTextConfig, ClipTextModel } from "./clip.ts";
import { ControlNet, type ControlNetConfig } from "./controlnet.ts";
import type { TensorSource } from "./layers.ts";
import { ClipTokenizer } from "./tokenizer.ts";
import { UNet, type UNetConfig } from "./unet.ts";
import { VAE, type VAEConfig } from "./vae.ts";

export interface LoadSDOptions {
  dtype: DType;
  /** For a single file: a diffusers folder with the configs (and tokenizer) that describe it. */
  configDir?: string;
  /** A folder with a CLIP tokenizer, when the checkpoint has none (single files). */
  tokenizerDir?: string;
  /** Prefer this weight variant in diffusers folders (e.g. "fp16"). */
  variant?: string;
}

/** In-memory parts of a checkpoint (the built-in demo model): configs, weight sources and a ready tokenizer. */
export interface SDSources {
  /** What `source` reports (e.g. "demo"). */
  label: string;
  tokenizer: ClipTokenizer;
  textEncoder: { config: Json; weights: TensorSource };
  unet: { config: Json; weights: TensorSource };
  vae: { config: Json; weights: TensorSource };
  scheduler: Json;
}

export class StableDiffusion {
  private constructor(
    readonly dev: Device,
    readonly dtype: DType,
    readonly source: string,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: ClipTextModel,
    readonly unet: UNet,
    readonly vae: VAE,
    readonly scheduler: SchedulerConfig,
  ) {}

  /** Bytes of GPU memory the weights take. */
  get bytes(): number {
    return this.textEncoder.params.bytes + this.unet.params.bytes + this.vae.params.bytes;
  }

  static async load(dev: Device, path: string, opts: LoadSDOptions): Promise<StableDiffusion> {
    const info = await stat(path).catch(() => null);
    if (!info) throw new Error(`model not found: ${path}`);
    const parts: { te?: ClipTextModel; unet?: UNet; vae?: VAE } = {};
    try {
      if (info.isDirectory()) {
        const te = await loadComponent(path, "text_encoder", { variant: opts.variant });
        const un = await loadComponent(path, "unet", { variant: opts.variant });
        const va = await loadComponent(path, "vae", { variant: opts.variant });
        try {
          parts.te = await ClipTextModel.load(dev, te.weights, te.config as unknown as ClipTextConfig, opts.dtype);
          parts.unet = await UNet.load(dev, un.weights, un.config as unknown as UNetConfig, opts.dtype);
          parts.vae = await VAE.load(dev, va.weights, va.config as unknown as VAEConfig, opts.dtype);
        } finally {
          te.weights.close(), un.weights.close(), va.weights.close();
        }
        const tokenizer = await ClipTokenizer.fromDir(opts.tokenizerDir ?? join(path, "tokenizer"));
        const sched = schedulerConfig(await loadConfig(path, "scheduler") as Json, join(path, "scheduler"));
        return new StableDiffusion(dev, opts.dtype, path, tokenizer, parts.te, parts.unet, parts.vae, sched);
      }
      const sf = await loadSingleFile(path, { configDir: opts.configDir });
      try {
        parts.te = await ClipTextModel.load(
          dev,
          sf.text_encoder.weights,
          sf.text_encoder.config as unknown as ClipTextConfig,
          opts.dtype,
        );
        parts.unet = await UNet.load(dev, sf.unet.weights, sf.unet.config as unknown as UNetConfig, opts.dtype);
        parts.vae = await VAE.load(dev, sf.vae.weights, sf.vae.config as unknown as VAEConfig, opts.dtype);
      } finally {
        sf.close();
      }
      const tokDir = opts.tokenizerDir ?? sf.tokenizerDir;
      if (!tokDir) {
        throw new Error(
          `${path}: a single-file checkpoint carries no tokenizer: pass --config DIR (a diffusers folder with tokenizer/)`,
        );
      }
      const tokenizer = await ClipTokenizer.fromDir(tokDir);
      const sched = schedulerConfig(sf.scheduler, `${path} scheduler`);
      return new StableDiffusion(dev, opts.dtype, path, tokenizer, parts.te, parts.unet, parts.vae, sched);
    } catch (e) {
      parts.te?.dispose(), parts.unet?.dispose(), parts.vae?.dispose();
      throw e;
    }
  }

  /** A model from in-memory sources (no files): the same loaders as `load`. */
  static async fromSources(dev: Device, src: SDSources, dtype: DType): Promise<StableDiffusion> {
    const parts: { te?: ClipTextModel; unet?: UNet; vae?: VAE } = {};
    try {
      const te = src.textEncoder;
      parts.te = await ClipTextModel.load(dev, te.weights, te.config as unknown as ClipTextConfig, dtype);
      parts.unet = await UNet.load(dev, src.unet.weights, src.unet.config as unknown as UNetConfig, dtype);
      parts.vae = await VAE.load(dev, src.vae.weights, src.vae.config as unknown as VAEConfig, dtype);
      const sched = schedulerConfig(src.scheduler, `${src.label} scheduler`);
      return new StableDiffusion(dev, dtype, src.label, src.tokenizer, parts.te, parts.unet, parts.vae, sched);
    } catch (e) {
      parts.te?.dispose(), parts.unet?.dispose(), parts.vae?.dispose();
      throw e;
    }
  }

  dispose(): void {
    this.textEncoder.dispose();
    this.unet.dispose();
    this.vae.dispose();
  }
}

/** A ControlNet from a diffusers folder (config.json + weights). */
export async function loadControlNet(dev: Device, dir: string, dtype: DType): Promise<ControlNet> {
  const c = await loadComponent(dir, "");
  try {
    return await ControlNet.load(dev, c.weights, c.config as unknown as ControlNetConfig, dtype);
  } finally {
    c.weights.close();
  }
}
