// Parts 2 and 3 of the bench: one UNet call of the tiny model (CFG batch 2, and 2F frames with cross-frame
// attention), and one denoising step (UNet + CFG + DDIM) of an SD 1.5-sized UNet with random weights.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { type Tensor, upload } from "../../pipeline/gpu/tensor.ts";
import type { AttnContext } from "../../pipeline/models/blocks.ts";
import type { TensorSource } from "../../pipeline/models/layers.ts";
import { unetShapes } from "../../pipeline/models/shapes.ts";
import { SD15_UNET, UNet, type UNetConfig } from "../../pipeline/models/unet.ts";
import { gather0 } from "../../pipeline/ops/layout.ts";
import { DDIM } from "../../pipeline/schedulers/ddim.ts";
import { cfg as guidance } from "../../pipeline/schedulers/guidance.ts";
import { loadComponent } from "../../pipeline/weights/diffusers.ts";
import { randomSource } from "../../pipeline/weights/random.ts";
import { DEMO_UNET } from "../../pipeline/models/demo.ts";
import { randn } from "../../tests/util.ts";
import { countFlops, type FlopCount } from "./flops.ts";
import { errorMessage, type KernelTime, type LoopOptions, since, timeCalls, type Timing } from "./measure.ts";

/** The tiny test model's UNet config (tiny-sd in the golden folder), for random weights when the folder is absent. */
export const TINY_UNET: UNetConfig = DEMO_UNET;

export interface UNetRow {
  model: string;
  dtype: DType;
  latent: number;
  batch: number;
  /** "self" or "cross-frame F=8". */
  attention: string;
  iters: number;
  wallMs: number | null;
  recordMs: number | null;
  gpuMs: number | null;
  dispatches: number | null;
  /** Dispatches with a timestamp (fewer than `dispatches` when a call overflows the query set). */
  timed: number | null;
  /** Whether wall time was measured without timestamps (they split every dispatch into its own pass). */
  wallUnprofiled: boolean;
  /** Wall time per call of the profiled calls (for judging gpu ms against wall ms). */
  profiledWallMs: number | null;
  /** GPU time per call by kernel, every kernel, largest first (empty without timestamps). */
  kernels: KernelTime[];
  /** The call's GEMM-shaped FLOPs (linear, conv2d, attention; flops.ts), as the timed calls ran it. */
  flops: FlopCount | null;
  error?: string;
}

export interface FullResult {
  model: string;
  dtype: DType;
  latent: number;
  batch: number;
  attention: string;
  weightBytes: number;
  buildS: number;
  iters: number | null;
  wallMs: number | null;
  recordMs: number | null;
  gpuMs: number | null;
  dispatches: number | null;
  timed: number | null;
  wallUnprofiled: boolean;
  profiledWallMs: number | null;
  /** dev.pool.peakInUse over the timed steps: activations, not weights. */
  peakPoolBytes: number | null;
  /** GPU time per step by kernel, every kernel, largest first (empty without timestamps). */
  kernels: KernelTime[];
  error?: string;
}

export function randomTensor(dev: Device, shape: number[], seed: number, dtype: DType): Tensor {
  return upload(dev, randn(shape.reduce((p, d) => p * d, 1), seed), shape, dtype);
}

export function attnFor(batch: number): { ctx: AttnContext; label: string } {
  if (batch > 2 && batch % 2 === 0) return { ctx: { crossFrame: { groups: 2 } }, label: `cross-frame F=${batch / 2}` };
  return { ctx: {}, label: "self" };
}

function fromTiming(t: Timing): Omit<UNetRow, "model" | "dtype" | "latent" | "batch" | "attention" | "flops"> {
  return {
    iters: t.iters,
    wallMs: t.wallMs,
    recordMs: t.recordMs,
    gpuMs: t.gpuMs,
    dispatches: t.dispatches,
    timed: t.gpuMs === null ? null : t.timed,
    wallUnprofiled: t.wallUnprofiled,
    profiledWallMs: t.profiledWallMs,
    kernels: t.kernels,
  };
}

async function tinySource(dir: string | null): Promise<{ src: TensorSource; cfg: UNetConfig; close(): void }> {
  if (dir) {
    const c = await loadComponent(dir, "unet");
    return { src: c.weights, cfg: c.config as unknown as UNetConfig, close: () => c.weights.close() };
  }
  return { src: randomSource(unetShapes(TINY_UNET)), cfg: TINY_UNET, close: () => {} };
}

/** One UNet call of the tiny model at batch 2 (CFG) and 2F (cross-frame attention), `latent` x `latent`. */
export async function benchTinyUNet(
  dev: Device,
  dtype: DType,
  o: { dir: string | null; latent: number; frames: number; loop: LoopOptions; batches?: number[] },
): Promise<UNetRow[]> {
  const s = await tinySource(o.dir);
  let unet: UNet;
  try {
    unet = await UNet.load(dev, s.src, s.cfg, dtype);
  } finally {
    s.close();
  }
  try {
    const model = o.dir ?? "random tiny config";
    return await benchUNetCalls(dev, unet, {
      model,
      latent: o.latent,
      batches: o.batches ?? [2, 2 * o.frames],
      loop: o.loop,
    });
  } finally {
    unet.dispose();
    dev.pool.trim();
  }
}

