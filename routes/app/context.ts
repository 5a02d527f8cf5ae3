// What every sub-app of the HTTP API gets: its dependencies, the one error shape, and a job as the API shows it.
import type { Context } from "hono";
import type { JobRequest } from "../../pipeline/job/types.ts";
import type { ProbedVideo } from "../../pipeline/job/validate.ts";
import type { FieldLimits } from "../../pipeline/job/fields.ts";
import type { Job, JobQueue } from "../queue/types.ts";
import type { ModelRegistry } from "../registry.ts";
import type { JobSchema, Limits } from "../schema.ts";
import type { BrowserSafety } from "./guard.ts";

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
  /** Checks a request and fills its defaults inside the limits (validateRequest); throws RequestError. */
  validate: (req: JobRequest, limits: FieldLimits, video?: ProbedVideo) => JobRequest | Promise<JobRequest>;
  health: () => Health;
  /** Origin/Host checks for browsers (guard.ts); default: listening on 127.0.0.1, no --cors, no --allow-host. */
  browser?: BrowserSafety;
  /** How submissions take their bodies (intake.ts): upload slots, body idle timeout. */
  intake?: { uploadSlots?: number; idleMs?: number };
}

/** AppDeps plus what createApp builds once for every sub-app. */
export interface SubAppDeps extends AppDeps {
  /** The request schema, narrowed by the limits. */
  schema: JobSchema;
}

/** Every error the API answers: JSON {error, field} (field names the request field at fault, or null). */
export function errorJson(
  c: Context,
  status: number,
  error: string,
  field: string | null,
  headers?: Record<string, string>,
): Response {
  for (const [k, v] of Object.entries(headers ?? {})) c.header(k, v);
  return c.json({ error, field }, status as 400);
}

export const unknownJob = (c: Context): Response =>
  errorJson(c, 404, `no job with id ${JSON.stringify(c.req.param("id"))}`, "id");

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
