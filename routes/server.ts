// The HTTP server: a Hono app over the job queue (routes/queue/) and the model roots (routes/registry.ts), the web
// page (routes/web/), and `serve(args)`, which `main.ts serve` calls.
//
//   POST   /v1/jobs                JSON or multipart/form-data (with a `video` file) -> 202 {id, status, position}
//   GET    /v1/jobs                recent jobs, newest first (?limit=)
//   GET    /v1/jobs/:id            status, progress, timings, error, resolved params (seed included), result
//   GET    /v1/jobs/:id/events     server-sent events: queued, started, progress, then done | failed | cancelled
//   GET    /v1/jobs/:id/result     the video (Range supported; ?download=1 for an attachment)
//   DELETE /v1/jobs/:id            cancel (queued), stop at the next step (running), delete (finished)
//   GET    /v1/models              models found under the roots
//   GET    /healthz                GPU adapter, queue length
//   GET    /openapi.json           the OpenAPI document
//   GET    /                       the web page
//
// Every error is JSON {error, field} with a 4xx status (field names the request field at fault, or null).
import { Hono } from "hono";
import type { Context, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import { validator } from "hono/validator";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import { type JobRequest, type Mode, RequestError } from "../pipeline/job_types.ts";
import { probeVideo, type VideoInfo } from "../pipeline/media/probe.ts";
import { sampleIndices } from "../pipeline/media/decode.ts";
import {
  type Job,
  type JobEvent,
  type JobQueue,
  QueueFullError,
  QueueUnavailableError,
  type Runner,
} from "./queue/types.ts";
import { SqliteQueue } from "./queue/sqlite.ts";
import { MODEL_FIELDS, type ModelField, ModelRegistry } from "./registry.ts";
import { DEFAULT_LIMITS, type JobBody, JobSchema, type Limits, openApi } from "./schema.ts";
import { defaultDataDir, parseServeArgs, SERVE_FLAGS, SERVE_USAGE, ServeArgError, type ServeArgs } from "./cli.ts";
import pageHtml from "./web/index.html" with { type: "text" };
import pageJs from "./web/app.js" with { type: "text" };
import pageCss from "./web/style.css" with { type: "text" };

const VIDEO_MODES: readonly Mode[] = ["pix2pix", "pose", "canny", "depth"];

export interface Health {
  /** The GPU adapter's name. */
  adapter: string;
  /** False when the GPU is gone (device lost): jobs will fail until a restart. */
  ok: boolean;
  error?: string;
}

export interface AppDeps {
  queue: JobQueue;
  models: ModelRegistry;
  limits: Limits;
  /** Bearer token for /v1/*; none = open. */
  token?: string;
  /** Checks a request and fills its defaults (validateRequest); throws RequestError. */
  validate: (req: JobRequest) => JobRequest;
  health: () => Health;
}

// -----------------------------------------------------------------------------------------------------------------
// Views

const iso = (t: number | null) => t === null ? null : new Date(t).toISOString();

/** A job as the API shows it. */
export async function jobView(job: Job, queue: JobQueue): Promise<Record<string, unknown>> {
  const base = `/v1/jobs/${job.id}`;
  return {
    id: job.id,
    status: job.status,
    mode: job.request.mode,
    prompt: job.request.prompt,
    position: job.status === "queued" ? await queue.position(job.id) : null,
    progress: job.progress,
    cancelRequested: job.cancelRequested,
    createdAt: iso(job.createdAt),
    startedAt: iso(job.startedAt),
    finishedAt: iso(job.finishedAt),
    attempts: job.attempts,
    params: job.params ?? job.request,
    timings: job.timings,
    error: job.error,
    field: job.errorField,
    result: job.result ? { url: `${base}/result`, ...job.result } : null,
    links: { self: base, events: `${base}/events`, result: `${base}/result` },
  };
}

function errorJson(c: Context, status: number, error: string, field: string | null, headers?: Record<string, string>) {
  for (const [k, v] of Object.entries(headers ?? {})) c.header(k, v);
  return c.json({ error, field }, status as 400);
}

// -----------------------------------------------------------------------------------------------------------------
// The app

function sameToken(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  let d = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    d |= (x[i % (x.length || 1)] ?? 0) ^ (y[i % (y.length || 1)] ?? 0);
  }
  return d === 0 && x.length === y.length;
}

function auth(token: string): MiddlewareHandler {
  return async (c, next) => {
    const h = c.req.header("Authorization") ?? "";
    const given = /^Bearer\s+(.+)$/i.exec(h)?.[1]?.trim() ?? c.req.query("token") ?? "";
    if (!given || !sameToken(given, token)) {
      return errorJson(
        c,
        401,
        given ? "wrong token" : "this server needs a token: Authorization: Bearer <token>",
        "authorization",
        {
          "WWW-Authenticate": 'Bearer realm="zerovid"',
        },
      );
    }
    await next();
  };
}

