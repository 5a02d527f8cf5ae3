// The server's wiring: the queue, the model registry and the app (routes/app.ts) as one ZerovidServer
// (openServer, what the tests drive), and `serve(args)`, which `main.ts serve` runs: the GPU, the listener, the
// worker, and a clean stop on SIGINT/SIGTERM.
//
// One box: SQLite in the data directory, one process takes requests and runs jobs. Many machines (--queue
// redis://...): each process is an API node (--role api: HTTP, no GPU, the models its workers announce), a worker
// (--role worker: one GPU, no HTTP) or both.
import type { Hono } from "hono";
import type { JobRequest } from "../pipeline/job/types.ts";
import type { DeviceInfo, ProbedVideo } from "../pipeline/job/validate.ts";
import type { FieldLimits } from "../pipeline/job/fields.ts";
import { RequestError } from "../pipeline/errors.ts";
import { type JobQueue, QueueUnavailableError, type Runner } from "./queue/types.ts";
import { SqliteQueue } from "./queue/sqlite.ts";
import { type ModelEntry, ModelRegistry } from "./registry.ts";
import { DEFAULT_LIMITS, type Limits } from "./schema.ts";
import { createApp, type Health } from "./app.ts";
import { serveFronted } from "./front.ts";
import type { BrowserSafety } from "./app/guard.ts";
import {
  defaultDataDir,
  parseServeArgs,
  type Role,
  SERVE_FLAGS,
  SERVE_USAGE,
  ServeArgError,
  type ServeArgs,
} from "./cli.ts";

export interface ServerOptions {
  /** Runs one job with model paths (runJob in production). */
  runner: Runner;
  dataDir: string;
  /** Folders with models; none = the built-in demo model. */
  modelRoots: string[];
  limits?: Partial<Limits>;
  token?: string;
  /** Checks and completes a request (validateRequest), or throws RequestError; an API node's asks its workers. */
  validate: (req: JobRequest, limits: FieldLimits, video?: ProbedVideo) => JobRequest | Promise<JobRequest>;
  health?: () => Health;
  /** Start running queued jobs right away (default true; serve() starts the worker once it listens). */
  autostart?: boolean;
  /** Result retention (see QueueOptions). */
  keepMs?: number;
  keepBytes?: number;
  log?: (line: string) => void;
  /** Origin/Host checks for browsers (routes/app/guard.ts). */
  browser?: BrowserSafety;
  /** Upload slots and the body idle timeout (routes/app/intake.ts). */
  intake?: { uploadSlots?: number; idleMs?: number };
  /** A Redis URL: the queue many nodes share (routes/queue/redis.ts). Default: SQLite in dataDir. */
  queue?: string;
  /** api: runs no jobs, offers the models its workers announce; worker / both: runs jobs. Default both. */
  role?: Role;
  /** Redis: how long a worker may go unheard before another takes its job. */
  stallMs?: number;
  /** This node's GPU (limits, memory cap), announced to API nodes, which plan requests with it. */
  gpu?: DeviceInfo;
}

export interface ZerovidServer {
  app: Hono;
  queue: JobQueue;
  /** Makes this process the queue's worker (openServer does it unless autostart is false; never for role api). */
  startWorker(): void;
  models: ModelRegistry;
  limits: Limits;
  close(): Promise<void>;
}

/**
 * The runner the queue calls: model names (as stored) -> paths inside the roots as they are now, then `run`; the
 * result's parameters name models again, and messages name them as clients know them.
 */
export function namedRunner(models: ModelRegistry, run: Runner): Runner {
  return async (stored, hooks) => {
    const { paths, byPath } = await models.resolveRequest(stored);
    try {
      const res = await run(paths, hooks);
      const params: Record<string, unknown> = models.namesOf(res.params, byPath);
      delete params.video;
      return { ...res, params };
    } catch (e) {
      if (e instanceof Error) e.message = models.redact(e.message);
      throw e;
    }
  };
}

/** The models an API node offers: those every live worker announces (a job may run on any of them). */
export async function workerModels(queue: JobQueue): Promise<ModelEntry[]> {
  const h = await queue.health();
  if (!h.ok) throw new QueueUnavailableError(h.error ?? "the job queue is unavailable");
  const workers = h.workers ?? [];
  if (workers.length === 0) {
    throw new QueueUnavailableError(
      "no GPU worker is connected to the queue (none heard from lately), so no model can be checked or run: " +
        "start one with serve --role worker --queue ...",
    );
  }
  const lists = workers.map((w) => (w.models ?? []) as unknown as Omit<ModelEntry, "path">[]);
  const common = lists[0].filter((m) => lists.every((l) => l.some((x) => x.name === m.name && x.kind === m.kind)));
  return common.map((m) => ({ ...m, path: m.name }));
}

