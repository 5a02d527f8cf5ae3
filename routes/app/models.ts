// GET /v1/models: the models under the roots, by name (never a server path).
import { Hono } from "hono";
import type { SubAppDeps } from "./context.ts";

export function modelsApp({ models }: SubAppDeps): Hono {
  return new Hono().get("/", async (c) => {
    const list = await models.list();
    return c.json({ demo: models.demo, models: list.map(({ path: _, ...m }) => m) });
  });
}