/** The frame count a video request will produce, as runJob samples it (for the frames limit). */
function sampledFrames(info: VideoInfo, body: JobBody): number {
  const start = (body.start as number | undefined) ?? 0, end = body.end as number | undefined;
  if (end !== undefined && end !== -1 && end <= start) {
    throw new RequestError("end", `must be after start (${start} s), got ${end} s`);
  }
  const fps = body.fps as number | undefined ?? (body.mode === "pix2pix" ? -1 : undefined);
  try {
    return sampleIndices(info.frames, info.fps, {
      start: body.start as number | undefined,
      end: body.end as number | undefined,
      fps,
    }).indices.length;
  } catch (e) {
    const msg = (e as Error).message.replace(/^decodeVideo: /, "");
    const field = /^start/.test(msg) ? "start" : /fps/.test(msg) ? "fps" : "end";
    throw new RequestError(field, msg);
  }
}

export function createApp(deps: AppDeps): Hono {
  const { queue, models, limits } = deps;
  const schema = new JobSchema(limits);
  const app = new Hono();
  const maxBody = limits.maxUploadMb * 1024 * 1024 + 64 * 1024; // the file plus the form's text fields

  app.onError((err, c) => {
    if (err instanceof RequestError) return errorJson(c, 400, err.message, err.field);
    if (err instanceof QueueUnavailableError) {
      return errorJson(c, 503, err.message, null, { "Retry-After": String(err.retryAfter) });
    }
    if (err instanceof HTTPException) {
      const field = err.status === 400 ? "body" : null;
      return errorJson(c, err.status, err.message || "bad request", field);
    }
    console.error(`${c.req.method} ${c.req.path}: ${(err as Error)?.stack ?? err}`);
    return errorJson(c, 500, `internal error: ${(err as Error)?.message ?? err}`, null);
  });
  app.notFound((c) => errorJson(c, 404, `no route ${c.req.method} ${c.req.path}`, null));

  // Page and documents (public).
  app.get("/", (c) => c.html(pageHtml));
  app.get("/app.js", (c) => c.body(pageJs, 200, { "Content-Type": "text/javascript; charset=utf-8" }));
  app.get("/style.css", (c) => c.body(pageCss, 200, { "Content-Type": "text/css; charset=utf-8" }));
  app.get("/openapi.json", (c) => c.json(openApi(schema, { auth: !!deps.token })));
  app.get("/healthz", async (c) => {
    const h = deps.health();
    const qh = await queue.health();
    const counts = qh.ok ? await queue.counts() : null;
    const ok = h.ok && qh.ok;
    return c.json({
      ok,
      adapter: h.adapter,
      error: h.error ?? qh.error ?? null,
      demo: models.demo,
      auth: !!deps.token,
      queue: counts ? { ...counts, backend: qh.backend } : { backend: qh.backend, ok: false, error: qh.error },
      workers: qh.workers ?? null,
      limits,
    }, ok ? 200 : 503);
  });

  if (deps.token) app.use("/v1/*", auth(deps.token));

  app.get("/v1/models", async (c) => {
    const list = await models.list();
    return c.json({
      demo: models.demo,
      models: list.map(({ path: _, ...m }) => m),
    });
  });

  // ---- Submit
  const isJson = (c: Context) =>
    /^application\/([\w.-]+\+)?json$/i.test((c.req.header("Content-Type") ?? "").split(";")[0].trim());
  const isForm = (c: Context) =>
    /^(multipart\/form-data|application\/x-www-form-urlencoded)$/i.test(
      (c.req.header("Content-Type") ?? "").split(";")[0].trim(),
    );

  app.post(
    "/v1/jobs",
    bodyLimit({
      maxSize: maxBody,
      onError: (c) =>
        errorJson(c, 413, `the request is larger than the upload limit of ${limits.maxUploadMb} MiB`, "video"),
    }),
    async (c, next) => {
      if (!isJson(c) && !isForm(c)) {
        return errorJson(
          c,
          415,
          `send application/json or multipart/form-data (got ${c.req.header("Content-Type") ?? "no Content-Type"})`,
          "body",
        );
      }
      await next();
    },
    validator("json", (v, c) => isJson(c) ? { body: schema.parse(v), video: null as File | null } : null),
    validator("form", (v, c) => {
      if (!isForm(c)) return null;
      const { body, video } = schema.fromForm(v as Record<string, unknown>);
      return { body: schema.parse(body), video };
    }),
    async (c) => {
      const input = c.req.valid("json") ?? c.req.valid("form");
      if (!input) throw new RequestError("body", "empty request");
      const body = { ...input.body } as JobBody;
      const mode = body.mode as Mode;
      const notices: string[] = [];

      // The input video: present for the video modes only, a real video, within the frame limit.
      let video: Uint8Array | undefined;
      if (input.video) {
        if (!VIDEO_MODES.includes(mode)) throw new RequestError("video", `mode ${mode} takes no input video`);
        video = new Uint8Array(await input.video.arrayBuffer());
        if (video.length === 0) throw new RequestError("video", "the uploaded file is empty (0 bytes)");
        const name = (body.videoName as string | undefined) ?? (input.video.name || "video");
        body.videoName = name;
        let info: VideoInfo;
        try {
          info = await probeVideo(video, name);
        } catch (e) {
          throw new RequestError("video", `not a video the server can read: ${(e as Error).message}`);
        }
        const n = Math.min(sampledFrames(info, body), (body.videoLength as number | undefined) ?? Infinity);
        if (n > limits.maxFrames) {
          body.videoLength = limits.maxFrames;
          notices.push(`the video gives ${n} frames; the first ${limits.maxFrames} are used (the server's limit)`);
        }
      } else if (VIDEO_MODES.includes(mode)) {
        throw new RequestError(
          "video",
          `mode ${mode} needs an input video: send multipart/form-data with a video file`,
        );
      }
      // Defaults that would break a limit are brought inside it.
      if (mode === "text2video") {
        body.videoLength ??= Math.min(8, limits.maxFrames);
        const side = Math.max(64, Math.floor(Math.min(512, limits.maxResolution) / 8) * 8);
        body.width ??= side;
        body.height ??= side;
      } else if (body.width === undefined) {
        body.resolution ??= Math.max(64, Math.floor(Math.min(512, limits.maxResolution) / 64) * 64);
      }

      // Model names -> paths inside the roots, then the pipeline's own checks and defaults (seed included).
      const { paths, byPath } = await models.resolveRequest(body as unknown as JobRequest);
      const full = deps.validate({ ...paths, ...(video ? { video } : {}) } as JobRequest);
      const { video: _, ...stored } = full;
      for (const f of Object.keys(MODEL_FIELDS) as ModelField[]) {
        const v = stored[f];
        if (typeof v === "string" && byPath.has(v)) (stored as Record<string, unknown>)[f] = byPath.get(v);
      }
      try {
        const job = await queue.submit({ ...stored, ...(video ? { video } : {}) } as JobRequest);
        c.header("Location", `/v1/jobs/${job.id}`);
        return c.json({
          id: job.id,
          status: job.status,
          position: await queue.position(job.id),
          ...(notices.length ? { notice: notices.join("; ") } : {}),
        }, 202);
      } catch (e) {
        if (e instanceof QueueFullError) {
          return errorJson(c, 429, e.message, null, { "Retry-After": String(e.retryAfter) });
        }
        throw e;
      }
    },
  );

  // ---- Read
  app.get(
    "/v1/jobs",
    zValidator("query", z.object({ limit: z.coerce.number().int().min(1).max(200).optional() }), (r, c) => {
      if (!r.success) return errorJson(c, 400, "limit: expected an integer in [1, 200]", "limit");
    }),
    async (c) => {
      const limit = c.req.valid("query").limit ?? 50;
      const jobs = await queue.list(limit);
      return c.json({ jobs: await Promise.all(jobs.map((j) => jobView(j, queue))) });
    },
  );

  const unknownJob = (c: Context) => errorJson(c, 404, `no job with id ${JSON.stringify(c.req.param("id"))}`, "id");

  app.get("/v1/jobs/:id", async (c) => {
    const job = await queue.get(c.req.param("id"));
    return job ? c.json(await jobView(job, queue)) : unknownJob(c);
  });

  app.delete("/v1/jobs/:id", async (c) => {
    const id = c.req.param("id");
    const what = await queue.cancel(id);
    if (!what) return unknownJob(c);
    if (what === "deleted") return c.json({ id, deleted: true });
    const job = await queue.get(id);
    if (!job) return c.json({ id, deleted: true });
    return c.json(await jobView(job, queue), what === "cancelling" ? 202 : 200);
  });

  app.get("/v1/jobs/:id/result", async (c) => {
    const id = c.req.param("id");
    const r = await queue.openResult(id);
    if ("missing" in r) {
      if (r.missing === "unknown") return unknownJob(c);
      if (r.missing === "expired") return errorJson(c, 410, "the result was deleted (older than the retention)", "id");
      const job = await queue.get(id);
      if (!job) return unknownJob(c);
      const why = job.status === "failed"
        ? `the job failed: ${job.error}`
        : job.status === "cancelled"
        ? "the job was cancelled"
        : `the job is ${job.status}; its result is not ready`;
      return errorJson(c, 409, why, "id");
    }
    const name = `zerovid-${id.slice(0, 8)}.${r.info.format}`;
    const headers: Record<string, string> = {
      "Content-Type": r.info.contentType,
      "Accept-Ranges": "bytes",
      "Cache-Control": "private, max-age=86400",
      "Content-Disposition": `${c.req.query("download") !== undefined ? "attachment" : "inline"}; filename="${name}"`,
    };
    const size = r.size;
    const read = async (start: number, end: number) => {
      try {
        return await r.read(start, end);
      } catch {
        return null;
      }
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(c.req.header("Range") ?? "");
    if (range && (range[1] || range[2])) {
      let start = range[1] ? Number(range[1]) : size - Number(range[2]);
      let end = range[1] && range[2] ? Number(range[2]) : size - 1;
      start = Math.max(0, start), end = Math.min(size - 1, end);
      if (start > end || start >= size) {
        return c.body(null, 416, { ...headers, "Content-Range": `bytes */${size}` });
      }
      const part = await read(start, end + 1);
      if (!part) return errorJson(c, 410, "the result is gone", "id");
      return c.body(part, 206, { ...headers, "Content-Range": `bytes ${start}-${end}/${size}` });
    }
    const bytes = await read(0, size);
    if (!bytes) return errorJson(c, 410, "the result is gone", "id");
    return c.body(bytes, 200, headers);
  });

  app.get("/v1/jobs/:id/events", async (c) => {
    const id = c.req.param("id");
    if (!await queue.get(id)) return unknownJob(c);
    return streamSSE(c, async (stream) => {
      // Subscribe before reading the state, so no event falls between the two.
      const pending: JobEvent[] = [];
      let wake: (() => void) | null = null;
      let closed = false;
      const unsubscribe = await queue.subscribe(id, (ev) => {
        // Every step is sent; only a client that falls far behind gets progress coalesced (latest step wins).
        const last = pending[pending.length - 1];
        if (ev.type === "progress" && last?.type === "progress" && pending.length > 32) {
          pending[pending.length - 1] = ev;
        } else pending.push(ev);
        wake?.();
      });
      stream.onAbort(() => {
        closed = true;
        wake?.();
      });
      const ping = setInterval(() => {
        stream.write(": ping\n\n").catch(() => {});
      }, 15_000);
      let n = 0;
      const send = (event: string, data: unknown) =>
        stream.writeSSE({ event, data: JSON.stringify(data), id: String(++n) });
      try {
        const job = await queue.get(id);
        if (!job) return;
        if (job.status === "queued") await send("queued", { position: await queue.position(id) });
        if (job.status === "running") {
          await send("started", { attempt: job.attempts });
          if (job.progress) await send("progress", job.progress);
        }
        if (job.status === "succeeded" || job.status === "failed" || job.status === "cancelled") {
          const ev = job.status === "succeeded" ? "done" : job.status;
          await send(ev, await jobView(job, queue));
          return;
        }
        while (!closed) {
          if (pending.length === 0) {
            await new Promise<void>((r) => wake = r);
            wake = null;
            continue;
          }
          const ev = pending.shift()!;
          switch (ev.type) {
            case "queued":
              await send("queued", { position: ev.position });
              break;
            case "started":
              await send("started", { attempt: ev.attempt });
              break;
            case "progress":
              await send("progress", ev.progress);
              break;
            case "closed":
              return; // shutdown: the client reconnects (EventSource does) once the server is back
            default:
              await send(ev.type, await jobView(ev.job, queue));
              return;
          }
        }
      } finally {
        clearInterval(ping);
        unsubscribe();
      }
    });
  });

  return app;
}

// -----------------------------------------------------------------------------------------------------------------
// Wiring: queue + registry + app

export interface ServerOptions {
  /** Runs one job with model paths (runJob in production). */
  runner: Runner;
  dataDir: string;
  /** Folders with models; none = the built-in demo model. */
  modelRoots: string[];
  limits?: Partial<Limits>;
  token?: string;
  validate: (req: JobRequest) => JobRequest;
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
  const { runJob, validateRequest } = await import("../pipeline/job.ts");
  const { DEMO_NOTICE } = await import("../fixtures/demo_model.ts");
  const gpu = await GpuContext.create({
    cacheBytes: a.cacheMb !== undefined ? a.cacheMb * 1024 * 1024 : undefined,
    modelRoots: a.modelRoots,
    onReopen: () => console.error("GPU device was lost: reopening it for the next job"),
  });
  const server = await openServer({
    runner: async (req, hooks) => runJob(await gpu.current(), req, hooks),
    validate: (req) => validateRequest(req, gpu.now.dev),
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