/** Opens the queue (SQLite over the data directory, or Redis) and builds the app (what serve() runs and tests drive). */
export async function openServer(o: ServerOptions): Promise<ZerovidServer> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...o.limits };
  for (const [k, v] of Object.entries(limits)) {
    if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`limit ${k} must be a positive number, got ${v}`);
  }
  const role = o.role ?? "both";
  if (role !== "both" && !o.queue) throw new RangeError(`role ${role} needs a shared queue (Redis)`);
  let queue: JobQueue;
  if (o.queue) {
    // Loaded only here: the one-box server never loads BullMQ.
    const { RedisQueue } = await import("./queue/redis.ts");
    queue = await RedisQueue.open({
      url: o.queue,
      maxQueued: limits.queueSize,
      keepMs: o.keepMs,
      keepBytes: o.keepBytes,
      stallMs: o.stallMs,
      log: o.log,
    });
  } else {
    queue = await SqliteQueue.open({
      dataDir: o.dataDir,
      maxQueued: limits.queueSize,
      keepMs: o.keepMs,
      keepBytes: o.keepBytes,
      log: o.log,
    });
  }
  const models = role === "api"
    ? new ModelRegistry([], { remote: () => workerModels(queue), rescanMs: 5000 })
    : new ModelRegistry(o.modelRoots);
  const runner = namedRunner(models, o.runner);
  const startWorker = () => {
    if (role === "api") return;
    queue.startWorker(runner, {
      adapter: o.health?.().adapter,
      gpu: o.gpu,
      models: async () => (await models.list()).map(({ path: _, ...m }) => m as Record<string, unknown>),
    });
  };
  if (o.autostart ?? true) startWorker();
  const app = createApp({
    queue,
    models,
    limits,
    token: o.token,
    validate: o.validate,
    health: o.health ?? (() => ({ adapter: "none", ok: true })),
    browser: o.browser,
    intake: o.intake,
  });
  return { app, queue, models, limits, startWorker, close: () => queue.close() };
}

function getEnv(k: string): string | undefined {
  try {
    return Deno.env.get(k) || undefined;
  } catch {
    return undefined; // no env permission: flags only
  }
}

/**
 * `main.ts serve [options]`: opens the GPU and the queue, serves until SIGINT/SIGTERM, then stops cleanly.
 * Returns the exit code: 0 after a clean stop (or --help), 2 for a bad option.
 */
