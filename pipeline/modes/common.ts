// What every Text2Video-Zero mode shares: the noise source, progress/cancel hooks with GPU pacing, and prompt
// encoding.
import type { Device } from "../gpu/device.ts";
import { type Tensor, upload } from "../gpu/tensor.ts";
import type { ClipTextModel } from "../models/clip.ts";
import type { ClipTokenizer, TokenSlots } from "../models/tokenizer.ts";
import { checkEmbeddings, type Embedding } from "../weights/embeddings.ts";
import { AnchorKV, type AttnContext } from "../models/blocks.ts";
import { concat } from "../ops/layout.ts";
import { latentPreview, previewSize } from "../ops/preview.ts";

// ---------------------------------------------------------------------------------------------------------------
// Noise

/**
 * Every random number a pipeline uses comes from here, addressed by a stream name and a global frame index, so a
 * frame's noise does not depend on how frames are batched or chunked. Tests inject recorded noise.
 */
export interface NoiseSource {
  normal(stream: string, frame: number, count: number): Float32Array;
}

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

function hashString(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h >>> 0;
}

/** Deterministic N(0, 1) noise from (seed, stream, frame): xoshiro128** seeded by splitmix32, then Box-Muller. */
export class SeededNoise implements NoiseSource {
  constructor(readonly seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`seed must be an integer in [0, 4294967295], got ${seed}`);
    }
  }

  normal(stream: string, frame: number, count: number): Float32Array {
    let h = splitmix32(this.seed ^ hashString(stream));
    h = splitmix32(h ^ Math.imul(frame + 1, 0x27d4eb2d));
    let a = splitmix32(h), b = splitmix32(a), c = splitmix32(b), d = splitmix32(c) | 1;
    const next = () => {
      const r = Math.imul((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25), 9) >>> 0;
      const t = (b << 9) >>> 0;
      c ^= a, d ^= b, b ^= c, a ^= d, c ^= t;
      d = ((d << 11) | (d >>> 21)) >>> 0;
      return (r + 0.5) / 4294967296;
    };
    const out = new Float32Array(count);
    for (let i = 0; i < count; i += 2) {
      const u = next(), v = next();
      const m = Math.sqrt(-2 * Math.log(u));
      out[i] = m * Math.cos(2 * Math.PI * v);
      if (i + 1 < count) out[i + 1] = m * Math.sin(2 * Math.PI * v);
    }
    return out;
  }
}

/** Noise for several frames of one stream, stacked [frames.length, ...shape]. */
export function frameNoise(
  dev: Device,
  noise: NoiseSource,
  stream: string,
  frames: number[],
  shape: number[],
  dtype: Tensor["dtype"],
): Tensor {
  const per = shape.reduce((p, d) => p * d, 1);
  const data = new Float32Array(per * frames.length);
  frames.forEach((f, i) => data.set(noise.normal(stream, f, per), i * per));
  return upload(dev, data, [frames.length, ...shape], dtype);
}

/** Host arrays joined end to end (stage outputs recorded per step or per chunk). */
export function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Progress and cancellation

export interface StepInfo {
  /** What is running: "encode", "anchor", "denoise", "decode", ... */
  stage: string;
  step: number;
  total: number;
  /** Frames done so far / in all, for stages that go frame by frame. */
  frame?: number;
  frames?: number;
}

/** A live preview: the frames as they stand at `step`, side by side. */
export interface Preview {
  step: number;
  total: number;
  frames: number;
  /** Size of one frame; the strip is frames * width x height. */
  width: number;
  height: number;
  /** [height, frames * width, 4] RGBA bytes. */
  rgba: Uint8Array;
}

export interface PreviewHooks {
  /** A preview every this many steps (default: about 10 per run). */
  every?: number;
  /** Widest strip in pixels (default 768; frames shrink to fit). */
  maxWidth?: number;
  onPreview(p: Preview): void;
}

export interface RunHooks {
  onProgress?: (p: StepInfo) => void;
  signal?: AbortSignal;
  preview?: PreviewHooks;
  /** The plan's cut of the VAE: a frame too large to encode or decode whole goes in bands of rows, with at most
   *  this many bytes per tensor (pipeline/models/vae_bands.ts). */
  vae?: { encodeBandBytes?: number; decodeBandBytes?: number };
}

/** Steps between previews: `every` when given, else about 10 previews in `total` steps. */
export function previewEvery(total: number, every?: number): number {
  return every !== undefined && every >= 1 ? Math.floor(every) : Math.max(1, Math.round(total / 10));
}

export class Cancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "Cancelled";
  }
}

/**
 * Paces the CPU to the GPU without reading anything back: after recording a step it submits it and waits for the
 * step before it to finish, so at most two steps are in flight, progress reports real GPU progress and a cancel
 * takes effect within a step.
 */
export class Pacer {
  private inFlight: Promise<unknown>[] = [];
  /** Preview strips recorded into the current step, read back once it is submitted. */
  private previews: { staging: GPUBuffer; info: Omit<Preview, "rgba"> }[] = [];
  private reading: Promise<void>[] = [];
  constructor(readonly dev: Device, readonly hooks: RunHooks = {}) {}

  /** Whether step `step` (1-based) of `total` shows a preview. */
  previewDue(step: number, total: number): boolean {
    const p = this.hooks.preview;
    return !!p && (step % previewEvery(total, p.every) === 0 || step === total);
  }

