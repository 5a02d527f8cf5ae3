// The GPU worker thread: owns the WebGPU device and the model cache and runs one job at a time (GPU work, video
// decode, annotators, encode), so the thread that serves HTTP never blocks on them. It says it is alive every
// heartbeatMs, reports progress, and stops a job at its next step when the host posts "abort".
import { GpuContext } from "../gpu_context.ts";
import { type JobEnv, type JobHooks, previewAsProgress } from "../../pipeline/job/run.ts";
import type { JobProgress, JobRequest, JobResult } from "../../pipeline/job/types.ts";
import { lowerThreadPriority } from "./priority.ts";
import { type FromWorker, toWire, type ToWorker } from "./protocol.ts";

/** What the worker runs for a job: runJob in production. */
export type WorkerRun = (env: JobEnv, req: JobRequest, hooks: JobHooks) => Promise<JobResult>;

/** The worker thread's global scope, as far as this file uses it. */
interface Scope {
  postMessage(m: unknown, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent) => void) | null;
  close(): void;
  addEventListener(type: "unload", fn: () => void): void;
}

/** Starts answering the host's messages. Call once, at the top level of the worker's entry module. */
export function serveGpuWorker(run: WorkerRun): void {
  const scope = self as unknown as Scope;
  const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);
  let gpu: GpuContext | null = null;
  let current: { id: number; ac: AbortController } | null = null;
  let heartbeat: ReturnType<typeof setInterval> | undefined;

  // A worker that ends itself says so first, so its job fails at once instead of at the stall timeout.
  const close = scope.close.bind(scope);
  scope.close = () => {
    post({ type: "exiting" });
    close();
  };
  scope.addEventListener("unload", () => post({ type: "exiting" }));

  scope.onmessage = async (e: MessageEvent) => {
    const m = e.data as ToWorker;
    switch (m.type) {
      case "init": {
        if (m.init.nice) lowerThreadPriority(m.init.nice);
        try {
          gpu = await GpuContext.create({
            device: m.init.adapter ? { adapter: m.init.adapter } : undefined,
            cacheBytes: m.init.cacheBytes,
            maxGpuBytes: m.init.maxGpuBytes,
            modelRoots: m.init.modelRoots,
          });
        } catch (err) {
          post({ type: "fatal", error: toWire(err) });
          return;
        }
        const dev = gpu.now.dev;
        post({
          type: "ready",
          facts: {
            adapter: dev.adapterName,
            f16: dev.f16,
            isFallback: dev.isFallback,
            maxBinding: dev.maxBinding,
            maxBufferSize: dev.maxBuffer,
            maxGpuBytes: m.init.maxGpuBytes,
          },
        });
        heartbeat = setInterval(() => post({ type: "heartbeat", lost: gpu!.now.dev.isLost }), m.init.heartbeatMs);
        return;
      }
      case "close":
        // The device is destroyed here, on its own thread, before the host terminates it: a process that exits
        // while a terminated thread still tears its Vulkan device down can crash in the driver (seen: SIGSEGV).
        clearInterval(heartbeat);
        try {
          gpu?.dispose();
          gpu?.now.dev.destroy();
        } catch { /* already gone */ }
        gpu = null;
        post({ type: "closed" });
        return;
      case "abort":
        if (current?.id === m.id) current.ac.abort(new DOMException(m.reason, "AbortError"));
        return;
      case "run": {
        const ac = new AbortController();
        current = { id: m.id, ac };
        try {
          if (!gpu) throw new Error("the GPU worker was asked to run a job before it opened the GPU");
          const env = await gpu.current();
          const onProgress = (progress: JobProgress) => post({ type: "progress", id: m.id, progress });
          // Live previews travel as progress events (stage "preview"), which every queue backend relays.
          const { images: _, ...result } = await run(env, m.req, {
            signal: ac.signal,
            onProgress,
            onPreview: previewAsProgress(onProgress),
            onPlan: (plan) => console.log(`job plan: ${plan.summary}`),
          });
          const bytes = result.bytes.byteOffset === 0 && result.bytes.byteLength === result.bytes.buffer.byteLength
            ? result.bytes
            : result.bytes.slice();
          post({ type: "done", id: m.id, result: { ...result, bytes } }, [bytes.buffer as ArrayBuffer]);
        } catch (err) {
          post({ type: "failed", id: m.id, error: toWire(err) });
        } finally {
          current = null;
        }
        return;
      }
    }
  };
}