export async function serve(args: string[]): Promise<number> {
  const env = Object.fromEntries(
    Object.values(SERVE_FLAGS).flatMap((f) => f.env ? [[f.env.name, getEnv(f.env.name)]] : []),
  );
  let a: ServeArgs;
  try {
    a = parseServeArgs(args, env);
  } catch (e) {
    if (!(e instanceof ServeArgError)) throw e;
    console.error(`error: ${e.message}`);
    return 2;
  }
  if (a.help) {
    console.log(SERVE_USAGE);
    return 0;
  }
  a.dataDir ||= defaultDataDir(getEnv);
  const api = a.role === "api";
  if (api && a.modelRoots.length) {
    console.error("note: --models is not used with --role api (the models are those the workers announce)");
  }
  for (const r of api ? [] : a.modelRoots) {
    const st = await Deno.stat(r).catch(() => null);
    if (!st?.isDirectory) {
      console.error(`error: --models ${r}: not a folder`);
      return 2;
    }
  }

  // The pipeline is loaded here, not at import, so tests of the app need no GPU. An API node opens no GPU. Jobs run
  // in the GPU worker thread (GPU work, decode, annotators, encode), so this thread stays free to answer; it
  // validates requests with the device facts the worker reported.
  const { validateRequest } = await import("../pipeline/job/validate.ts");
  const { DEMO_NOTICE } = await import("../pipeline/models/demo.ts");
  const { GpuWorker } = await import("./gpu_worker/host.ts");
  const gpu = api ? null : await GpuWorker.start({
    adapter: a.adapter,
    cacheBytes: a.cacheMb !== undefined ? a.cacheMb * 1024 * 1024 : undefined,
    maxGpuBytes: a.maxGpuMb !== undefined ? a.maxGpuMb * 1024 * 1024 : undefined,
    modelRoots: a.modelRoots,
    jobTimeoutMs: a.jobTimeoutS * 1000,
  });
  const device: DeviceInfo | undefined = gpu
    ? {
      f16: gpu.facts.f16,
      maxBinding: gpu.facts.maxBinding,
      maxBuffer: gpu.facts.maxBufferSize,
      maxGpuBytes: gpu.facts.maxGpuBytes,
    }
    : undefined;
  let server: ZerovidServer;
  try {
    server = await openServer({
      runner: (req, hooks) => gpu!.run(req, hooks),
      // Without a GPU the precision stays unset: the worker that runs the job picks it for its own GPU.
      // With a GPU, its limits (and --max-gpu-mb) let validation refuse a request that cannot fit.
      validate: device ? (req, limits, video) => validateRequest(req, device, limits, video) : async (
        req,
        limits,
        video,
      ) => {
        const r = validateRequest(req, undefined, limits, video);
        // Planned against each live worker's GPU (as announced now): refused when none of them could run it.
        const gpus = ((await server.queue.health()).workers ?? []).flatMap((w) => w.gpu ? [w.gpu] : []);
        let refusal: unknown = null;
        const fits = gpus.length === 0 || gpus.some((g) => {
          try {
            validateRequest(req, g, limits, video);
            return true;
          } catch (e) {
            if (!(e instanceof RequestError)) throw e;
            refusal ??= e;
            return false;
          }
        });
        if (!fits) throw refusal;
        if (req.precision === undefined) delete r.precision;
        return r;
      },
      gpu: device,
      dataDir: a.dataDir,
      modelRoots: api ? [] : a.modelRoots,
      limits: a.limits,
      token: a.token,
      keepMs: a.keepHours * 3600e3,
      keepBytes: a.keepMb * 1024 * 1024,
      queue: a.queue,
      role: a.role,
      stallMs: a.stallSeconds * 1000,
      browser: { listenHost: a.host, cors: a.cors, allowHosts: a.allowHosts },
      intake: { uploadSlots: a.uploadSlots, idleMs: a.bodyTimeoutS * 1000 },
      autostart: false,
      health: () => gpu ? gpu.health() : { adapter: "none (an API node: the workers run the jobs)", ok: true },
    });
  } catch (e) {
    await gpu?.close();
    if (!(e instanceof QueueUnavailableError)) throw e;
    console.error(`error: ${e.message}`);
    return 2;
  }
  if (gpu) {
    const list = await server.models.list();
    console.log(`GPU: ${gpu.facts.adapter}`);
    if (server.models.demo) console.log(`models: none configured (--models DIR): ${DEMO_NOTICE}`);
    else {
      console.log(`models: ${list.length} under ${a.modelRoots.join(", ")}`);
      for (const m of list) console.log(`  ${m.name} (${m.kind}: ${m.modes.join(", ") || "annotator"})`);
      if (list.length === 0) console.log("  (none found: every job will fail with 'no model for mode')");
    }
  } else console.log("GPU: none (an API node); models: those every worker announces (GET /v1/models)");
  const queued = (await server.queue.counts()).queued;
  if (a.queue) {
    const { parseRedisUrl } = await import("./queue/redis_url.ts");
    console.log(`queue: Redis at ${parseRedisUrl(a.queue).display}, role ${a.role} (${queued} job(s) waiting)`);
  } else console.log(`data: ${a.dataDir} (${queued} queued job(s) from before)`);
  if (a.token && a.role !== "worker") console.log("auth: a bearer token is required on /v1/*");

  if (a.role !== "worker") {
    // Uploads are probed with FFmpeg in WebAssembly on this thread: compile it now (~0.3 s), not inside the first
    // upload, and collect the 32 MB of wire bytes the compile leaves behind before any request arrives.
    const { ffmpegModule } = await import("../pipeline/media/ffmpeg.ts");
    const { releaseWasm } = await import("./app/gc.ts");
    await ffmpegModule().then(releaseWasm, () => {}); // not found: the first upload says so
  }

  let signalled: () => void = () => {};
  const stopSignal = new Promise<void>((r) => signalled = r);
  const ac = new AbortController();
  // A worker takes no requests: it listens to the queue only. The public socket is the front's (front.ts): it
  // times out silent and slow clients, which Deno.serve alone would keep forever.
  const http = a.role === "worker" ? null : await serveFronted({
    hostname: a.host,
    port: a.port,
    headerTimeoutMs: a.headerTimeoutS * 1000,
    idleTimeoutMs: a.idleTimeoutS * 1000,
    signal: ac.signal,
    onListen: ({ hostname, port }) => {
      const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
      console.log(`zerovid server on http://${shown}:${port}/ (API: /openapi.json)`);
      server.startWorker();
    },
  }, server.app.fetch);
  if (!http) {
    console.log("zerovid worker: running jobs from the queue (no HTTP)");
    server.startWorker();
  }
  let stopping: Promise<void> | null = null;
  const stop = (why: string) =>
    stopping ??= (async () => {
      if (why !== "shutdown") console.log(`${why}: stopping (a running job goes back to the queue)`);
      ac.abort();
      signalled();
      // The job gets a moment to stop at a step boundary; then its worker is terminated, whatever it is doing.
      await Promise.all([server.close(), gpu?.close({ graceMs: 3000 })]);
    })();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((sig) => [sig, () => void stop(sig)] as const);
  for (const [s, h] of handlers) {
    try {
      Deno.addSignalListener(s, h);
    } catch { /* SIGTERM is not available on Windows */ }
  }
  await (http ? http.finished : stopSignal);
  await stop("shutdown");
  for (const [s, h] of handlers) {
    try {
      Deno.removeSignalListener(s, h);
    } catch { /* see above */ }
  }
  return 0;
}
