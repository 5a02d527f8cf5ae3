// gpu-check, sections 5 and 6: a Stable Diffusion model with random weights (SD 1.5's configs, or the tiny demo
// model with --small), one UNet call at two batches (GPU time by kernel, its GEMM-shaped FLOPs against the adapter's
// FMA ceiling), and text-to-video end to end with stage times and the buffer pool's high-water mark.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { StableDiffusion } from "../../pipeline/models/sd.ts";
import type { ClipTextConfig } from "../../pipeline/models/clip.ts";
import type { UNetConfig } from "../../pipeline/models/unet.ts";
import type { VAEConfig } from "../../pipeline/models/vae.ts";
import { SD15 } from "../../pipeline/weights/single_file.ts";
import { clipTextShapes, unetShapes, vaeShapes } from "../../pipeline/models/shapes.ts";
import { SeededNoise } from "../../pipeline/modes/common.ts";
import { resolveT0T1, text2video } from "../../pipeline/modes/text2video.ts";
import { randomSource } from "../../pipeline/weights/random.ts";
import { demoTokenizer } from "../../pipeline/models/demo.ts";
import { benchUNetCalls, type UNetRow } from "../bench/unet.ts";
import { adapterTiles, gemmHooks } from "../../pipeline/ops/matmul.ts";
import { transformedBytes } from "../../pipeline/ops/winograd.ts";
import { errorMessage, type LoopOptions } from "../bench/measure.ts";
import type { Ceiling, Ceilings } from "./probes.ts";

export interface ModelSpec {
  label: string;
  latent: number;
  batches: number[];
  frames: number;
  size: number;
  steps: number;
  cross: number;
}

export const SD15_SPEC: ModelSpec = {
  label: "SD 1.5 (random weights, SD 1.5 configs)",
  latent: 64,
  batches: [2, 16],
  frames: 8,
  size: 512,
  steps: 50,
  cross: 768,
};
export const SMALL_SPEC: ModelSpec = {
  label: "tiny-sd (fixtures/golden/models/tiny-sd)",
  latent: 8,
  batches: [2, 8],
  frames: 4,
  size: 64,
  steps: 4,
  cross: 32,
};

/** SD 1.5's text encoder, UNet and VAE (its configs) with random weights: no download. CLIP's real tokenizer. The
 *  weights are generated on the GPU (pipeline/ops/random.ts) and are there when this returns, so that their work
 *  lands in no later timing. */
export async function loadSd15(dev: Device, dtype: DType): Promise<StableDiffusion> {
  return await dev.guardOOM("building SD 1.5 with random weights", async () => {
    const sd = await StableDiffusion.fromSources(dev, {
      label: SD15_SPEC.label,
      tokenizer: await demoTokenizer(),
      textEncoder: {
        config: SD15.text_encoder,
        weights: randomSource(clipTextShapes(SD15.text_encoder as unknown as ClipTextConfig), 1),
      },
      unet: { config: SD15.unet, weights: randomSource(unetShapes(SD15.unet as unknown as UNetConfig), 2) },
      vae: { config: SD15.vae, weights: randomSource(vaeShapes(SD15.vae as unknown as VAEConfig), 4) },
      scheduler: SD15.scheduler,
    }, dtype);
    try {
      await dev.sync();
    } catch (e) {
      sd.dispose();
      throw e;
    }
    return sd;
  });
}

/** What a UNet call's FLOP count (flops.ts: GEMM-shaped work only) means on this adapter. */
export interface UNetArithmetic {
  /** All counted work, then by op, GFLOP. */
  gflop: number;
  linearGflop: number;
  conv2dGflop: number;
  attentionGflop: number;
  /** FLOPs / the summed GPU time of the call's dispatches (null without timestamps). */
  tflops: number | null;
  /** FLOPs / wall time per call (what the peers' implied rates compare with). */
  wallTflops: number | null;
  /** The FMA ceiling at the call's dtype (ceilings section), or null when it was not measured. */
  ceilingTflops: number | null;
  /** The FLOPs at that ceiling: the fastest any FMA-based (non-tensor-core) kernel set could run the call here. */
  floorMs: number | null;
  /** floorMs / GPU time (= tflops / ceilingTflops): how near the kernels come to that floor. */
  ofCeiling: number | null;
}

/** A UNet call in the report: bench's row (kernels by GPU time, FLOP count) and its arithmetic on this adapter. */
export interface UNetReportRow extends UNetRow {
  arithmetic: UNetArithmetic | null;
}

/** TFLOP/s of `flops` done in `ms` milliseconds. */
export function tflopsOf(flops: number | null | undefined, ms: number | null | undefined): number | null {
  return flops && ms ? flops / ms / 1e9 : null;
}

/** The measured FMA ceiling at `dtype`, or null when it was not measured. */
export function fmaCeiling(c: Ceilings | null, dtype: DType): Ceiling | null {
  const x = dtype === "f16" ? c?.fmaF16 : c?.fmaF32;
  return x?.rate ? x : null;
}

export function unetArithmetic(u: UNetRow, ceilings: Ceilings | null): UNetArithmetic | null {
  const f = u.flops;
  if (!f) return null;
  const ceil = fmaCeiling(ceilings, u.dtype);
  const floorMs = ceil ? f.total / (ceil.rate! * 1e6) : null;
  return {
    gflop: f.total / 1e9,
    linearGflop: f.linear / 1e9,
    conv2dGflop: f.conv2d / 1e9,
    attentionGflop: f.attention / 1e9,
    tflops: tflopsOf(f.total, u.gpuMs),
    wallTflops: tflopsOf(f.total, u.wallMs),
    ceilingTflops: ceil ? ceil.rate! / 1000 : null,
    floorMs,
    ofCeiling: floorMs !== null && u.gpuMs ? floorMs / u.gpuMs : null,
  };
}

