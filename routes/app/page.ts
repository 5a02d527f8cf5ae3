// The web page (routes/web/) and the OpenAPI document: public, no token.
import { Hono } from "hono";
import { openApi } from "../schema.ts";
import type { SubAppDeps } from "./context.ts";
import pageHtml from "../web/index.html" with { type: "text" };
import pageJs from "../web/app.js" with { type: "text" };
import pageCss from "../web/style.css" with { type: "text" };

export function pageApp(deps: SubAppDeps): Hono {
  const doc = openApi(deps.schema, { auth: !!deps.token });
  return new Hono()
    .get("/", (c) => c.html(pageHtml))
    .get("/app.js", (c) => c.body(pageJs, 200, { "Content-Type": "text/javascript; charset=utf-8" }))
    .get("/style.css", (c) => c.body(pageCss, 200, { "Content-Type": "text/css; charset=utf-8" }))
    .get("/openapi.json", (c) => c.json(doc));
}
