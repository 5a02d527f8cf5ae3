// The job queue for many machines (the JobQueue of types.ts on Redis): any number of API nodes and GPU workers
// share one Redis. BullMQ schedules: its wait list is the queue, its per-job lock tells a live worker from a dead
// one, and its stalled-job check hands the job of a dead worker to another. The job as users see it is a Redis hash
// changed only by the Lua scripts in redis_scripts.ts, each atomic with the event it publishes.
//
// Keys (prefix P, default "zerovid"; several deployments can share one Redis with different prefixes):
//   P:job:<id>       hash: the job (request without the video, status, progress, result info, error, owner)
//   P:video:<id>     the input video's bytes, from submit until the job ends (a job carries its video)
//   P:result:<id>    the finished video (with a TTL of the retention age), read by range with GETRANGE
//   P:jobs           zset seq -> id (listing); P:done zset finishedAt -> id (job retention)
//   P:results        zset finishedAt -> id, P:result-bytes hash id -> bytes (result retention)
//   P:durations      the last ten job durations (Retry-After); P:seq the submit counter
//   P:workers        hash worker id -> {host, pid, adapter, models, running, seenAt} (heartbeats)
//   P:events         pub/sub channel: {id, type, ...} for every job event, read by every node
//   P:cancel         pub/sub channel: job ids to stop, read by every worker
//   P:bull:jobs:*    BullMQ's queue
//
// Crash policy (types.ts): a job whose worker dies is taken up by another worker once BullMQ sees its lock expire
// (stallMs); a job interrupted a second time fails. Only a running job can finish, so each job ends once: a worker
// that only seemed dead and finishes first ends the job, and the run that took over is stopped. Redis going away: API calls throw QueueUnavailableError (503) at once, workers
// keep their job and retry its final write, every connection reconnects by itself.
import { type Job as BullJob, Queue, WaitingError, Worker } from "bullmq";
import { Redis } from "ioredis";
import { Buffer } from "node:buffer";
import { hostname } from "node:os";
import { CONTENT_TYPES, type JobProgress, type JobRequest, type JobResult } from "../../pipeline/job/types.ts";
import {
  type Job,
  type JobEvent,
  JobKilledError,
  type JobQueue,
  type JobStatus,
  type QueueCounts,
  QueueFullError,
  type QueueHealth,
  QueueUnavailableError,
  type ResultInfo,
  type ResultLookup,
  type Runner,
  type StoredRequest,
  type WorkerAbout,
  type WorkerInfo,
} from "./types.ts";
import { ioredisOptions, parseRedisUrl, type RedisAddress } from "./redis_url.ts";
import * as scripts from "./redis_scripts.ts";
import { errorText, Listeners } from "./listeners.ts";

export interface RedisQueueOptions {
  /** redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://... */
  url: string;
  /** Most jobs waiting (running ones not counted); more are refused with QueueFullError. Default 20. */
  maxQueued?: number;
  /** Results older than this are deleted (Redis also expires them by TTL). Default 7 days. */
  keepMs?: number;
  /** Results beyond this many bytes in all are deleted, oldest first (the newest stays). Default 2 GiB. */
  keepBytes?: number;
  /** Largest result stored; a job with a larger one fails. Default 256 MiB (Redis keeps a string up to 512 MB). */
  maxResultBytes?: number;
  /** Finished jobs kept (newest); older ones are deleted with their results. Default 1000. */
  keepJobs?: number;
  /** How long a worker may go unheard (its job lock unrenewed) before another worker takes its job. Default 30 s. */
  stallMs?: number;
  /** Key prefix. Default "zerovid". */
  prefix?: string;
  /** Most time to wait for Redis at open. Default 5 s. */
  connectTimeoutMs?: number;
  /** Log lines (job start/end, connection lost/back). Default: console.log. */
  log?: (line: string) => void;
}

const HEARTBEAT_MS = 5000;
/** A worker unheard for this long is no longer listed, unless it still holds its job that long (its stallMs): a busy
 * GPU can keep a worker's event loop, heartbeats included, quiet for a while. */
const WORKER_GONE_MS = 4 * HEARTBEAT_MS;
/** Entries unheard for this long are deleted. */
const WORKER_FORGET_MS = 3600e3;

