// Messages between the HTTP thread (host.ts) and the GPU worker thread (worker.ts). Plain data only (structured
// clone); the result's video bytes are transferred, not copied.
import { RequestError } from "../../pipeline/errors.ts";
import type { JobProgress, JobRequest, JobResult } from "../../pipeline/job/types.ts";

/** The name the worker thread runs under; main.ts checks it to start the worker when everything is one bundle. */
export const GPU_WORKER_NAME = "zerovid-gpu";

/** What request validation and planning need to know about the GPU, reported by the worker once it has opened it. */
export interface DeviceFacts {
  adapter: string;
  /** shader-f16 is available (the default precision is f16 then). */
  f16: boolean;
  isFallback: boolean;
  /** maxStorageBufferBindingSize: the largest tensor one kernel can bind. */
  maxBinding: number;
  maxBufferSize: number;
  /** GPU memory one job may hold (--max-gpu-mb), bytes. */
  maxGpuBytes?: number;
}

export interface WorkerInit {
  /** GPU bytes of idle models kept between jobs. */
  cacheBytes?: number;
  /** GPU memory one job may hold (--max-gpu-mb), bytes. */
  maxGpuBytes?: number;
  modelRoots?: string[];
  /** Adapter choice (see DeviceOptions.adapter). */
  adapter?: string;
  /** How often the worker says it is alive. */
  heartbeatMs: number;
  /** CPU priority (nice) for the worker's thread and the driver threads it starts; 0 = unchanged. */
  nice: number;
}

/** An error as it crosses the thread boundary: enough to rebuild its name, message and request field. */
export interface WireError {
  name: string;
  message: string;
  /** A user error (RequestError or a subclass): rebuilt as a RequestError with this field and detail. */
  request?: { field: string | null; detail: string };
  /** The worker-side stack, kept on the rebuilt error for logs. */
  stack?: string;
}

export type ToWorker =
  | { type: "init"; init: WorkerInit }
  | { type: "run"; id: number; req: JobRequest }
  | { type: "abort"; id: number; reason: string }
  /** The server is stopping: release the GPU (its device destroyed on this thread), then say "closed". */
  | { type: "close" };

export type FromWorker =
  | { type: "ready"; facts: DeviceFacts }
  /** The GPU could not be opened: the worker is useless and says why. */
  | { type: "fatal"; error: WireError }
  /** Sent every heartbeatMs while the thread's event loop runs; `lost` = the device is lost (reopened next job). */
  | { type: "heartbeat"; lost: boolean }
  | { type: "progress"; id: number; progress: JobProgress }
  | { type: "done"; id: number; result: JobResult }
  | { type: "failed"; id: number; error: WireError }
  /** The worker's thread is ending on its own (close() or Deno.exit() inside it). */
  | { type: "exiting" }
  /** The answer to "close": the GPU is released; the host may terminate the thread. */
  | { type: "closed" };

export function toWire(e: unknown): WireError {
  if (e instanceof Error) {
    return {
      name: e.name,
      message: e.message || e.name,
      stack: e.stack,
      ...(e instanceof RequestError ? { request: { field: e.field, detail: e.detail } } : {}),
    };
  }
  return { name: "Error", message: String(e) };
}
