// gpu-check, section 3: the adapter's own ceilings, measured by the probe kernels (pipeline/ops/probe.ts): the
// multiply-add rate in f32 and f16 and the copy bandwidth. Kernel rates are reported as a share of these.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { empty, type Tensor } from "../../pipeline/gpu/tensor.ts";
import { FMA_PER_ITER, FMA_UNROLLS, probeCopy, probeFma } from "../../pipeline/ops/probe.ts";
import { errorMessage, type LoopOptions, recover, timeCalls } from "../bench/measure.ts";

export interface Ceiling {
  what: "fma" | "copy";
  dtype: DType | null;
  /** GFLOP/s (fma, 2 per multiply-add) or GB/s (copy, bytes read + written). */
  rate: number | null;
  unit: "GFLOP/s" | "GB/s";
  /** What the rate divides by: GPU timestamps or wall time. */
  from: "gpu" | "wall" | null;
  ms: number | null;
  /** Problem size: "1048576 vec4s x 4096, 8 per loop iteration (1: ... GFLOP/s)" (the FMA probe's faster loop and
   *  the other one's rate), "256 MiB". */
  size: string;
  error?: string;
}

export interface Ceilings {
  fmaF32: Ceiling;
  fmaF16: Ceiling;
  copy: Ceiling;
}

async function time(dev: Device, call: () => void, loop: LoopOptions): Promise<{ ms: number; from: "gpu" | "wall" }> {
  const t = await timeCalls(dev, call, loop, false);
  return t.gpuMs !== null && t.gpuMs > 0 ? { ms: t.gpuMs, from: "gpu" } : { ms: t.wallMs, from: "wall" };
}

async function fma(dev: Device, dtype: DType, small: boolean, loop: LoopOptions): Promise<Ceiling> {
  const vecs = small ? 1 << 14 : 1 << 20;
  const row: Ceiling = { what: "fma", dtype, rate: null, unit: "GFLOP/s", from: null, ms: null, size: "" };
  if (dtype === "f16" && !dev.f16) return { ...row, error: "no shader-f16 on this adapter" };
  let out: Tensor | null = null;
  try {
    out = empty(dev, [vecs * 4], dtype);
    const o = out;
    // Grow the chain until one call runs long enough to time (launch overhead out of the number).
    const targetMs = small ? 2 : 10;
    let iters = 16;
    const quick: LoopOptions = { warmupS: 0, warmupMax: 1, timeS: 0, maxIters: 1, profiledCalls: 1 };
    for (;;) {
      const t = await time(dev, () => probeFma(o, iters, 0.999, 0.001), quick);
      if (t.ms >= targetMs || iters >= 1 << 16) break;
      iters = Math.min(1 << 16, iters * Math.max(2, Math.min(16, Math.ceil(targetMs / Math.max(t.ms, 1e-3)))));
    }
    // The chains with and without the loop unrolled (shaders/probe_fma.wgsl): the faster is the ceiling.
    const flops = 2 * FMA_PER_ITER * iters * vecs;
    const runs = [];
    for (const u of FMA_UNROLLS) runs.push({ u, ...await time(dev, () => probeFma(o, iters, 0.999, 0.001, u), loop) });
    runs.sort((x, y) => x.ms - y.ms);
    const [t, other] = runs;
    const rate = (ms: number) => flops / (ms / 1000) / 1e9;
    Object.assign(row, {
      rate: rate(t.ms),
      from: t.from,
      ms: t.ms,
      size: `${vecs} vec4s x ${iters}, ${t.u} per loop iteration (${other.u}: ${rate(other.ms).toFixed(0)} GFLOP/s)`,
    });
  } catch (e) {
    row.error = errorMessage(e);
    await recover(dev);
  } finally {
    out?.release();
    dev.pool.trim();
  }
  return row;
}

async function copy(dev: Device, small: boolean, loop: LoopOptions): Promise<Ceiling> {
  // Several times any cache: 64 MiB (--small) or 256 MiB, read and written.
  const want = small ? 64 * 2 ** 20 : 256 * 2 ** 20;
  const bytes = Math.floor(Math.min(want, dev.maxBinding) / 256) * 256;
  const row: Ceiling = {
    what: "copy",
    dtype: null,
    rate: null,
    unit: "GB/s",
    from: null,
    ms: null,
    size: `${(bytes / 2 ** 20).toFixed(0)} MiB`,
  };
  let x: Tensor | null = null, y: Tensor | null = null;
  try {
    x = empty(dev, [bytes / 4], "f32");
    y = empty(dev, [bytes / 4], "f32");
    const [a, b] = [x, y];
    // Fresh buffers read as zeros, which some GPUs move faster than real data: fill the source first.
    probeFma(a, 1, 0.5, 0.25);
    const t = await time(dev, () => probeCopy(a, b), loop);
    Object.assign(row, { rate: 2 * bytes / (t.ms / 1000) / 1e9, from: t.from, ms: t.ms });
  } catch (e) {
    row.error = errorMessage(e);
    await recover(dev);
  } finally {
    x?.release(), y?.release();
    dev.pool.trim();
  }
  return row;
}

export async function measureCeilings(dev: Device, o: { small: boolean; loop: LoopOptions }): Promise<Ceilings> {
  return {
    fmaF32: await fma(dev, "f32", o.small, o.loop),
    fmaF16: await fma(dev, "f16", o.small, o.loop),
    copy: await copy(dev, o.small, o.loop),
  };
}