/** A worker's registry entry: what it announces, plus how long it may stay unheard and still be there. */
type WorkerEntry = WorkerInfo & { goneAfterMs?: number };
const SHUTDOWN = "server shutting down";
const CANCELLED = "cancelled by request";
const INTERRUPTED_TWICE = "interrupted twice (the worker running it stopped twice); not retried again";
const FINAL: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === "Cancelled" || e.name === "AbortError");
}

/** Errors that mean "Redis is not there right now" (as opposed to a bad command). */
function isConnectionError(e: unknown): boolean {
  return e instanceof Error &&
    /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|Command timed out|MaxRetriesPerRequest|Reached the max retries|connect |LOADING/i
      .test(`${e.name} ${e.message}`);
}

const size = (n: number) => n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} bytes`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const num = (s: string | undefined) => s === undefined || s === "" ? null : Number(s);
const parse = <T>(s: string | undefined): T | null => s ? JSON.parse(s) as T : null;

class Keys {
  constructor(readonly p: string) {}
  job = (id: string) => `${this.p}:job:${id}`;
  video = (id: string) => `${this.p}:video:${id}`;
  result = (id: string) => `${this.p}:result:${id}`;
  get seq() {
    return `${this.p}:seq`;
  }
  get jobs() {
    return `${this.p}:jobs`;
  }
  get done() {
    return `${this.p}:done`;
  }
  get results() {
    return `${this.p}:results`;
  }
  get resultBytes() {
    return `${this.p}:result-bytes`;
  }
  get durations() {
    return `${this.p}:durations`;
  }
  get workers() {
    return `${this.p}:workers`;
  }
  get events() {
    return `${this.p}:events`;
  }
  get cancel() {
    return `${this.p}:cancel`;
  }
  get bull() {
    return `${this.p}:bull`;
  }
}

/** Our scripts, registered on a client as commands (EVALSHA, loaded on first use). */
type Scripted = Redis & {
  zvStart(...a: (string | number)[]): Promise<string[]>;
  zvFinish(...a: (string | number | Buffer)[]): Promise<number>;
  zvRequeue(...a: (string | number)[]): Promise<number>;
  zvCancelWaiting(...a: (string | number)[]): Promise<number>;
  zvRequestCancel(...a: (string | number)[]): Promise<number>;
  zvDeleteFinished(...a: (string | number)[]): Promise<number>;
  zvDropResult(...a: (string | number)[]): Promise<number>;
};

function defineScripts(r: Redis): Scripted {
  const def = (name: string, keys: number, lua: string) => r.defineCommand(name, { numberOfKeys: keys, lua });
  def("zvStart", 3, scripts.START);
  def("zvFinish", 7, scripts.FINISH);
  def("zvRequeue", 1, scripts.REQUEUE);
  def("zvCancelWaiting", 3, scripts.CANCEL_WAITING);
  def("zvRequestCancel", 1, scripts.REQUEST_CANCEL);
  def("zvDeleteFinished", 7, scripts.DELETE_FINISHED);
  def("zvDropResult", 4, scripts.DROP_RESULT);
  return r as Scripted;
}

interface EventMessage {
  id: string;
  type: "started" | "progress" | "requeued" | "done" | "failed" | "cancelled";
  attempt?: number;
  progress?: JobProgress;
}

interface Running {
  id: string;
  ac: AbortController;
  done: Promise<void>;
}

export class RedisQueue implements JobQueue {
  readonly backend = "redis" as const;
  readonly maxQueued: number;
  readonly address: RedisAddress;
  private keys: Keys;
  private keepMs: number;
  private keepBytes: number;
  private keepJobs: number;
  private maxResultBytes: number;
  private stallMs: number;
  private log: (line: string) => void;
  private listeners: Listeners;
  private worker: Worker | null = null;
  private runner: Runner | null = null;
  private about: WorkerAbout = {};
  private readonly workerId = `${hostname()}:${Deno.pid}:${crypto.randomUUID().slice(0, 8)}`;
  private current: Running | null = null;
  private closed = false;
  private timers: ReturnType<typeof setInterval>[] = [];
  private lastError = "";
  private down = false;
  private positionsPending = false;

  private constructor(
    opts: RedisQueueOptions,
    address: RedisAddress,
    private cmd: Scripted,
    private sub: Redis,
    private queue: Queue,
  ) {
    this.address = address;
    this.keys = new Keys(opts.prefix ?? "zerovid");
    this.maxQueued = opts.maxQueued ?? 20;
    this.keepMs = opts.keepMs ?? 7 * 24 * 3600e3;
    this.keepBytes = opts.keepBytes ?? 2 * 1024 ** 3;
    this.keepJobs = opts.keepJobs ?? 1000;
    this.maxResultBytes = opts.maxResultBytes ?? 256 * 1024 * 1024;
    this.stallMs = opts.stallMs ?? 30_000;
    this.log = opts.log ?? ((l) => console.log(l));
    this.listeners = new Listeners(this.log);
  }

  /** Connects (throws QueueUnavailableError when Redis cannot be reached) and listens for job events. */
  static async open(opts: RedisQueueOptions): Promise<RedisQueue> {
    const maxQueued = opts.maxQueued ?? 20;
    if (!Number.isInteger(maxQueued) || maxQueued < 1) {
      throw new RangeError(`maxQueued must be a positive integer, got ${opts.maxQueued}`);
    }
    const address = parseRedisUrl(opts.url);
    const keys = new Keys(opts.prefix ?? "zerovid");
    const retryStrategy = (n: number) => Math.min(250 * n, 2000);
    // API calls fail at once while Redis is away (no offline queue): the routes answer 503 instead of hanging.
    const cmd = new Redis({
      ...ioredisOptions(address),
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 15_000,
      connectTimeout: opts.connectTimeoutMs ?? 5000,
      retryStrategy,
    });
    let firstError = "";
    const onFirstError = (e: Error) => firstError ||= errorText(e);
    cmd.on("error", onFirstError);
    try {
      await cmd.connect();
    } catch (e) {
      cmd.disconnect();
      throw new QueueUnavailableError(`cannot reach Redis at ${address.display}: ${firstError || errorText(e)}`);
    }
    cmd.off("error", onFirstError);
    // The subscriber queues its SUBSCRIBE while reconnecting and re-subscribes by itself.
    const sub = cmd.duplicate({ lazyConnect: true, enableOfflineQueue: true, commandTimeout: undefined });
    sub.on("error", () => {});
    const queue = new Queue("jobs", { connection: cmd, prefix: keys.bull });
    const q = new RedisQueue(opts, address, defineScripts(cmd), sub, queue);
    cmd.on("error", (e) => q.lost(e));
    cmd.on("ready", () => q.back());
    queue.on("error", (e) => q.lost(e));
    try {
      await sub.connect();
      sub.on("message", (channel, msg) => q.onMessage(channel, msg));
      sub.on("ready", () => q.resync());
      await sub.subscribe(keys.events, keys.cancel);
      await queue.waitUntilReady();
    } catch (e) {
      sub.disconnect();
      cmd.disconnect();
      throw new QueueUnavailableError(`cannot use Redis at ${address.display}: ${errorText(e)}`);
    }
    // Retention on every node (idempotent); unref'd so it never keeps a process alive.
    const t = setInterval(() => q.sweep().catch((e) => q.log(`retention sweep: ${errorText(e)}`)), 3600e3);
    Deno.unrefTimer(t);
    q.timers.push(t);
    return q;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Connection state

  private lost(e: Error): void {
    this.lastError = errorText(e);
    if (!this.down && !this.closed && this.cmd.status !== "ready") {
      this.down = true;
      this.log(`redis: lost ${this.address.display} (${this.lastError}); reconnecting`);
    }
  }

  private back(): void {
    if (this.down) this.log(`redis: reconnected to ${this.address.display}`);
    this.down = false;
  }

  private unavailable(e?: unknown): QueueUnavailableError {
    const why = e ? errorText(e) : this.lastError || this.cmd.status;
    return new QueueUnavailableError(
      `the job queue is unavailable: Redis at ${this.address.display} cannot be reached (${why}); try again shortly`,
    );
  }

  /** Runs an API-side operation: fails fast with QueueUnavailableError while Redis is away. */
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new QueueUnavailableError("the job queue is closed (the server is stopping)");
    if (this.cmd.status !== "ready") throw this.unavailable();
    try {
      return await fn();
    } catch (e) {
      if (e instanceof QueueFullError || e instanceof QueueUnavailableError) throw e;
      if (isConnectionError(e) || this.cmd.status !== "ready") throw this.unavailable(e);
      throw e;
    }
  }

  /** Runs a worker-side write until Redis takes it (a finished job's state must not be lost to an outage). */
  private async persist<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let logged = false;
    for (let wait = 250;; wait = Math.min(wait * 2, 2000)) {
      try {
        return await fn();
      } catch (e) {
        if (!isConnectionError(e) && this.cmd.status === "ready") throw e;
        if (this.closed && this.cmd.status === "end") throw e;
        if (!logged) this.log(`${what}: Redis unavailable (${errorText(e)}); retrying until it is back`);
        logged = true;
        await sleep(wait);
      }
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Reading

  private toJob(h: Record<string, string>): Job {
    return {
      id: h.id,
      seq: Number(h.seq),
      status: h.status as JobStatus,
      request: JSON.parse(h.request) as StoredRequest,
      createdAt: Number(h.createdAt),
      startedAt: num(h.startedAt),
      finishedAt: num(h.finishedAt),
      attempts: Number(h.attempts ?? 0),
      progress: parse<JobProgress>(h.progress),
      params: parse<Record<string, unknown>>(h.params),
      timings: parse<Record<string, number>>(h.timings),
      error: h.error || null,
      errorField: h.errorField || null,
      result: parse<ResultInfo>(h.result),
      cancelRequested: h.status === "running" && h.cancelRequested === "1",
    };
  }

  private async read(id: string): Promise<Job | null> {
    const h = await this.cmd.hgetall(this.keys.job(id));
    return h && h.id ? this.toJob(h) : null;
  }

  get(id: string): Promise<Job | null> {
    return this.op(() => this.read(id));
  }

  list(limit = 50): Promise<Job[]> {
    return this.op(async () => {
      const ids = await this.cmd.zrevrange(this.keys.jobs, 0, limit - 1);
      const p = this.cmd.pipeline();
      for (const id of ids) p.hgetall(this.keys.job(id));
      const rows = (await p.exec()) ?? [];
      return rows.map(([, h]) => h as Record<string, string>).filter((h) => h?.id).map((h) => this.toJob(h));
    });
  }

  /** The waiting ids, next to run first (BullMQ pushes new jobs at the head and takes from the tail). */
  private async waiting(): Promise<string[]> {
    return (await this.cmd.lrange(this.queue.keys.wait, 0, -1)).reverse();
  }

  position(id: string): Promise<number> {
    return this.op(async () => (await this.waiting()).indexOf(id) + 1);
  }

  counts(): Promise<QueueCounts> {
    return this.op(async () => {
      const [queued, running] = await Promise.all([
        this.cmd.llen(this.queue.keys.wait),
        this.cmd.llen(this.queue.keys.active),
      ]);
      return { queued, running, max: this.maxQueued };
    });
  }

  openResult(id: string): Promise<ResultLookup> {
    return this.op(async () => {
      const h = await this.cmd.hmget(this.keys.job(id), "id", "status", "result");
      if (!h[0]) return { missing: "unknown" };
      if (h[1] !== "succeeded" || !h[2]) return { missing: "not-ready" };
      const info = JSON.parse(h[2]) as ResultInfo;
      if (!info.available) return { missing: "expired" };
      const key = this.keys.result(id);
      const size = await this.cmd.strlen(key);
      if (size === 0) {
        // Expired by its TTL before a sweep got to it.
        await this.cmd.zvDropResult(this.keys.job(id), key, this.keys.results, this.keys.resultBytes, id);
        return { missing: "expired" };
      }
      return {
        info,
        size,
        read: async (start: number, end: number) => {
          if (end <= start) return new Uint8Array(0);
          const b = await this.op(() => this.cmd.getrangeBuffer(key, start, end - 1));
          if (b.length !== end - start) throw new Error(`the result of job ${id} went away while being read`);
          return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)) as Uint8Array<ArrayBuffer>;
        },
      };
    });
  }

  private async workers(now = Date.now()): Promise<WorkerInfo[]> {
    const all = await this.cmd.hgetall(this.keys.workers);
    const out: WorkerInfo[] = [];
    const gone: string[] = [];
    for (const [id, v] of Object.entries(all)) {
      const { goneAfterMs, ...w } = JSON.parse(v) as WorkerEntry;
      if (now - w.seenAt > Math.max(WORKER_GONE_MS, goneAfterMs ?? 0)) {
        if (now - w.seenAt > WORKER_FORGET_MS) gone.push(id);
        continue;
      }
      out.push(w);
    }
    if (gone.length) await this.cmd.hdel(this.keys.workers, ...gone);
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** The workers heard from recently, with the models each says it can run. */
  liveWorkers(): Promise<WorkerInfo[]> {
    return this.op(() => this.workers());
  }

  async health(): Promise<QueueHealth> {
    if (this.cmd.status !== "ready") {
      return { backend: "redis", ok: false, error: this.unavailable().message, workers: [] };
    }
    try {
      await this.cmd.ping();
      return { backend: "redis", ok: true, workers: await this.workers() };
    } catch (e) {
      return { backend: "redis", ok: false, error: this.unavailable(e).message, workers: [] };
    }
  }

  /** Seconds until a slot is likely free: the recent mean job time over the live workers; 30 s before any ran. */
  async retryAfter(): Promise<number> {
    const [d, workers] = await Promise.all([this.cmd.lrange(this.keys.durations, 0, -1), this.workers()]);
    const mean = d.length ? d.map(Number).reduce((a, b) => a + b, 0) / d.length : 30e3;
    return Math.max(1, Math.min(3600, Math.ceil(mean / Math.max(1, workers.length) / 1000)));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Events

  subscribe(id: string, fn: (ev: JobEvent) => void): Promise<() => void> {
    return this.op(() => {
      if (this.sub.status !== "ready") throw this.unavailable();
      return Promise.resolve(this.listeners.add(id, fn));
    });
  }

  private emit(id: string, ev: JobEvent): void {
    this.listeners.emit(id, ev);
  }

  private onMessage(channel: string, msg: string): void {
    if (channel === this.keys.cancel) {
      if (this.current?.id === msg) this.current.ac.abort(CANCELLED);
      return;
    }
    let m: EventMessage;
    try {
      m = JSON.parse(msg);
    } catch {
      return;
    }
    switch (m.type) {
      case "started":
        this.emit(m.id, { type: "started", attempt: m.attempt ?? 1 });
        this.positionsChanged();
        break;
      case "progress":
        if (m.progress) this.emit(m.id, { type: "progress", progress: m.progress });
        break;
      case "requeued":
        this.positionsChanged();
        break;
      default:
        if (this.listeners.has(m.id)) this.emitFinal(m.id);
        this.positionsChanged();
    }
  }

  /** Reads a finished job and tells its listeners how it ended. */
  private emitFinal(id: string): void {
    this.read(id).then((job) => {
      if (job && FINAL.includes(job.status)) {
        this.emit(id, { type: job.status === "succeeded" ? "done" : job.status as "failed" | "cancelled", job });
      }
    }).catch((e) => this.log(`job ${id}: could not read its final state: ${errorText(e)}`));
  }

  /** Tells every waiting job with a listener here its new place in line (once per burst of changes). */
  private positionsChanged(): void {
    if (this.positionsPending || this.listeners.size === 0) return;
    this.positionsPending = true;
    setTimeout(() => {
      this.positionsPending = false;
      if (this.listeners.size === 0) return;
      this.waiting().then((ids) => {
        ids.forEach((id, i) => {
          if (this.listeners.has(id)) this.emit(id, { type: "queued", position: i + 1 });
        });
      }).catch(() => {});
    }, 20);
  }

  /** After a reconnect events may have been missed: tell listeners the state as it is now. */
  private resync(): void {
    for (const id of this.listeners.ids()) {
      this.read(id).then((job) => {
        if (!job) return;
        if (FINAL.includes(job.status)) this.emitFinal(id);
        else if (job.status === "running" && job.progress) this.emit(id, { type: "progress", progress: job.progress });
      }).catch(() => {});
    }
    this.positionsChanged();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Writing (API side)

  private async checkRoom(): Promise<void> {
    const n = await this.cmd.llen(this.queue.keys.wait);
    if (n >= this.maxQueued) throw new QueueFullError(n, await this.retryAfter());
  }

  /** Stores the job (its video as bytes in Redis) and queues it. Throws QueueFullError when maxQueued jobs wait. */
  submit(req: JobRequest, videoFile?: string): Promise<Job> {
    return this.op(async () => {
      await this.checkRoom();
      const id = crypto.randomUUID();
      const { video: bytes, ...stored } = req;
      // Redis takes the bytes in one SET: an upload on disk is read once, here.
      const video = bytes ?? (videoFile ? await Deno.readFile(videoFile) : undefined);
      const seq = await this.cmd.incr(this.keys.seq);
      const m = this.cmd.multi();
      if (video) m.set(this.keys.video(id), Buffer.from(video.buffer, video.byteOffset, video.byteLength));
      m.hset(this.keys.job(id), {
        id,
        seq,
        status: "queued",
        request: JSON.stringify(stored),
        createdAt: Date.now(),
        attempts: 0,
      });
      m.zadd(this.keys.jobs, seq, id);
      await m.exec();
      try {
        await this.queue.add("run", { id }, { jobId: id, removeOnComplete: true, removeOnFail: true });
      } catch (e) {
        await this.forget(id).catch(() => {});
        throw e;
      }
      // Submits on other nodes may have filled the queue meanwhile: a job beyond the limit is taken back.
      const pos = await this.position(id);
      if (pos > this.maxQueued && await this.queue.remove(id) === 1) {
        await this.forget(id);
        throw new QueueFullError(pos - 1, await this.retryAfter());
      }
      return (await this.read(id))!;
    });
  }

  /** Removes every trace of a job that never ran (a refused submit). */
  private async forget(id: string): Promise<void> {
    await this.cmd.multi().del(this.keys.job(id), this.keys.video(id)).zrem(this.keys.jobs, id).exec();
  }

  cancel(id: string): Promise<"cancelled" | "cancelling" | "deleted" | null> {
    return this.op(async () => {
      const k = this.keys;
      const status = await this.cmd.hget(k.job(id), "status") as JobStatus | null;
      if (!status) return null;
      if (FINAL.includes(status)) {
        await this.queue.remove(id).catch(() => 0);
        const n = await this.cmd.zvDeleteFinished(
          k.job(id),
          k.video(id),
          k.result(id),
          k.jobs,
          k.done,
          k.results,
          k.resultBytes,
          id,
        );
        return n === 1 ? "deleted" : null;
      }
      // Not locked by a worker: BullMQ removes it from the wait list and no worker will ever start it.
      if (await this.queue.remove(id) === 1) {
        const n = await this.cmd.zvCancelWaiting(k.job(id), k.video(id), k.done, Date.now(), k.events, id, k.cancel);
        if (n === 1) this.log(`job ${id}: cancelled while queued`);
        return "cancelled";
      }
      const n = await this.cmd.zvRequestCancel(k.job(id), k.cancel, id);
      return n === 1 ? "cancelling" : "cancelled";
    });
  }

  // -------------------------------------------------------------------------------------------------------------
  // Worker side

  startWorker(runner: Runner, about: WorkerAbout = {}): void {
    if (this.worker || this.closed) return;
    this.runner = runner;
    this.about = about;
    const a = this.address;
    this.worker = new Worker("jobs", (job, token) => this.process(job, token), {
      connection: { ...ioredisOptions(a), maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(250 * n, 2000) },
      prefix: this.keys.bull,
      concurrency: 1,
      lockDuration: this.stallMs,
      stalledInterval: Math.max(500, Math.round(this.stallMs / 2)),
      // Our START script decides when an interrupted job has had enough (twice); BullMQ must never fail it itself.
      maxStalledCount: 1000,
    });
    let lastWorkerError = "";
    this.worker.on("error", (e) => {
      const t = errorText(e);
      if (t !== lastWorkerError && !isConnectionError(e)) this.log(`worker: ${t}`);
      lastWorkerError = t;
    });
    const beat = () => this.heartbeat().catch(() => {});
    beat();
    const t = setInterval(beat, HEARTBEAT_MS);
    Deno.unrefTimer(t);
    this.timers.push(t);
  }

  private async heartbeat(): Promise<void> {
    let models: Record<string, unknown>[] | undefined;
    try {
      models = await this.about.models?.();
    } catch (e) {
      this.log(`worker: cannot list its models: ${errorText(e)}`);
    }
    const w: WorkerEntry = {
      id: this.workerId,
      host: hostname(),
      pid: Deno.pid,
      adapter: this.about.adapter,
      gpu: this.about.gpu,
      models,
      running: this.current?.id ?? null,
      seenAt: Date.now(),
      goneAfterMs: this.stallMs,
    };
    await this.cmd.hset(this.keys.workers, this.workerId, JSON.stringify(w));
  }

  private process(job: BullJob, token?: string): Promise<void> {
    const id = job.id!;
    const ac = new AbortController();
    const cur: Running = { id, ac, done: Promise.resolve() };
    this.current = cur;
    cur.done = this.run(job, token ?? "", cur).finally(async () => {
      if (this.current === cur) this.current = null;
      this.heartbeat().catch(() => {});
      // Retention after every job, whatever its end (the hourly sweep covers a quiet queue).
      await this.sweep().catch((e) => this.log(`retention sweep: ${errorText(e)}`));
    });
    return cur.done;
  }

  private async run(job: BullJob, token: string, cur: Running): Promise<void> {
    const id = cur.id, k = this.keys;
    const owner = `${this.workerId}:${token}`;
    const s = await this.persist(
      `job ${id}`,
      () => this.cmd.zvStart(k.job(id), k.video(id), k.done, owner, Date.now(), k.events, id, INTERRUPTED_TWICE),
    );
    if (s[0] === "failed") this.log(`job ${id}: ${INTERRUPTED_TWICE}`);
    if (s[0] !== "run") return; // deleted, or ended already: a job ends once
    if (s[1] === "1") cur.ac.abort(CANCELLED);
    const attempt = Number(s[2]);
    this.heartbeat().catch(() => {});
    const started = Date.now();

    let progress: JobProgress | null = null;
    let result: JobResult | null = null;
    let failure: unknown = null;
    try {
      const [request, video] = await this.persist(
        `job ${id}`,
        () => Promise.all([this.cmd.hget(k.job(id), "request"), this.cmd.getBuffer(k.video(id))]),
      );
      const stored = JSON.parse(request!) as StoredRequest;
      this.log(`job ${id}: started (${stored.mode}${attempt > 1 ? `, attempt ${attempt}` : ""})`);
      const req: JobRequest = video ? { ...stored, video: new Uint8Array(video) } : stored;
      if (cur.ac.signal.aborted) throw new DOMException("aborted before start", "AbortError");
      let written = 0, checked = Date.now();
      result = await this.runner!(req, {
        signal: cur.ac.signal,
        onProgress: (p) => {
          if (p.preview) {
            // A preview goes to listeners only: the job's progress stays the last step.
            const msg: EventMessage = { id, type: "progress", progress: p };
            this.cmd.publish(k.events, JSON.stringify(msg)).catch(() => {});
            return;
          }
          const stageChanged = p.stage !== progress?.stage;
          progress = { ...p };
          const msg: EventMessage = { id, type: "progress", progress };
          this.cmd.publish(k.events, JSON.stringify(msg)).catch(() => {});
          const now = Date.now();
          if (now - written > 1000 || stageChanged) {
            written = now;
            this.cmd.hset(k.job(id), "progress", JSON.stringify(progress)).catch(() => {});
          }
          // The cancel message may have been missed (a reconnect): the flag is the record.
          if (now - checked > 1000) {
            checked = now;
            this.cmd.hget(k.job(id), "cancelRequested").then((v) => {
              if (v === "1") cur.ac.abort(CANCELLED);
            }).catch(() => {});
          }
        },
      });
    } catch (e) {
      failure = e;
    }
    const now = Date.now();
    const signal = cur.ac.signal;
    const fields: Record<string, string> = progress ? { progress: JSON.stringify(progress) } : {};
    const finish = (status: JobStatus, more: Record<string, string>, bytes?: Uint8Array, took?: number) =>
      this.persist(`job ${id}`, () =>
        this.cmd.zvFinish(
          k.job(id),
          k.video(id),
          k.done,
          k.result(id),
          k.results,
          k.resultBytes,
          k.durations,
          owner,
          status,
          now,
          k.events,
          id,
          JSON.stringify({ ...fields, ...more }),
          bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : "",
          Math.max(1, Math.round(this.keepMs)),
          took ?? "",
          status === "succeeded" ? "done" : status,
          k.cancel,
        ));
    const lostIt = () => this.log(`job ${id}: it ended elsewhere meanwhile; this run's outcome is dropped`);
    const secs = ((now - started) / 1000).toFixed(1);

    const killed = failure instanceof JobKilledError; // failed below, not re-queued nor "cancelled"
    if (signal.aborted && signal.reason === SHUTDOWN && !killed) {
      // Graceful stop: back to the head of the queue, this attempt not counted.
      const n = await this.persist(`job ${id}`, () => this.cmd.zvRequeue(k.job(id), owner, k.events, id));
      if (n === 1) {
        await job.moveToWait(token);
        this.log(`job ${id}: stopped by shutdown, re-queued`);
        throw new WaitingError();
      }
      return;
    }
    if (signal.aborted && !killed) {
      if (await finish("cancelled", {}) === 1) this.log(`job ${id}: cancelled while running (${secs} s)`);
      else lostIt();
      return;
    }
    if (result) {
      let out: { more: Record<string, string>; info: ResultInfo } | null = null;
      try {
        const format = result.format;
        if (!Object.hasOwn(CONTENT_TYPES, format)) throw new Error(`unknown output format ${JSON.stringify(format)}`);
        if (result.bytes.length > this.maxResultBytes) {
          throw new Error(
            `the video is ${size(result.bytes.length)}, more than the queue stores (${size(this.maxResultBytes)})`,
          );
        }
        // Bytes (an echoed input video) have no place in the stored parameters.
        const params = Object.fromEntries(
          Object.entries(result.params ?? {}).filter(([, v]) => !(v instanceof Uint8Array)),
        );
        const info: ResultInfo = {
          format,
          contentType: result.contentType || CONTENT_TYPES[format] || "application/octet-stream",
          bytes: result.bytes.length,
          frames: result.frames,
          width: result.width,
          height: result.height,
          fps: result.fps,
          available: true,
        };
        out = {
          info,
          more: {
            params: JSON.stringify(params),
            timings: JSON.stringify(result.timings ?? {}),
            result: JSON.stringify(info),
          },
        };
      } catch (e) {
        failure = e;
      }
      if (out) {
        if (await finish("succeeded", out.more, result.bytes, now - started) === 1) {
          this.log(`job ${id}: succeeded in ${secs} s (${out.info.bytes} bytes ${out.info.format})`);
        } else lostIt();
        return;
      }
    }
    const field = failure instanceof Error && failure.name === "RequestError"
      ? (failure as Error & { field?: string }).field ?? null
      : null;
    const message = isAbort(failure) ? "stopped" : errorText(failure);
    if (await finish("failed", { error: message, ...(field ? { errorField: field } : {}) }) === 1) {
      this.log(`job ${id}: failed: ${message}`);
    } else lostIt();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Retention

  /** Results past keepMs, then the oldest beyond keepBytes (not the newest); finished jobs beyond keepJobs. */
  async sweep(now = Date.now()): Promise<void> {
    const k = this.keys;
    const drop = (id: string) => this.cmd.zvDropResult(k.job(id), k.result(id), k.results, k.resultBytes, id);
    for (const id of await this.cmd.zrangebyscore(k.results, "-inf", now - this.keepMs)) await drop(id);
    const sizes = await this.cmd.hgetall(k.resultBytes);
    let total = Object.values(sizes).reduce((a, b) => a + Number(b), 0);
    if (total > this.keepBytes) {
      // Oldest first; the newest stays even past the budget, so a job never reports a result that is already gone.
      for (const id of (await this.cmd.zrange(k.results, 0, -1)).slice(0, -1)) {
        if (total <= this.keepBytes) break;
        await drop(id);
        total -= Number(sizes[id] ?? 0);
      }
    }
    const n = await this.cmd.zcard(k.done);
    if (n > this.keepJobs) {
      for (const id of await this.cmd.zrange(k.done, 0, n - this.keepJobs - 1)) {
        const gone = await this.cmd.zvDeleteFinished(
          k.job(id),
          k.video(id),
          k.result(id),
          k.jobs,
          k.done,
          k.results,
          k.resultBytes,
          id,
        );
        if (gone === 0) await this.cmd.zrem(k.done, id);
      }
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Stopping

  /**
   * Graceful stop: no new jobs start here, a job running here is aborted and goes back to the head of the queue,
   * listeners get "closed", the connections close. Queued jobs stay in Redis.
   */
  async close(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    if (this.worker) {
      this.current?.ac.abort(SHUTDOWN);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = await Promise.race([
        this.worker.close().then(() => false, () => false),
        new Promise<boolean>((r) => timer = setTimeout(() => r(true), timeoutMs)),
      ]);
      clearTimeout(timer);
      if (late) {
        // A runner that ignores its signal: its lock expires and another worker takes the job up.
        this.log(`job ${this.current?.id}: did not stop within ${timeoutMs} ms; closing anyway`);
        await this.worker.close(true).catch(() => {});
      }
      await this.cmd.hdel(this.keys.workers, this.workerId).catch(() => {});
    }
    this.listeners.closeAll({ type: "closed" });
    await this.queue.close().catch(() => {});
    this.sub.disconnect();
    await this.cmd.quit().catch(() => this.cmd.disconnect());
  }
}
