// The job queue for one box (the JobQueue of types.ts on SQLite): the process that serves the API is also the one
// GPU worker, which runs jobs one at a time in submission order. Jobs and results live in the data directory so a
// restart loses nothing:
//   <data>/jobs.sqlite      one row per job (node:sqlite), the request without the video bytes
//   <data>/uploads/<id>     the uploaded video of a queued job (deleted when the job ends)
//   <data>/results/<id>.<format>  the finished video
// Every file is written atomically (temp file + rename), and a row points at a file only after the rename, so a
// crash leaves either the old state or the new one; stray files are swept at startup.
//
// Crash policy (types.ts), here: a job found "running" at open was interrupted. It is re-queued at the head of the
// queue once; a job interrupted a second time is marked failed ("interrupted twice"). close() aborts the running
// job and puts it back at the head of the queue without counting an attempt.
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
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
  type ResultInfo,
  type ResultLookup,
  type Runner,
  type StoredRequest,
} from "./types.ts";
import { RequestError } from "../../pipeline/errors.ts";
import { errorText, Listeners } from "./listeners.ts";

export interface QueueOptions {
  dataDir: string;
  /** Most jobs waiting (the running one not counted); more are refused with QueueFullError. Default 20. */
  maxQueued?: number;
  /** Results older than this are deleted (their job rows stay, marked expired). Default 7 days. */
  keepMs?: number;
  /** Results beyond this many bytes in all are deleted, oldest first. Default 2 GiB. */
  keepBytes?: number;
  /** Finished job rows kept (newest); older rows are deleted with their files. Default 1000. */
  keepJobs?: number;
  /** Log lines (one per job start/end/recovery). Default: console.log. */
  log?: (line: string) => void;
}

