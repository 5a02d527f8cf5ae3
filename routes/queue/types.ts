// The job queue as the routes see it: one interface, two backends (sqlite.ts: one process on one box; redis.ts:
// BullMQ, any number of API nodes and GPU workers). The routes use only what is here.
//
// Contract:
// - API side (any node): submit, get, list, position, counts, openResult, cancel, subscribe, health. Every read
//   is async, because the state may live in another process or on another machine.
// - A job carries everything it needs, its input video bytes included (`JobRequest.video`); no backend may hand a
//   worker a path that only exists on the node that took the request.
// - Worker side (the GPU processes): `startWorker(runner)` takes jobs one at a time, in submission order per
//   worker. A node that never calls it is an API node; calling it on the API node is one box ("both").
// - `subscribe(id, fn)` resolves once the listener is live (subscribe first, then read the state: no event is lost
//   between the two); events may come from a worker in another process.
// - `cancel(id)` reaches whichever worker runs the job; that job stops at its next step and ends "cancelled".
// - Results are read by byte range (HTTP Range) through `openResult`, wherever they are stored.
// - A full queue refuses with QueueFullError (HTTP 429 + Retry-After); a backend that cannot be reached throws
//   QueueUnavailableError (HTTP 503) and reconnects by itself.
//
// Crash policy (every backend): a job whose worker dies while running it (crash, kill, power loss) is run again,
// once; a job interrupted a second time fails ("interrupted twice"), so a job that itself kills its worker cannot
// take the service down in a loop. A graceful stop (close()) puts the running job back at the head of the queue
// without counting an attempt. Each job ends exactly once: one final state, at most one result.
import type { Format, JobProgress, JobRequest, JobResult } from "../../pipeline/job/types.ts";
import type { DeviceInfo } from "../../pipeline/job/validate.ts";

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** What runs a job: `runJob(env, req, hooks)` in production, a fake in tests. Must stop soon after `signal` aborts. */
export type Runner = (
  req: JobRequest,
  hooks: { onProgress?(p: JobProgress): void; signal?: AbortSignal },
) => Promise<JobResult>;

/** The request as a job shows it: a JobRequest without the video bytes. */
export type StoredRequest = Omit<JobRequest, "video">;

export interface ResultInfo {
  format: Format;
  contentType: string;
  bytes: number;
  frames: number;
  width: number;
  height: number;
  fps: number;
  /** False once retention deleted the result. */
  available: boolean;
}

export interface Job {
  id: string;
  seq: number;
  status: JobStatus;
  request: StoredRequest;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  attempts: number;
  progress: JobProgress | null;
  /** Resolved parameters (seed included): those the runner reported, else the request's. */
  params: Record<string, unknown> | null;
  timings: Record<string, number> | null;
  error: string | null;
  /** The request field an error is about (RequestError raised while running), if any. */
  errorField: string | null;
  result: ResultInfo | null;
  /** Set when a cancel was asked for while running: the job stops at its next step. */
  cancelRequested: boolean;
}

export type JobEvent =
  | { type: "queued"; position: number }
  | { type: "started"; attempt: number }
  | { type: "progress"; progress: JobProgress }
  | { type: "done"; job: Job }
  | { type: "failed"; job: Job }
  | { type: "cancelled"; job: Job }
  /** The queue is closing (server shutdown): listeners should end their streams. */
  | { type: "closed" };

/** A finished video, readable by byte range wherever it is stored. */
export interface ResultHandle {
  info: ResultInfo;
  /** Bytes in all. */
  size: number;
  /** Bytes [start, end) (0 <= start <= end <= size). Rejects when the result went away meanwhile. */
  read(start: number, end: number): Promise<Uint8Array<ArrayBuffer>>;
}

/** A job's result, or why there is none: no such job, not (successfully) finished, deleted by retention. */
export type ResultLookup = ResultHandle | { missing: "unknown" | "not-ready" | "expired" };

