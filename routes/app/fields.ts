// GET /v1/fields: the request fields of each mode as the page builds its forms, from the field registry
// (pipeline/job/fields.ts) with ranges narrowed by this server's limits: the page hard-codes no bound or default.
import { Hono } from "hono";
import { boundsOf, formFields } from "../../pipeline/job/fields.ts";
import { MODES } from "../../pipeline/job/modes.ts";
import type { SubAppDeps } from "./context.ts";

export function fieldsApp({ limits }: SubAppDeps): Hono {
  // The prompt has its own input (not in the generic form): its length limit per mode.
  const prompt = Object.fromEntries(MODES.map((m) => [m, boundsOf("prompt", m, limits).max]));
  const body = { modes: MODES, fields: formFields(limits), prompt };
  return new Hono().get("/", (c) => c.json(body));
}
