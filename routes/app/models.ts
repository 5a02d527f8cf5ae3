// GET /v1/models: the models under the roots, by name (never a server path). On a shared queue (many machines) the
// models are those every live worker announces (a job may run on any of them), and `workers` says which worker
// serves which.
import { Hono } from "hono";
import type { SubAppDeps } from "./context.ts";

export function modelsApp({ models, queue }: SubAppDeps): Hono {
  return new Hono().get("/", async (c) => {
    const list = await models.list();
    const body = { demo: models.demo, models: list.map(({ path: _, ...m }) => m) };
    if (queue.backend !== "redis") return c.json(body);
    const workers = (await queue.health()).workers ?? [];
    return c.json({
      ...body,
      workers: workers.map((w) => ({
        id: w.id,
        host: w.host,
        adapter: w.adapter ?? null,
        models: (w.models ?? []).map((m) => m.name),
      })),
    });
  });
}
