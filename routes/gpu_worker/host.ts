// The HTTP side of the GPU worker: a Runner (the queue's seam, also used by the Redis workers) whose jobs run in a
// Worker thread that owns the GPU. The serving thread only passes messages, so health checks, events and new
// submissions answer while a job runs.
//
// A job fails with a clear error, and the worker is replaced (terminate + a fresh one that reopens the GPU), when
// the worker crashes or exits, when it shows no sign of life for `stallMs` (its thread is stuck), when the job runs
// longer than `jobTimeoutMs`, or when a cancelled job has not stopped `abortGraceMs` after the cancel.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { RequestError } from "../../pipeline/errors.ts";
import type { JobRequest, JobResult } from "../../pipeline/job/types.ts";
import { JobKilledError, type Runner } from "../queue/types.ts";
import { type DeviceFacts, type FromWorker, GPU_WORKER_NAME, type ToWorker, type WireError } from "./protocol.ts";

export type { DeviceFacts };

export interface GpuWorkerOptions {
  cacheBytes?: number;
  /** GPU memory one job may hold (--max-gpu-mb), bytes. */
  maxGpuBytes?: number;
  modelRoots?: string[];
  adapter?: string;
  /** A job running longer than this fails ("--job-timeout"). Default 2 hours. */
  jobTimeoutMs?: number;
  /** No message at all from the worker for this long while it has work = stuck. Default 10 minutes, at most the job
   * time limit. The worker's thread is legitimately silent for a whole denoising step (waiting for the GPU blocks
   * it: 10 s per step at 128x128 on llvmpipe) and for a long video encode, so this catches only a thread that is
   * stuck for good; the job time limit catches the rest. */
  stallMs?: number;
  /** A cancelled job that has not stopped this long after the cancel is ended by replacing the worker. Default 60 s. */
  abortGraceMs?: number;
  /** Opening the GPU (and loading the worker's code) taking longer than this fails the start. Default 2 minutes. */
  startTimeoutMs?: number;
  /** Default 1000 ms. */
  heartbeatMs?: number;
  /** CPU priority of the job's threads (see priority.ts). Default 10 (lower than the HTTP thread's 0). */
  nice?: number;
  /** The worker's entry module (tests pass one with a faulty run function). Default: ./entry.ts. */
  entry?: URL;
  log?: (line: string) => void;
}

/** A job ended by the worker's death, hang or time limit (not by the job's own code). */
export class WorkerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorkerError";
  }
}

export interface WorkerHealth {
  adapter: string;
  ok: boolean;
  error?: string;
}

interface Pending {
  id: number;
  started: number;
  abortedAt: number | null;
  onProgress?: Parameters<Runner>[1]["onProgress"];
  resolve(r: JobResult): void;
  reject(e: unknown): void;
}

function fromWire(w: WireError): Error {
  const e = w.request ? new RequestError(w.request.field, w.request.detail) : new Error(w.message);
  e.name = w.name; // Cancelled / AbortError tell the queue the job was stopped
  if (w.stack) e.stack = w.stack;
  return e;
}

const fmtDuration = (ms: number) =>
  ms >= 3600e3 && ms % 3600e3 === 0
    ? `${ms / 3600e3} h`
    : ms >= 60e3 && ms % 60e3 === 0
    ? `${ms / 60e3} min`
    : `${(ms / 1000).toFixed(ms < 10e3 ? 1 : 0)} s`;

/** The entry module: next to this file when run from source; the main module itself inside a bundle. */
function defaultEntry(): URL {
  const own = new URL("./entry.ts", import.meta.url);
  try {
    if (own.protocol !== "file:" || existsSync(fileURLToPath(own))) return own;
  } catch { /* no read permission: assume the source layout */ }
  return new URL(Deno.mainModule);
}

export class GpuWorker {
  /** Workers started after the first (crashes, hangs, timeouts). */
  restarts = 0;
  private w: Worker | null = null;
  private ready: Promise<DeviceFacts> = Promise.resolve(null as unknown as DeviceFacts);
  private isReady = false;
  private facts_: DeviceFacts | null = null;
  private fatal: Error | null = null;
  private lost = false;
  /** Resolves close()'s wait for the worker's "closed". */
  private closedAck: (() => void) | null = null;
  private lastSeen = 0;
  private spawnedAt = 0;
  private job: Pending | null = null;
  private failStart: (e: Error) => void = () => {};
  private seq = 0;
  private closed = false;
  private watchdog: ReturnType<typeof setInterval>;
  private readonly jobTimeoutMs: number;
  private readonly stallMs: number;
  private readonly abortGraceMs: number;
  private readonly heartbeatMs: number;
  private readonly startTimeoutMs: number;
  private readonly entry: URL;
  private readonly log: (line: string) => void;

