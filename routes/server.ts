// The server's wiring: the queue, the model registry and the app (routes/app.ts) as one ZerovidServer
// (openServer, what the tests drive), and `serve(args)`, which `main.ts serve` runs: the GPU, the listener, the
// worker, and a clean stop on SIGINT/SIGTERM.
import type { Hono } from "hono";
import type { JobRequest } from "../pipeline/job/types.ts";
import type { FieldLimits } from "../pipeline/job/fields.ts";
import type { JobQueue, Runner } from "./queue/types.ts";
import { SqliteQueue } from "./queue/sqlite.ts";
import { ModelRegistry } from "./registry.ts";
import { DEFAULT_LIMITS, type Limits } from "./schema.ts";
import { createApp, type Health } from "./app.ts";
import { defaultDataDir, parseServeArgs, SERVE_FLAGS, SERVE_USAGE, ServeArgError, type ServeArgs } from "./cli.ts";

export interface ServerOptions {
  /** Runs one job with model paths (runJob in production). */
  runner: Runner;
  dataDir: string;
  /** Folders with models; none = the built-in demo model. */
  modelRoots: string[];
  limits?: Partial<Limits>;
  token?: string;
  validate: (req: JobRequest, limits: FieldLimits) => JobRequest;
  health?: () => Health;
  /** Start running queued jobs right away (default true; serve() starts the worker once it listens). */
  autostart?: boolean;
  /** Result retention (see QueueOptions). */
  keepMs?: number;
  keepBytes?: number;
  log?: (line: string) => void;
}

export interface ZerovidServer {
  app: Hono;
  queue: JobQueue;
  /** Makes this process the queue's worker (openServer does it unless autostart is false). */
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
      const params: Record<string, unknown> = { ...res.params };
      for (const [k, v] of Object.entries(params)) {
        if (typeof v === "string" && byPath.has(v)) params[k] = byPath.get(v);
      }
      delete params.video;
      return { ...res, params };
    } catch (e) {
      if (e instanceof Error) e.message = models.redact(e.message);
      throw e;
    }
  };
}

/** Opens the queue over the data directory and builds the app (what serve() runs and the tests drive). */
export async function openServer(o: ServerOptions): Promise<ZerovidServer> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...o.limits };
  for (const [k, v] of Object.entries(limits)) {
    if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`limit ${k} must be a positive number, got ${v}`);
  }
  const models = new ModelRegistry(o.modelRoots);
  const queue = await SqliteQueue.open({
    dataDir: o.dataDir,
    maxQueued: limits.queueSize,
    keepMs: o.keepMs,
    keepBytes: o.keepBytes,
    log: o.log,
  });
  const runner = namedRunner(models, o.runner);
  const startWorker = () => queue.startWorker(runner, { adapter: o.health?.().adapter });
  if (o.autostart ?? true) startWorker();
  const app = createApp({
    queue,
    models,
    limits,
    token: o.token,
    validate: o.validate,
    health: o.health ?? (() => ({ adapter: "none", ok: true })),
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
  for (const r of a.modelRoots) {
    const st = await Deno.stat(r).catch(() => null);
    if (!st?.isDirectory) {
      console.error(`error: --models ${r}: not a folder`);
      return 2;
    }
  }

  // The pipeline is loaded here, not at import, so tests of the app need no GPU.
  const { GpuContext } = await import("./gpu_context.ts");
  const { runJob } = await import("../pipeline/job/run.ts");
  const { validateRequest } = await import("../pipeline/job/validate.ts");
  const { DEMO_NOTICE } = await import("../pipeline/models/demo.ts");
  const gpu = await GpuContext.create({
    cacheBytes: a.cacheMb !== undefined ? a.cacheMb * 1024 * 1024 : undefined,
    modelRoots: a.modelRoots,
    onReopen: () => console.error("GPU device was lost: reopening it for the next job"),
  });
  const server = await openServer({
    runner: async (req, hooks) => runJob(await gpu.current(), req, hooks),
    validate: (req, limits) => validateRequest(req, gpu.now.dev, limits),
    dataDir: a.dataDir,
    modelRoots: a.modelRoots,
    limits: a.limits,
    token: a.token,
    keepMs: a.keepHours * 3600e3,
    keepBytes: a.keepMb * 1024 * 1024,
    autostart: false,
    health: () => {
      // A lost device is reopened by the next job, so the service stays healthy; report what happened.
      const dev = gpu.now.dev;
      if (dev.isLost) {
        return { adapter: dev.adapterName, ok: false, error: "GPU device lost; reopened on the next job" };
      }
      return { adapter: dev.adapterName, ok: true };
    },
  });
  const list = await server.models.list();
  console.log(`GPU: ${gpu.now.dev.adapterName}`);
  if (server.models.demo) console.log(`models: none configured (--models DIR): ${DEMO_NOTICE}`);
  else {
    console.log(`models: ${list.length} under ${a.modelRoots.join(", ")}`);
    for (const m of list) console.log(`  ${m.name} (${m.kind}: ${m.modes.join(", ") || "annotator"})`);
    if (list.length === 0) console.log("  (none found: every job will fail with 'no model for mode')");
  }
  console.log(`data: ${a.dataDir} (${(await server.queue.counts()).queued} queued job(s) from before)`);
  if (a.token) console.log("auth: a bearer token is required on /v1/*");

  const ac = new AbortController();
  const http = Deno.serve({
    hostname: a.host,
    port: a.port,
    signal: ac.signal,
    onListen: ({ hostname, port }) => {
      const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
      console.log(`zerovid server on http://${shown}:${port}/ (API: /openapi.json)`);
      server.startWorker();
    },
  }, server.app.fetch);
  let stopping: Promise<void> | null = null;
  const stop = (why: string) =>
    stopping ??= (async () => {
      if (why !== "shutdown") console.log(`${why}: stopping (a running job goes back to the queue)`);
      ac.abort();
      await server.close();
      gpu.dispose();
    })();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((sig) => [sig, () => void stop(sig)] as const);
  for (const [s, h] of handlers) {
    try {
      Deno.addSignalListener(s, h);
    } catch { /* SIGTERM is not available on Windows */ }
  }
  await http.finished;
  await stop("shutdown");
  for (const [s, h] of handlers) {
    try {
      Deno.removeSignalListener(s, h);
    } catch { /* see above */ }
  }
  return 0;
}