/** One call of a loaded UNet at each batch (even batches > 2: cross-frame attention), random inputs. */
export async function benchUNetCalls(
  dev: Device,
  unet: UNet,
  o: { model: string; latent: number; batches: number[]; loop: LoopOptions },
): Promise<UNetRow[]> {
  const rows: UNetRow[] = [];
  const cfg = unet.cfg, dtype = unet.params.dtype;
  const cross = Array.isArray(cfg.cross_attention_dim) ? cfg.cross_attention_dim[0] : cfg.cross_attention_dim;
  const context = randomTensor(dev, [2, 77, cross], 7, dtype);
  try {
    for (const batch of o.batches) {
      const { ctx, label } = attnFor(batch);
      const row: UNetRow = {
        model: o.model,
        dtype,
        latent: o.latent,
        batch,
        attention: label,
        iters: 0,
        wallMs: null,
        recordMs: null,
        gpuMs: null,
        dispatches: null,
        timed: null,
        wallUnprofiled: false,
        profiledWallMs: null,
        kernels: [],
        flops: null,
      };
      rows.push(row);
      const sample = randomTensor(dev, [batch, cfg.in_channels, o.latent, o.latent], 11, dtype);
      const call = () => unet.forward({ sample, timesteps: [500], context, attn: ctx });
      try {
        Object.assign(row, fromTiming(await timeCalls(dev, () => [call()], o.loop, true)));
        // After the timed calls, so the text K/V they took from the cache are not counted either.
        row.flops = countFlops(dev, call);
      } catch (e) {
        row.error = errorMessage(e);
        await dev.sync().catch(() => {});
      } finally {
        sample.release();
      }
    }
  } finally {
    context.release();
  }
  return rows;
}

/**
 * One denoising step of an SD 1.5-sized UNet (SD15_UNET, random weights, no file): [CFG gather,] UNet, [CFG,]
 * DDIM step. An even batch is CFG over batch/2 latents ([uncond, cond] prompt embeddings), with cross-frame
 * attention when batch > 2, as text2video runs it. Failures (binding limits, out of memory) come back in `error`.
 */
export async function benchFullStep(
  dev: Device,
  dtype: DType,
  o: { latent: number; batch: number; loop: LoopOptions; log?: (line: string) => void },
): Promise<FullResult> {
  const cfgOn = o.batch % 2 === 0;
  const n = cfgOn ? o.batch / 2 : o.batch;
  const { ctx, label } = attnFor(o.batch);
  const res: FullResult = {
    model: "SD 1.5 UNet (random weights)",
    dtype,
    latent: o.latent,
    batch: o.batch,
    attention: cfgOn ? `${label}, CFG` : label,
    weightBytes: 0,
    buildS: 0,
    iters: null,
    wallMs: null,
    recordMs: null,
    gpuMs: null,
    dispatches: null,
    timed: null,
    wallUnprofiled: false,
    profiledWallMs: null,
    peakPoolBytes: null,
    kernels: [],
  };
  let unet: UNet | null = null;
  const held: Tensor[] = [];
  try {
    const t0 = performance.now();
    o.log?.(`full ${dtype}: building the SD 1.5 UNet with random weights`);
    unet = await dev.guardOOM(
      "building the SD 1.5 UNet",
      () => UNet.load(dev, randomSource(unetShapes(SD15_UNET)), SD15_UNET, dtype),
    );
    await dev.sync();
    res.buildS = since(t0);
    res.weightBytes = unet.params.bytes;
    const C = SD15_UNET.in_channels, L = o.latent;
    const x = randomTensor(dev, [n, C, L, L], 11, dtype);
    const context = randomTensor(dev, [cfgOn ? 2 : 1, 77, SD15_UNET.cross_attention_dim as number], 7, dtype);
    held.push(x, context);
    const ddim = new DDIM();
    const ts = ddim.setTimesteps(50);
    const t = ts[ts.length >> 1];
    const idx = Array.from({ length: n }, (_, i) => i);
    const u = unet;
    const step = () => {
      const inp = cfgOn ? gather0(x, [...idx, ...idx]) : x;
      const eps = u.forward({ sample: inp, timesteps: [t], context, attn: ctx });
      const g = cfgOn ? guidance(eps, 7.5) : eps;
      const { prev, x0 } = ddim.step(g, t, x);
      return cfgOn ? [inp, eps, g, prev, x0] : [eps, prev, x0];
    };
    dev.pool.peakInUse = dev.pool.inUse;
    o.log?.(`full ${dtype}: timing one step at latent ${L}x${L}, batch ${o.batch}`);
    const tm = await dev.guardOOM("an SD 1.5 denoising step", () => timeCalls(dev, step, o.loop, true));
    Object.assign(res, fromTiming(tm));
    res.peakPoolBytes = dev.pool.peakInUse;
  } catch (e) {
    res.error = errorMessage(e);
    await dev.sync().catch(() => {});
  } finally {
    for (const h of held) h.release();
    unet?.dispose();
    dev.pool.trim();
  }
  return res;
}