  private constructor(private opts: GpuWorkerOptions) {
    this.jobTimeoutMs = opts.jobTimeoutMs ?? 2 * 3600e3;
    this.stallMs = opts.stallMs ?? Math.min(10 * 60e3, this.jobTimeoutMs);
    this.abortGraceMs = opts.abortGraceMs ?? 60e3;
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.startTimeoutMs = opts.startTimeoutMs ?? 120e3;
    for (const [k, v] of Object.entries({ jobTimeoutMs: this.jobTimeoutMs, stallMs: this.stallMs })) {
      if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`${k} must be a positive number of ms, got ${v}`);
    }
    this.entry = opts.entry ?? defaultEntry();
    this.log = opts.log ?? ((l) => console.error(l));
    this.watchdog = setInterval(() => this.check(), Math.min(500, this.heartbeatMs));
    Deno.unrefTimer(this.watchdog);
  }

  /** Starts the worker and waits until it has opened the GPU; throws why it could not (no adapter, say). */
  static async start(opts: GpuWorkerOptions = {}): Promise<GpuWorker> {
    const g = new GpuWorker(opts);
    g.spawn();
    try {
      await g.ready;
    } catch (e) {
      await g.close();
      throw e;
    }
    return g;
  }

  /** The GPU's facts as the worker reported them (for validation and planning on this thread). */
  get facts(): DeviceFacts {
    if (!this.facts_) throw new Error("the GPU worker has not reported its device yet");
    return this.facts_;
  }

  health(): WorkerHealth {
    const adapter = this.facts_?.adapter ?? "none";
    if (this.closed) return { adapter, ok: false, error: "the server is stopping" };
    if (this.fatal && !this.w) return { adapter, ok: false, error: this.fatal.message };
    if (!this.isReady) return { adapter, ok: false, error: "the GPU worker is starting" };
    if (this.lost) return { adapter, ok: false, error: "GPU device lost; reopened on the next job" };
    return { adapter, ok: true };
  }

  /** The queue's Runner: one job at a time, in the worker. */
  readonly run: Runner = async (req: JobRequest, hooks) => {
    if (this.closed) throw new WorkerError("the GPU worker is closed");
    if (this.job) throw new Error("the GPU worker runs one job at a time");
    if (!this.w) this.spawn(); // after a failed start: try again
    await this.ready;
    if (hooks.signal?.aborted) throw new DOMException("aborted before start", "AbortError");
    const w = this.w!;
    return await new Promise<JobResult>((resolve, reject) => {
      const id = ++this.seq;
      const onAbort = () => {
        if (!this.job || this.job.id !== id) return;
        this.job.abortedAt ??= performance.now();
        const r = hooks.signal?.reason;
        this.send(w, { type: "abort", id, reason: typeof r === "string" ? r : (r as Error)?.message ?? "aborted" });
      };
      const done = () => {
        hooks.signal?.removeEventListener("abort", onAbort);
        if (this.job?.id === id) this.job = null;
      };
      this.job = {
        id,
        started: performance.now(),
        abortedAt: null,
        onProgress: hooks.onProgress,
        resolve: (r) => {
          done();
          resolve(r);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      hooks.signal?.addEventListener("abort", onAbort, { once: true });
      this.lastSeen = performance.now();
      this.send(w, { type: "run", id, req });
    });
  };

  /**
   * Stops: a running job is asked to stop and gets `graceMs` to do so, then the worker is terminated whatever it is
   * doing. Returns false when the job had to be cut off (it then failed with a JobKilledError).
   */
  async close(opts: { graceMs?: number } = {}): Promise<boolean> {
    if (this.closed) return true;
    this.closed = true;
    clearInterval(this.watchdog);
    let clean = true;
    const job = this.job;
    if (job && this.w) {
      job.abortedAt ??= performance.now();
      this.send(this.w, { type: "abort", id: job.id, reason: "server shutting down" });
      const deadline = performance.now() + (opts.graceMs ?? 3000);
      while (this.job === job && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (this.job === job) {
        clean = false;
        job.reject(
          new JobKilledError(
            `the server was stopped while this job ran and it did not stop within ${
              fmtDuration(opts.graceMs ?? 3000)
            }: it was terminated, and is not run again (submit it again)`,
          ),
        );
      }
    }
    const w = this.w;
    if (w && clean) {
      // Let the worker release the GPU on its own thread first (a second at most: a hung one is terminated).
      const acked = new Promise<void>((r) => this.closedAck = r);
      this.send(w, { type: "close" });
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([acked, new Promise((r) => timer = setTimeout(r, 1000))]);
      clearTimeout(timer);
    }
    w?.terminate();
    this.w = null;
    return clean;
  }

  // ---------------------------------------------------------------------------------------------------------------

  private send(w: Worker, m: ToWorker): void {
    try {
      w.postMessage(m);
    } catch (e) {
      this.replace(w, `could not reach the GPU worker: ${(e as Error).message}`);
    }
  }

  private spawn(): void {
    const w = new Worker(this.entry, { type: "module", name: GPU_WORKER_NAME });
    this.w = w;
    this.isReady = false;
    this.lost = false;
    this.spawnedAt = this.lastSeen = performance.now();
    let settle!: { resolve(f: DeviceFacts): void; reject(e: Error): void };
    this.ready = new Promise<DeviceFacts>((resolve, reject) => settle = { resolve, reject });
    this.ready.catch(() => {}); // observed by run()/start(); never an unhandled rejection
    this.failStart = (e) => settle.reject(e);
    w.onmessage = (e: MessageEvent) => {
      if (w !== this.w) return; // a replaced worker's last words
      this.lastSeen = performance.now();
      const m = e.data as FromWorker;
      const job = this.job;
      switch (m.type) {
        case "ready":
          this.facts_ = m.facts;
          this.fatal = null;
          this.isReady = true;
          settle.resolve(m.facts);
          return;
        case "fatal":
          this.startFailed(w, fromWire(m.error));
          return;
        case "heartbeat":
          this.lost = m.lost;
          return;
        case "progress":
          if (job?.id === m.id) job.onProgress?.(m.progress);
          return;
        case "done":
          if (job?.id === m.id) job.resolve(m.result);
          return;
        case "failed":
          if (job?.id === m.id) job.reject(fromWire(m.error));
          return;
        case "exiting":
          if (!this.closed) this.replace(w, "the GPU worker exited");
          return;
        case "closed":
          this.closedAck?.();
          return;
      }
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.replace(w, `the GPU worker crashed: ${e.message}`);
    };
    w.postMessage(
      {
        type: "init",
        init: {
          cacheBytes: this.opts.cacheBytes,
          maxGpuBytes: this.opts.maxGpuBytes,
          modelRoots: this.opts.modelRoots,
          adapter: this.opts.adapter,
          heartbeatMs: this.heartbeatMs,
          nice: this.opts.nice ?? 10,
        },
      } satisfies ToWorker,
    );
  }

  /** A worker that could not open the GPU (or died trying) is not restarted in a loop: the next run() retries. */
  private startFailed(w: Worker, e: Error): void {
    w.terminate();
    this.w = null;
    this.fatal = e;
    this.failStart(e);
    if (this.facts_) this.log(`GPU worker: could not start: ${e.message}`);
  }

  /** Ends the worker `w` (if it is still the current one), fails its job with `why`, and starts a fresh one. */
  private replace(w: Worker, why: string, cancelled = false): void {
    if (w !== this.w) return;
    if (!this.isReady) return this.startFailed(w, new Error(why));
    w.terminate();
    this.w = null;
    const job = this.job;
    if (job) {
      if (cancelled) job.reject(new DOMException(why, "AbortError"));
      else job.reject(new WorkerError(`${why}; the job was stopped and the GPU worker restarted`));
    }
    this.log(`GPU worker: ${why}; starting a new one`);
    if (this.closed) return;
    this.restarts++;
    this.spawn();
  }

  private check(): void {
    const w = this.w;
    if (!w) return;
    const now = performance.now();
    const job = this.job;
    if (!this.isReady) {
      if (now - this.spawnedAt > this.startTimeoutMs) {
        this.replace(w, `the GPU worker did not start within ${fmtDuration(this.startTimeoutMs)}`);
      }
      return;
    }
    if (!job) return;
    if (now - job.started > this.jobTimeoutMs) {
      this.replace(w, `the job ran longer than the time limit (--job-timeout ${fmtDuration(this.jobTimeoutMs)})`);
    } else if (now - this.lastSeen > this.stallMs) {
      this.replace(w, `the GPU worker stopped responding (no sign of life for ${fmtDuration(now - this.lastSeen)})`);
    } else if (job.abortedAt !== null && now - job.abortedAt > this.abortGraceMs) {
      this.replace(w, `the job did not stop within ${fmtDuration(this.abortGraceMs)} of being cancelled`, true);
    }
  }
}
