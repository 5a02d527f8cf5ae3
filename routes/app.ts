// The HTTP API: one Hono app composed of small sub-apps (routes/app/), over the job queue (routes/queue/) and the
// model registry (routes/registry.ts).
//
//   GET    /                       the web page (page)
//   GET    /openapi.json           the OpenAPI document (page)
//   GET    /healthz                GPU adapter, queue backend and length, workers (health)
//   GET    /v1/models              models found under the roots (models)
//   GET    /v1/fields              the request fields of each mode, for the page's forms (fields)
//   POST   /v1/jobs                JSON or multipart/form-data (with a `video` file) -> 202 {id, status, position}
//   GET    /v1/jobs                recent jobs, newest first (?limit=)
//   GET    /v1/jobs/:id            status, progress, timings, error, resolved params (seed included), result
//   DELETE /v1/jobs/:id            cancel (queued), stop at the next step (running), delete (finished) (jobs)
//   GET    /v1/jobs/:id/events     server-sent events: queued, started, progress, then done | failed | cancelled
//   GET    /v1/jobs/:id/result     the video (Range supported; ?download=1 for an attachment) (results)
//
// /v1/* needs the bearer token when the server has one. Every error is JSON {error, field} with a 4xx status
// (field names the request field at fault, or null), or 503 while the queue's backend is unreachable.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { RequestError } from "../pipeline/errors.ts";
import { QueueUnavailableError } from "./queue/types.ts";
import { JobSchema } from "./schema.ts";
import { type AppDeps, errorJson, type SubAppDeps } from "./app/context.ts";
import { tokenAuth } from "./app/auth.ts";
import { browserGuards } from "./app/guard.ts";
import { pageApp } from "./app/page.ts";
import { healthApp } from "./app/health.ts";
import { modelsApp } from "./app/models.ts";
import { fieldsApp } from "./app/fields.ts";
import { jobsApp } from "./app/jobs.ts";
import { eventsApp } from "./app/events.ts";
import { resultsApp } from "./app/results.ts";

export type { AppDeps, Health } from "./app/context.ts";

export function createApp(appDeps: AppDeps): Hono {
  const deps: SubAppDeps = { ...appDeps, schema: new JobSchema(appDeps.limits) };
  const app = new Hono();

  app.onError((err, c) => {
    if (err instanceof RequestError) return errorJson(c, 400, err.message, err.field);
    if (err instanceof QueueUnavailableError) {
      return errorJson(c, 503, err.message, null, { "Retry-After": String(err.retryAfter) });
    }
    if (err instanceof HTTPException) {
      if (err.res) return err.getResponse(); // a middleware's own answer (bearerAuth: JSON {error, field})
      return errorJson(c, err.status, err.message || "bad request", err.status === 400 ? "body" : null);
    }
    console.error(`${c.req.method} ${c.req.path}: ${(err as Error)?.stack ?? err}`);
    return errorJson(c, 500, `internal error: ${(err as Error)?.message ?? err}`, null);
  });
  app.notFound((c) => errorJson(c, 404, `no route ${c.req.method} ${c.req.path}`, null));

  for (const guard of browserGuards(deps.browser)) app.use("*", guard);
  app.route("/", pageApp(deps));
  app.route("/healthz", healthApp(deps));
  if (deps.token) app.use("/v1/*", tokenAuth(deps.token));
  app.route("/v1/models", modelsApp(deps));
  app.route("/v1/fields", fieldsApp(deps));
  app.route("/v1/jobs", jobsApp(deps));
  app.route("/v1/jobs", eventsApp(deps));
  app.route("/v1/jobs", resultsApp(deps));
  return app;
}