export async function unetCalls(
  sd: StableDiffusion,
  spec: ModelSpec,
  loop: LoopOptions,
  ceilings: Ceilings | null,
): Promise<UNetReportRow[]> {
  const rows = await benchUNetCalls(sd.dev, sd.unet, {
    model: spec.label,
    latent: spec.latent,
    batches: spec.batches,
    loop,
  });
  return rows.map((u) => ({ ...u, arithmetic: unetArithmetic(u, ceilings) }));
}

/** A UNet call again on the GEMM core's other math, and its GPU time over the default call's at that batch. */
export interface UNetVariantRow extends UNetReportRow {
  vsDefault: number | null;
}

/** The same calls with every GEMM on the core's other f16 math (shaders/gemm.wgsl F16MATH: on where the adapter's
 *  entry leaves it off, off where it turns it on): what switching the whole model would buy. f16 models only. */
export async function unetMathVariant(
  sd: StableDiffusion,
  spec: ModelSpec,
  loop: LoopOptions,
  ceilings: Ceilings | null,
  defaults: UNetRow[],
): Promise<{ variant: string; rows: UNetVariantRow[] } | null> {
  if (sd.dtype !== "f16") return null;
  const on = !(adapterTiles(sd.dev).f16Math ?? false);
  gemmHooks.f16Math = on;
  try {
    const rows = await unetCalls(sd, spec, loop, ceilings);
    return {
      variant: on ? "every GEMM on f16 math" : "every GEMM on f32 math",
      rows: rows.map((u) => {
        const d = defaults.find((x) => x.batch === u.batch)?.gpuMs;
        return { ...u, vsDefault: u.gpuMs !== null && d ? u.gpuMs / d : null };
      }),
    };
  } finally {
    gemmHooks.f16Math = null;
  }
}

export interface Text2VideoReport {
  model: string;
  dtype: DType;
  frames: number;
  width: number;
  height: number;
  steps: number;
  /** Steps asked for, when the time budget made the run shorter. */
  stepsRequested: number;
  stepsNote?: string;
  wallS: number | null;
  /** Seconds per stage: "start" (prompt encoding, precompile, until the first step is done), then the pipeline's
   * own progress stages ("anchor", "denoise", "decode"). */
  stages: Record<string, number>;
  /** Weights on the GPU, bytes. */
  weightBytes: number;
  /** Winograd's transformed copies of 3x3 weights on the GPU at the end of the run, bytes (pipeline/ops/winograd.ts). */
  transformedBytes: number | null;
  /** High-water mark of the buffer pool's activations during the run (dev.pool.peakInUse), bytes. */
  peakPoolBytes: number | null;
  dispatches: number | null;
  submits: number | null;
  /** Pipelines compiled inside the loop (0 when precompile covered them). */
  lateCompiles: number | null;
  error?: string;
}

/** UNet calls a text-to-video run makes: the anchor's steps at batch 2, then every frame's at batch 2F. */
export function t2vCalls(steps: number): { anchor: number; video: number } {
  const { t0, t1 } = resolveT0T1(steps);
  return { anchor: steps - 1 - t0, video: steps - (steps - 1 - t1) };
}

export async function runText2Video(
  sd: StableDiffusion,
  spec: ModelSpec,
  steps: number,
  stepsNote?: string,
): Promise<Text2VideoReport> {
  const dev = sd.dev;
  const r: Text2VideoReport = {
    model: spec.label,
    dtype: sd.dtype,
    frames: spec.frames,
    width: spec.size,
    height: spec.size,
    steps,
    stepsRequested: spec.steps,
    ...(stepsNote ? { stepsNote } : {}),
    wallS: null,
    stages: {},
    weightBytes: sd.bytes,
    transformedBytes: null,
    peakPoolBytes: null,
    dispatches: null,
    submits: null,
    lateCompiles: null,
  };
  const t0 = performance.now();
  let last = t0;
  let first = true;
  const d0 = dev.dispatches, s0 = dev.submits;
  dev.pool.trim();
  dev.pool.peakInUse = dev.pool.inUse;
  try {
    await text2video(
      sd,
      {
        prompt: "a panda is playing guitar on times square",
        videoLength: spec.frames,
        width: spec.size,
        height: spec.size,
        steps,
        guidanceScale: 7.5,
        motionX: 12,
        motionY: 12,
      },
      new SeededNoise(0),
      {
        onProgress: (p) => {
          const now = performance.now();
          const stage = first ? "start" : p.stage;
          first = false;
          r.stages[stage] = (r.stages[stage] ?? 0) + (now - last) / 1000;
          last = now;
        },
      },
    );
    r.wallS = (performance.now() - t0) / 1000;
    r.peakPoolBytes = dev.pool.peakInUse;
    r.transformedBytes = transformedBytes(dev);
    r.dispatches = dev.dispatches - d0;
    r.submits = dev.submits - s0;
    r.lateCompiles = dev.lateCompiles;
  } catch (e) {
    r.error = errorMessage(e);
    await dev.sync().catch(() => {});
  } finally {
    dev.pool.trim();
  }
  return r;
}
