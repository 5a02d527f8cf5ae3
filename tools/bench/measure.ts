// Timing loops for tools/bench.ts: warm-up, an adaptive timed loop (stop after a target time or a number of
// iterations), and GPU time per call from the device's per-dispatch timestamps (Device.open({profile: true})).
import type { Device } from "../../pipeline/gpu/device.ts";

export interface LoopOptions {
  /** Warm-up: at least one call, then more until `warmupS` seconds or `warmupMax` calls. */
  warmupS: number;
  warmupMax: number;
  /** Timed loop: at least one call, then more until `timeS` seconds or `maxIters` calls. */
  timeS: number;
  maxIters: number;
  /** Profiled calls for the per-kernel breakdown when profiling runs apart from the wall-time loop. */
  profiledCalls: number;
}

export interface KernelTime {
  name: string;
  /** Dispatches of this kernel per call. */
  calls: number;
  /** GPU milliseconds per call. */
  ms: number;
  /** Its share of the call's timed GPU time (all kernels' shares add up to 1). */
  share: number;
}

export interface Timing {
  iters: number;
  /** Wall time per call: recording, submission and waiting for the GPU. */
  wallMs: number;
  /** CPU time per call spent recording the work (before submission). */
  recordMs: number;
  /** Sum of the dispatches' GPU time per call (timestamp queries), or null without timestamps. */
  gpuMs: number | null;
  /** Dispatches per call. */
  dispatches: number;
  /** Dispatches per call that have a timestamp (the device's query set holds 2048 per submission). */
  timed: number;
  /** Per-kernel GPU time per call, every kernel, largest first. */
  kernels: KernelTime[];
  /** Whether the wall-time loop ran without per-dispatch timestamps. */
  wallUnprofiled: boolean;
  /** Wall time per call of the profiled calls (timestamps cost a compute pass per dispatch), or null. */
  profiledWallMs: number | null;
}

/**
 * A call records work. An array it returns holds tensors to release once the GPU has finished; anything else
 * (an op's `out` tensor, say) is left alone.
 */
export type Call = () => unknown;

/** Turn per-dispatch timestamps on or off (a model's wall time is measured without them). */
export function setProfiling(dev: Device, on: boolean): boolean {
  return dev.setProfiling(on);
}

async function once(dev: Device, call: Call): Promise<{ wall: number; record: number; dispatches: number }> {
  const d0 = dev.dispatches;
  const t0 = performance.now();
  const outs = call();
  const t1 = performance.now();
  await dev.sync();
  const t2 = performance.now();
  if (Array.isArray(outs)) { for (const o of outs as { release(): void }[]) o.release(); }
  return { wall: t2 - t0, record: t1 - t0, dispatches: dev.dispatches - d0 };
}

class ProfileSum {
  total = 0;
  entries = 0;
  calls = 0;
  private byName = new Map<string, { calls: number; ms: number }>();
  add(entries: { name: string; ms: number }[]): void {
    this.calls++;
    for (const e of entries) {
      this.total += e.ms;
      this.entries++;
      const k = this.byName.get(e.name) ?? { calls: 0, ms: 0 };
      k.calls++;
      k.ms += e.ms;
      this.byName.set(e.name, k);
    }
  }
  /** Every kernel, largest GPU time first. */
  kernels(): KernelTime[] {
    const n = Math.max(1, this.calls);
    return [...this.byName]
      .map(([name, k]) => ({ name, calls: k.calls / n, ms: k.ms / n, share: this.total ? k.ms / this.total : 0 }))
      .sort((a, b) => b.ms - a.ms);
  }
}

/**
 * Warm up, then time `call` until `timeS` seconds or `maxIters` calls. With `separateProfile`, the timed loop runs
 * with timestamps off and `profiledCalls` further calls give the GPU time (models: hundreds of dispatches per call);
 * otherwise (single kernels) every timed call is profiled.
 */
export async function timeCalls(dev: Device, call: Call, o: LoopOptions, separateProfile: boolean): Promise<Timing> {
  const profiling = dev.profile;
  const unprofiled = separateProfile && profiling && setProfiling(dev, false);
  try {
    let n = 0, t = 0;
    do {
      t += (await once(dev, call)).wall;
      n++;
    } while (n < o.warmupMax && t < o.warmupS * 1000);
    if (profiling && !unprofiled) await dev.takeProfile();

    const prof = new ProfileSum();
    let wall = 0, record = 0, dispatches = 0, iters = 0;
    do {
      const r = await once(dev, call);
      wall += r.wall, record += r.record, dispatches += r.dispatches, iters++;
      if (profiling && !unprofiled) prof.add(await dev.takeProfile());
    } while (wall < o.timeS * 1000 && iters < o.maxIters);

    let profiledWall = 0;
    if (unprofiled) {
      setProfiling(dev, true);
      await dev.takeProfile(); // what ran profiled before this loop (a model's build: its random weights)
      // No more profiled calls than timed ones: on a slow adapter one call can take seconds.
      for (let i = 0; i < Math.max(1, Math.min(o.profiledCalls, iters)); i++) {
        profiledWall += (await once(dev, call)).wall;
        prof.add(await dev.takeProfile());
      }
    }
    const perCall = dispatches / iters;
    return {
      iters,
      wallMs: wall / iters,
      recordMs: record / iters,
      gpuMs: profiling ? prof.total / Math.max(1, prof.calls) : null,
      dispatches: perCall,
      timed: profiling ? prof.entries / Math.max(1, prof.calls) : 0,
      kernels: prof.kernels(),
      wallUnprofiled: unprofiled || !profiling,
      profiledWallMs: unprofiled ? profiledWall / prof.calls : profiling ? wall / iters : null,
    };
  } finally {
    if (unprofiled) setProfiling(dev, profiling);
  }
}

/** Seconds since `t0` (performance.now() milliseconds). */
export function since(t0: number): number {
  return (performance.now() - t0) / 1000;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** After a failed call: submit what was recorded, drop GPU errors and timestamps, so the next case starts clean. */
export async function recover(dev: Device): Promise<void> {
  await dev.sync().catch(() => {});
  await dev.takeProfile().catch(() => {});
}
