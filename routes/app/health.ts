// GET /healthz (public): the GPU, the queue's backend and length, the workers it has seen, the limits. 503 when the
// GPU or the queue cannot serve jobs.
import { Hono } from "hono";
import type { SubAppDeps } from "./context.ts";

export function healthApp({ health, queue, models, token, limits }: SubAppDeps): Hono {
  return new Hono().get("/", async (c) => {
    const h = health();
    const qh = await queue.health();
    await models.list().catch(() => null); // a registry fed by the workers knows whether it is the demo once listed
    const counts = qh.ok ? await queue.counts() : null;
    const ok = h.ok && qh.ok;
    return c.json({
      ok,
      adapter: h.adapter,
      error: h.error ?? qh.error ?? null,
      demo: models.demo,
      auth: !!token,
      queue: counts ? { ...counts, backend: qh.backend } : { backend: qh.backend, ok: false, error: qh.error },
      workers: qh.workers ?? null,
      limits,
    }, ok ? 200 : 503);
  });
}