interface Row {
  id: string;
  seq: number;
  status: JobStatus;
  request: string;
  video_file: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  attempts: number;
  progress: string | null;
  params: string | null;
  timings: string | null;
  error: string | null;
  error_field: string | null;
  result_file: string | null;
  result: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  status TEXT NOT NULL,
  request TEXT NOT NULL,
  video_file TEXT,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  progress TEXT,
  params TEXT,
  timings TEXT,
  error TEXT,
  error_field TEXT,
  result_file TEXT,
  result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status_seq ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
`;

/** Fills a temporary file beside `path` with `fill`, syncs it, then renames it over `path`: readers see the old
 *  file or the whole new one, never a part; a failure leaves no temporary behind. */
async function replaceAtomic(path: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await fill(tmp);
    const f = await Deno.open(tmp, { write: true });
    try {
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Writes `bytes` to `path` atomically (replaceAtomic). */
export function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  return replaceAtomic(path, (tmp) => Deno.writeFile(tmp, bytes));
}

/** Copies `from` to `path` atomically (an upload on disk, never read into memory). */
function copyAtomic(from: string, path: string): Promise<void> {
  return replaceAtomic(path, (tmp) => Deno.copyFile(from, tmp));
}

function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === "Cancelled" || e.name === "AbortError");
}

/** The abort reason of a graceful stop (the job goes back to the queue, not to "cancelled"). */
const SHUTDOWN = "server shutting down";

export class SqliteQueue implements JobQueue {
  readonly backend = "sqlite";
  readonly dataDir: string;
  readonly maxQueued: number;
  private db: DatabaseSync;
  private runner: Runner | null = null;
  private worker: { id: string; startedAt: number; adapter?: string } | null = null;
  private keepMs: number;
  private keepBytes: number;
  private keepJobs: number;
  private log: (line: string) => void;
  private listeners: Listeners;
  private current: { id: string; ac: AbortController; progress: JobProgress | null; done: Promise<void> } | null = null;
  private closed = false;
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  private durations: number[] = [];
  private progressWritten = 0;

  private constructor(opts: QueueOptions, db: DatabaseSync) {
    this.dataDir = opts.dataDir;
    this.db = db;
    this.maxQueued = opts.maxQueued ?? 20;
    this.keepMs = opts.keepMs ?? 7 * 24 * 3600e3;
    this.keepBytes = opts.keepBytes ?? 2 * 1024 ** 3;
    this.keepJobs = opts.keepJobs ?? 1000;
    this.log = opts.log ?? ((l) => console.log(l));
    this.listeners = new Listeners(this.log);
  }

  /** Opens (or creates) the data directory, recovers interrupted jobs and sweeps stray files; no job runs before
   * startWorker. */
  static async open(opts: QueueOptions): Promise<SqliteQueue> {
    if (!Number.isInteger(opts.maxQueued ?? 20) || (opts.maxQueued ?? 20) < 1) {
      throw new RangeError(`maxQueued must be a positive integer, got ${opts.maxQueued}`);
    }
    await Deno.mkdir(join(opts.dataDir, "uploads"), { recursive: true });
    await Deno.mkdir(join(opts.dataDir, "results"), { recursive: true });
    const db = new DatabaseSync(join(opts.dataDir, "jobs.sqlite"));
    try {
      db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
      db.exec(SCHEMA);
    } catch (e) {
      db.close();
      throw new Error(`cannot open the job database in ${opts.dataDir}: ${errorText(e)}`);
    }
    const q = new SqliteQueue(opts, db);
    q.recover();
    await q.sweepFiles();
    await q.sweepResults();
    // Hourly retention sweep; unref'd so it never keeps a process (or a test) alive.
    q.sweepTimer = setInterval(() => q.sweepResults().catch((e) => q.log(`retention sweep: ${errorText(e)}`)), 3600e3);
    Deno.unrefTimer(q.sweepTimer!);
    return q;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Startup

  private recover(): void {
    const rows = this.db.prepare("SELECT id, attempts FROM jobs WHERE status = 'running'").all() as unknown as {
      id: string;
      attempts: number;
    }[];
    for (const r of rows) {
      if (r.attempts >= 2) {
        this.db.prepare(
          "UPDATE jobs SET status = 'failed', finished_at = ?, error = ?, video_file = NULL WHERE id = ?",
        ).run(
          Date.now(),
          "interrupted twice (the server stopped while this job was running); not retried again",
          r.id,
        );
        this.log(`job ${r.id}: interrupted twice, marked failed`);
      } else {
        this.db.prepare("UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL WHERE id = ?").run(
          r.id,
        );
        this.log(`job ${r.id}: was running when the server stopped, re-queued`);
      }
    }
  }

  /** Deletes temp files and files no row points at (a crash between writing a file and recording it). */
  private async sweepFiles(): Promise<void> {
    const keep = new Set<string>();
    for (const r of this.db.prepare("SELECT video_file, result_file FROM jobs").all() as unknown as Row[]) {
      if (r.video_file) keep.add(r.video_file);
      if (r.result_file) keep.add(r.result_file);
    }
    for (const sub of ["uploads", "results"]) {
      for await (const e of Deno.readDir(join(this.dataDir, sub))) {
        const rel = `${sub}/${e.name}`;
        if (!keep.has(rel)) await Deno.remove(join(this.dataDir, rel), { recursive: true }).catch(() => {});
      }
    }
  }

  /** Retention: results past keepMs, then the oldest beyond keepBytes; job rows beyond keepJobs. */
  async sweepResults(now = Date.now()): Promise<void> {
    const rows = this.db.prepare(
      "SELECT id, finished_at, result_file, result FROM jobs WHERE result_file IS NOT NULL ORDER BY finished_at DESC",
    ).all() as unknown as Row[];
    let total = 0;
    for (const r of rows) {
      const info = JSON.parse(r.result ?? "{}") as ResultInfo;
      total += info.bytes ?? 0;
    }
    for (let i = rows.length - 1; i >= 0; i--) {
      const r = rows[i];
      const info = JSON.parse(r.result ?? "{}") as ResultInfo;
      const old = r.finished_at !== null && now - r.finished_at > this.keepMs;
      // The newest result outlives the byte budget (a result larger than the budget stays until the next one), so
      // a job never reports a result that is already gone.
      if (!old && (total <= this.keepBytes || i === 0)) continue;
      await Deno.remove(join(this.dataDir, r.result_file!)).catch(() => {});
      this.db.prepare("UPDATE jobs SET result_file = NULL, result = ? WHERE id = ?").run(
        JSON.stringify({ ...info, available: false }),
        r.id,
      );
      total -= info.bytes ?? 0;
    }
    const stale = this.db.prepare(
      `SELECT id, video_file, result_file FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')
       ORDER BY finished_at DESC LIMIT -1 OFFSET ?`,
    ).all(this.keepJobs) as unknown as Row[];
    for (const r of stale) {
      for (const f of [r.video_file, r.result_file]) if (f) await Deno.remove(join(this.dataDir, f)).catch(() => {});
      this.db.prepare("DELETE FROM jobs WHERE id = ?").run(r.id);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Reading

  private toJob(r: Row): Job {
    const running = this.current?.id === r.id ? this.current : null;
    return {
      id: r.id,
      seq: r.seq,
      status: r.status,
      request: JSON.parse(r.request),
      createdAt: r.created_at,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      attempts: r.attempts,
      progress: running?.progress ?? (r.progress ? JSON.parse(r.progress) : null),
      params: r.params ? JSON.parse(r.params) : null,
      timings: r.timings ? JSON.parse(r.timings) : null,
      error: r.error,
      errorField: r.error_field,
      result: r.result ? JSON.parse(r.result) : null,
      cancelRequested: running ? running.ac.signal.aborted : false,
    };
  }

  private row(id: string): Row | undefined {
    return this.db.prepare("SELECT * FROM jobs WHERE id = ?").get(id) as unknown as Row | undefined;
  }

  private job(id: string): Job | null {
    const r = this.row(id);
    return r ? this.toJob(r) : null;
  }

  get(id: string): Promise<Job | null> {
    return Promise.resolve(this.job(id));
  }

  list(limit = 50): Promise<Job[]> {
    const rows = this.db.prepare("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?").all(limit) as unknown as Row[];
    return Promise.resolve(rows.map((r) => this.toJob(r)));
  }

  position(id: string): Promise<number> {
    return Promise.resolve(this.positionNow(id));
  }

  private positionNow(id: string): number {
    const r = this.db.prepare("SELECT seq, status FROM jobs WHERE id = ?").get(id) as unknown as Row | undefined;
    if (!r || r.status !== "queued") return 0;
    const n = this.db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued' AND seq <= ?").get(r.seq) as {
      n: number;
    };
    return n.n;
  }

  /** Jobs waiting now. */
  get queued(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'").get() as { n: number }).n;
  }

  /** The job the worker runs now. */
  get runningId(): string | null {
    return this.current?.id ?? null;
  }

  counts(): Promise<QueueCounts> {
    return Promise.resolve({ queued: this.queued, running: this.current ? 1 : 0, max: this.maxQueued });
  }

  async openResult(id: string): Promise<ResultLookup> {
    const r = this.row(id);
    if (!r) return { missing: "unknown" };
    if (r.status !== "succeeded") return { missing: "not-ready" };
    if (!r.result_file) return { missing: "expired" };
    const path = join(this.dataDir, r.result_file);
    const st = await Deno.stat(path).catch(() => null);
    if (!st?.isFile) return { missing: "expired" };
    return {
      info: JSON.parse(r.result!) as ResultInfo,
      size: st.size,
      read: async (start, end) => {
        const out = new Uint8Array(Math.max(0, end - start));
        using f = await Deno.open(path, { read: true });
        await f.seek(start, Deno.SeekMode.Start);
        let off = 0;
        while (off < out.length) {
          const n = await f.read(out.subarray(off));
          if (n === null) throw new Error(`the result file ended at ${start + off} bytes`);
          off += n;
        }
        return out;
      },
    };
  }

  health(): Promise<QueueHealth> {
    const w = this.worker;
    const workers = w
      ? [{ id: w.id, host: hostname(), pid: Deno.pid, adapter: w.adapter, running: this.runningId, seenAt: Date.now() }]
      : [];
    return Promise.resolve({
      backend: "sqlite",
      ok: !this.closed,
      ...(this.closed ? { error: "closed" } : {}),
      workers,
    });
  }

  /** Seconds a client should wait before trying again when the queue is full: about one job's time (a slot frees
   * when the running job ends), from the last ten jobs, 30 s before any ran. */
  retryAfter(): number {
    const d = this.durations.length ? this.durations.reduce((a, b) => a + b, 0) / this.durations.length : 30e3;
    return Math.max(1, Math.min(3600, Math.ceil(d / 1000)));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Events

  subscribe(id: string, fn: (ev: JobEvent) => void): Promise<() => void> {
    return Promise.resolve(this.listeners.add(id, fn));
  }

  private emit(id: string, ev: JobEvent): void {
    this.listeners.emit(id, ev);
  }

  /** Tells every waiting job with a listener its new place in line. */
  private emitPositions(): void {
    if (this.listeners.size === 0) return;
    const rows = this.db.prepare("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq").all() as unknown as Row[];
    rows.forEach((r, i) => {
      if (this.listeners.has(r.id)) this.emit(r.id, { type: "queued", position: i + 1 });
    });
  }

  // -------------------------------------------------------------------------------------------------------------
  // Writing

  /**
   * Stores a job (video bytes as a file) and wakes the worker. Throws QueueFullError when maxQueued jobs wait.
   * The check and the insert run without an await between them, so concurrent submits cannot overfill the queue.
   */
  async submit(req: JobRequest, from?: string): Promise<Job> {
    if (this.closed) throw new Error("the queue is closed");
    this.checkRoom();
    const id = crypto.randomUUID();
    const { video, ...stored } = req;
    let videoFile: string | null = null;
    if (video || from) {
      videoFile = `uploads/${id}`;
      const path = join(this.dataDir, videoFile);
      if (video) await writeAtomic(path, video);
      else await copyAtomic(from!, path);
    }
    try {
      this.checkRoom(); // again: other submits may have filled the queue while the upload was written
    } catch (e) {
      if (videoFile) await Deno.remove(join(this.dataDir, videoFile)).catch(() => {});
      throw e;
    }
    const seq = (this.db.prepare("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM jobs").get() as { s: number }).s;
    this.db.prepare(
      "INSERT INTO jobs (id, seq, status, request, video_file, created_at) VALUES (?, ?, 'queued', ?, ?, ?)",
    ).run(id, seq, JSON.stringify(stored), videoFile, Date.now());
    queueMicrotask(() => this.pump());
    return this.job(id)!;
  }

  private checkRoom(): void {
    const n = this.queued;
    if (n >= this.maxQueued) throw new QueueFullError(n, this.retryAfter());
  }

  /**
   * Cancels a waiting job (now), asks a running one to stop (it ends "cancelled" at its next step), or deletes a
   * finished one with its result. Returns what happened, or null for an unknown id.
   */
  async cancel(id: string): Promise<"cancelled" | "cancelling" | "deleted" | null> {
    const r = this.row(id);
    if (!r) return null;
    if (r.status === "running" && this.current?.id === id) {
      this.current.ac.abort(new Error("cancelled by request"));
      return "cancelling";
    }
    if (r.status === "queued") {
      this.db.prepare("UPDATE jobs SET status = 'cancelled', finished_at = ?, video_file = NULL WHERE id = ?").run(
        Date.now(),
        id,
      );
      if (r.video_file) await Deno.remove(join(this.dataDir, r.video_file)).catch(() => {});
      this.log(`job ${id}: cancelled while queued`);
      this.emit(id, { type: "cancelled", job: this.job(id)! });
      this.emitPositions();
      return "cancelled";
    }
    this.db.prepare("DELETE FROM jobs WHERE id = ?").run(id);
    for (const f of [r.video_file, r.result_file]) if (f) await Deno.remove(join(this.dataDir, f)).catch(() => {});
    return "deleted";
  }

  startWorker(runner: Runner, about: { adapter?: string } = {}): void {
    if (this.runner) return;
    this.runner = runner;
    this.worker = { id: `${hostname()}:${Deno.pid}`, startedAt: Date.now(), ...about };
    queueMicrotask(() => this.pump());
  }

  private pump(): void {
    if (this.current || this.closed || !this.runner) return;
    const r = this.db.prepare("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").get() as unknown as
      | Row
      | undefined;
    if (!r) return;
    const ac = new AbortController();
    const cur = { id: r.id, ac, progress: null as JobProgress | null, done: Promise.resolve() };
    this.current = cur;
    cur.done = this.run(r, cur).catch((e) => this.log(`job ${r.id}: worker error: ${errorText(e)}`)).finally(() => {
      this.current = null;
      this.pump();
    });
  }

  private async run(r: Row, cur: { id: string; ac: AbortController; progress: JobProgress | null }): Promise<void> {
    const id = r.id;
    const attempts = r.attempts + 1;
    const started = Date.now();
    this.db.prepare("UPDATE jobs SET status = 'running', started_at = ?, attempts = ? WHERE id = ?").run(
      started,
      attempts,
      id,
    );
    const stored = JSON.parse(r.request) as StoredRequest;
    this.log(`job ${id}: started (${stored.mode}${attempts > 1 ? `, attempt ${attempts}` : ""})`);
    this.emit(id, { type: "started", attempt: attempts });
    this.emitPositions();

    let result: JobResult | null = null;
    let failure: unknown = null;
    try {
      const video = r.video_file ? await Deno.readFile(join(this.dataDir, r.video_file)) : undefined;
      const req: JobRequest = video ? { ...stored, video } : stored;
      if (cur.ac.signal.aborted) throw new DOMException("aborted before start", "AbortError");
      result = await this.runner!(req, {
        signal: cur.ac.signal,
        onProgress: (p) => {
          // A preview goes to listeners only: the job's progress stays the last step.
          if (p.preview) return this.emit(id, { type: "progress", progress: p });
          cur.progress = { ...p };
          this.emit(id, { type: "progress", progress: cur.progress });
          const now = Date.now();
          if (now - this.progressWritten > 1000) {
            this.progressWritten = now;
            this.db.prepare("UPDATE jobs SET progress = ? WHERE id = ?").run(JSON.stringify(cur.progress), id);
          }
        },
      });
    } catch (e) {
      failure = e;
    }
    const now = Date.now();
    const aborted = cur.ac.signal.aborted;
    const killed = failure instanceof JobKilledError; // failed below, not re-queued nor "cancelled"
    const shutdown = aborted && cur.ac.signal.reason === SHUTDOWN && !killed;
    const progress = cur.progress ? JSON.stringify(cur.progress) : null;

    if (shutdown) {
      // Graceful stop: back to the head of the queue; this attempt does not count.
      this.db.prepare(
        "UPDATE jobs SET status = 'queued', started_at = NULL, attempts = ?, progress = NULL WHERE id = ?",
      ).run(r.attempts, id);
      this.log(`job ${id}: stopped by shutdown, re-queued`);
      return;
    }
    if (aborted && !killed) {
      this.exec("UPDATE jobs SET status = 'cancelled', finished_at = ?, progress = ? WHERE id = ?", [
        now,
        progress,
        id,
      ]);
      this.log(`job ${id}: cancelled while running (${((now - started) / 1000).toFixed(1)} s)`);
      await this.dropUpload(r);
      this.emit(id, { type: "cancelled", job: this.job(id)! });
      return;
    }
    if (result) {
      try {
        const format = result.format;
        if (!Object.hasOwn(CONTENT_TYPES, format)) throw new Error(`unknown output format ${JSON.stringify(format)}`);
        const file = `results/${id}.${format}`;
        // Bytes (an echoed input video) have no place in the stored parameters.
        const params = Object.fromEntries(
          Object.entries(result.params ?? {}).filter(([, v]) => !(v instanceof Uint8Array)),
        );
        await writeAtomic(join(this.dataDir, file), result.bytes);
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
        this.exec(
          `UPDATE jobs SET status = 'succeeded', finished_at = ?, progress = ?, params = ?, timings = ?,
           result_file = ?, result = ? WHERE id = ?`,
          [now, progress, JSON.stringify(params), JSON.stringify(result.timings ?? {}), file, JSON.stringify(info), id],
        );
        this.durations.push(now - started);
        if (this.durations.length > 10) this.durations.shift();
        this.log(`job ${id}: succeeded in ${((now - started) / 1000).toFixed(1)} s (${info.bytes} bytes ${format})`);
        await this.dropUpload(r);
        this.emit(id, { type: "done", job: this.job(id)! });
        await this.sweepResults().catch((e) => this.log(`retention sweep: ${errorText(e)}`));
        return;
      } catch (e) {
        failure = new Error(`could not store the result: ${errorText(e)}`);
      }
    }
    const field = failure instanceof RequestError ? failure.field : null;
    const message = isAbort(failure) ? "stopped" : errorText(failure);
    this.exec(
      "UPDATE jobs SET status = 'failed', finished_at = ?, progress = ?, error = ?, error_field = ? WHERE id = ?",
      [now, progress, message, field, id],
    );
    this.log(`job ${id}: failed: ${message}`);
    await this.dropUpload(r);
    this.emit(id, { type: "failed", job: this.job(id)! });
  }

  private exec(sql: string, args: (string | number | null)[]): void {
    this.db.prepare(sql).run(...args);
  }

  private async dropUpload(r: Row): Promise<void> {
    if (!r.video_file) return;
    this.db.prepare("UPDATE jobs SET video_file = NULL WHERE id = ?").run(r.id);
    await Deno.remove(join(this.dataDir, r.video_file)).catch(() => {});
  }

  /** Waits until no job is queued or running (after startWorker; for tests). */
  async idle(): Promise<void> {
    while (this.current || (this.queued > 0 && !this.closed)) {
      if (this.current) await this.current.done;
      else await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Graceful stop: no new jobs start, the running one is aborted and goes back to the head of the queue, the
   * database is closed. Queued jobs stay queued for the next start.
   */
  async close(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    const cur = this.current;
    if (cur) {
      cur.ac.abort(SHUTDOWN);
      // A runner that ignores its signal must not hold the shutdown forever: past the timeout its row stays
      // "running", which the next start treats as an interrupted job (re-queued once).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = await Promise.race([
        cur.done.then(() => false),
        new Promise<boolean>((r) => timer = setTimeout(() => r(true), opts.timeoutMs ?? 10_000)),
      ]);
      clearTimeout(timer);
      if (late) this.log(`job ${cur.id}: did not stop within ${opts.timeoutMs ?? 10_000} ms; closing anyway`);
    }
    this.listeners.closeAll({ type: "closed" });
    this.db.close();
  }
}