  /** Records the preview kernel once inside a precompile dry run, so it does not compile in the loop. */
  warmPreview(latents: Tensor): void {
    if (this.hooks.preview) latentPreview(latents, this.previewSize(latents)).rgba.release();
  }

  /**
   * Records a preview of `latents` [F, 4, h, w] into the current step when the step is due: the strip is made on
   * the GPU and copied to a staging buffer in the step's command buffer; `stepDone` maps it once submitted, so
   * nothing waits for it and steps without a preview read nothing back.
   */
  preview(latents: Tensor, step: number, total: number): void {
    if (!this.previewDue(step, total)) return;
    const strip = latentPreview(latents, this.previewSize(latents));
    const size = strip.rgba.bytes;
    const staging = this.dev.gpu.createBuffer({ size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    this.dev.copy(strip.rgba.binding(), { buffer: staging, offset: 0, size });
    strip.rgba.release();
    const { frames, width, height } = strip;
    this.previews.push({ staging, info: { step, total, frames, width, height } });
  }

  private previewSize(latents: Tensor): { width: number; height: number } {
    const [F, , h, w] = latents.shape;
    return previewSize(F, h, w, this.hooks.preview?.maxWidth ?? 768);
  }

  /** Maps the staging buffers of submitted previews and hands each to the hook when the GPU has written it. */
  private deliverPreviews(): void {
    for (const { staging, info } of this.previews.splice(0)) {
      const done = staging.mapAsync(GPUMapMode.READ).then(() => {
        const rgba = new Uint8Array(staging.getMappedRange().slice(0));
        staging.unmap();
        this.hooks.preview?.onPreview({ ...info, rgba });
      }, () => {}).finally(() => staging.destroy());
      this.reading.push(done);
    }
  }

  /** Waits for previews still being read back (a run's last ones before it returns). */
  async previewsDone(): Promise<void> {
    this.deliverPreviews();
    await Promise.all(this.reading.splice(0));
  }

  check(): void {
    if (this.hooks.signal?.aborted) throw new Cancelled();
    this.dev.checkAlive();
  }

  async stepDone(info: StepInfo): Promise<void> {
    this.inFlight.push(this.dev.submitted());
    this.deliverPreviews();
    if (this.inFlight.length > 1) await this.inFlight.shift();
    this.dev.checkErrors(); // device loss or an out-of-memory error ends the run here, never a hang
    this.hooks.onProgress?.(info);
    this.check();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Prompts

/**
 * Token ids for each prompt, then the text encoder: [prompts.length, 77, hidden]. A textual-inversion token in a
 * prompt stands for its vectors, one token slot each.
 */
export function encodePrompts(
  tokenizer: ClipTokenizer,
  encoder: ClipTextModel,
  prompts: string[],
  embeddings: readonly Embedding[] = [],
): Tensor {
  checkEmbeddings(embeddings, encoder.cfg.hidden_size);
  const slots: TokenSlots[] = [];
  let next = encoder.cfg.vocab_size;
  for (const e of embeddings) slots.push({ token: e.token, count: e.count, firstId: next }), next += e.count;
  const extra = concatF32(embeddings.map((e) => e.vectors));
  const ids = new Int32Array(prompts.length * tokenizer.maxLength);
  prompts.forEach((p, i) => ids.set(tokenizer.encode(p, slots), i * tokenizer.maxLength));
  return encoder.forward(ids, prompts.length, extra);
}

/** Scale a default DDIM step index (given for 50 steps) to `steps`, as Text2Video-Zero's t0/t1 are. */
export function scaleStepIndex(index50: number, steps: number): number {
  return Math.round(index50 * steps / 50);
}

// ---------------------------------------------------------------------------------------------------------------
// Cross-frame attention over many frames

/**
 * One model evaluation over frames 0..F-1 whose self-attention reads frame 0's keys/values (in `groups` guidance
 * groups). When all frames fit in a chunk this is one call with cross-frame attention. Otherwise the anchor (frame 0)
 * runs first and records its K/V for each of `models` models, and the other frames follow in chunks of
 * `chunkSize - 1` that attend to the recorded K/V: memory is bounded by the chunk and nothing is computed twice.
 * `run(rows, attn)` evaluates the frames `rows` (attn[i] for model i) and returns [rows.length, ...].
 */
export function framesInChunks(
  F: number,
  chunkSize: number | undefined,
  groups: number,
  models: number,
  run: (rows: number[], attn: AttnContext[]) => Tensor,
): Tensor {
  const per = Math.max(1, (chunkSize ?? F) - 1);
  if (per >= F - 1) {
    return run(Array.from({ length: F }, (_, f) => f), Array(models).fill({ crossFrame: { groups } }));
  }
  const anchors = Array.from({ length: models }, () => new AnchorKV("record", groups));
  const parts: Tensor[] = [];
  try {
    parts.push(run([0], anchors.map((anchor) => ({ anchor }))));
    for (const a of anchors) a.mode = "use";
    for (let s = 1; s < F; s += per) {
      const rows = Array.from({ length: Math.min(per, F - s) }, (_, k) => s + k);
      parts.push(run(rows, anchors.map((anchor) => ({ anchor }))));
    }
  } finally {
    for (const a of anchors) a.dispose();
  }
  const shape = [F, ...parts[0].shape.slice(1)];
  const out = concat(parts.map((e) => e.view([1, e.numel]))).reshape(shape);
  for (const p of parts) p.release();
  return out;
}
