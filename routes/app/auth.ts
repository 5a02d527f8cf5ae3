// The bearer token on /v1/*: Hono's bearerAuth for the Authorization header, and `?token=` on GET for what cannot
// send headers (EventSource, <video src>, download links). Refusals are the API's JSON {error, field}.
import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { HTTPException } from "hono/http-exception";
import { timingSafeEqual } from "hono/utils/buffer";

const REALM = "zerovid";
const refusal = (error: string) => (_c: Context) => ({ error, field: "authorization" });

export function tokenAuth(token: string): MiddlewareHandler {
  const header = bearerAuth({
    token,
    realm: REALM,
    noAuthenticationHeader: { message: refusal("this server needs a token: Authorization: Bearer <token>") },
    invalidAuthenticationHeader: { message: refusal("malformed Authorization header: expected Bearer <token>") },
    invalidToken: { message: refusal("wrong token") },
  });
  return async (c, next) => {
    const query = c.req.query("token");
    if (query === undefined || c.req.header("Authorization") !== undefined || !["GET", "HEAD"].includes(c.req.method)) {
      return header(c, next);
    }
    if (!query || !(await timingSafeEqual(token, query))) {
      const res = Response.json(refusal("wrong token")(c), {
        status: 401,
        headers: { "WWW-Authenticate": `Bearer realm="${REALM}", error="invalid_token"` },
      });
      throw new HTTPException(401, { res });
    }
    await next();
  };
}