export interface QueueCounts {
  /** Jobs waiting. */
  queued: number;
  /** Jobs running on some worker. */
  running: number;
  /** Most jobs waiting (maxQueued). */
  max: number;
}

export interface WorkerInfo {
  /** Unique per worker process. */
  id: string;
  host: string;
  pid: number;
  /** The GPU adapter it runs on, if it said. */
  adapter?: string;
  /** Its GPU's limits, which API nodes plan requests with at submission. */
  gpu?: DeviceInfo;
  /** The models it can run, as GET /v1/models lists them (a backend that shares models across nodes says). */
  models?: Record<string, unknown>[];
  /** The job it runs now. */
  running: string | null;
  /** When it was last heard from (ms since the epoch). */
  seenAt: number;
}

/** What a worker tells the other nodes about itself. */
export interface WorkerAbout {
  adapter?: string;
  /** Its GPU's limits and memory cap (validateRequest's DeviceInfo). */
  gpu?: DeviceInfo;
  /** The models it can run, as GET /v1/models lists them (read again at each heartbeat: new models show up). */
  models?: () => Promise<Record<string, unknown>[]>;
}

export interface QueueHealth {
  backend: "sqlite" | "redis";
  /** False when the backend cannot be reached (the routes answer 503 meanwhile). */
  ok: boolean;
  error?: string;
  /** The workers seen recently (a backend that cannot know may leave it out). */
  workers?: WorkerInfo[];
}

export interface JobQueue {
  readonly backend: "sqlite" | "redis";
  /** Most jobs waiting (the running ones not counted); more are refused with QueueFullError. */
  readonly maxQueued: number;

  /** Stores a job (its video included). Throws QueueFullError when maxQueued jobs wait. */
  /** Stores and queues a job; its input video as `req.video` bytes, or as `videoFile`, a file the queue copies (an
   *  upload on disk: the API node never holds it whole in memory). */
  submit(req: JobRequest, videoFile?: string): Promise<Job>;
  get(id: string): Promise<Job | null>;
  /** Newest first. */
  list(limit?: number): Promise<Job[]>;
  /** 1-based place among the waiting jobs (1 = runs next), or 0 when the job is not waiting. */
  position(id: string): Promise<number>;
  counts(): Promise<QueueCounts>;
  openResult(id: string): Promise<ResultLookup>;
  /**
   * Cancels a waiting job (now), asks a running one to stop (it ends "cancelled" at its next step), or deletes a
   * finished one with its result. Returns what happened, or null for an unknown id.
   */
  cancel(id: string): Promise<"cancelled" | "cancelling" | "deleted" | null>;
  /** Calls `fn` with the job's events until the returned function is called; resolves once listening. */
  subscribe(id: string, fn: (ev: JobEvent) => void): Promise<() => void>;
  health(): Promise<QueueHealth>;

  /** Makes this process a worker: it runs jobs with `runner`, one at a time (idempotent). */
  startWorker(runner: Runner, about?: WorkerAbout): void;
  /**
   * Graceful stop: no new jobs start here, a job running here goes back to the head of the queue, listeners get
   * "closed". Queued jobs stay queued.
   */
  close(opts?: { timeoutMs?: number }): Promise<void>;
}

/**
 * What a runner throws when it had to kill a job that did not stop when asked at shutdown (the server's GPU worker
 * is terminated mid-step). The job fails instead of going back to the queue: a job that hung the GPU once would
 * hang the restarted server again.
 */
export class JobKilledError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JobKilledError";
  }
}

export class QueueFullError extends Error {
  constructor(readonly queued: number, readonly retryAfter: number) {
    super(`the queue is full (${queued} jobs waiting); try again in about ${retryAfter} s`);
    this.name = "QueueFullError";
  }
}

/** The queue's backend cannot be reached (Redis down); the request may be retried later. */
export class QueueUnavailableError extends Error {
  constructor(message: string, readonly retryAfter = 5) {
    super(message);
    this.name = "QueueUnavailableError";
  }
}
