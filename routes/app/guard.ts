// Browser safety for a server without a token (the default on a desktop): any web page the user visits could
// otherwise queue jobs on it (a cross-site form POST needs no CORS permission) or read it through DNS rebinding
// (a name of the attacker's that resolves to 127.0.0.1).
// - State-changing requests (anything but GET/HEAD/OPTIONS) whose Origin is not this server's own, nor one allowed
//   with --cors, get 403. Clients that send no Origin (curl, scripts) are not browsers and pass.
// - When the server listens on loopback, requests whose Host is not a loopback name (or an --allow-host) get 403.
// - --cors ORIGIN also answers CORS preflights for that origin (Hono's cors middleware), so its pages may call the API.
import type { Context, MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { errorJson } from "./context.ts";

export interface BrowserSafety {
  /** The address the server listens on (127.0.0.1 by default). */
  listenHost?: string;
  /** Origins (scheme://host[:port]) whose pages may call the API (--cors). */
  cors?: string[];
  /** Host names besides the loopback ones the server answers to when it listens on loopback (--allow-host). */
  allowHosts?: string[];
}

/** The host name of a Host header or URL host, without port and brackets, lower case. */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") < 0 ? undefined : h.indexOf("]"));
  const colons = h.split(":").length - 1;
  return colons === 1 ? h.slice(0, h.indexOf(":")) : h; // more than one colon: a bare IPv6 address
}

export function isLoopbackName(name: string): boolean {
  const n = hostName(name);
  return n === "localhost" || n.endsWith(".localhost") || /^127(\.\d{1,3}){3}$/.test(n) || n === "::1";
}

const SAFE_METHODS = ["GET", "HEAD", "OPTIONS"];

/** The host a request was sent to: its Host header, or (a client that sends none, such as an in-process
 * `app.request`; browsers always send one) the host of its URL. */
function requestHost(c: Context): string {
  return c.req.header("Host") ?? new URL(c.req.url).host;
}

/** The guards and the CORS answer, in the order they run; empty lists where nothing applies. */
export function browserGuards(b: BrowserSafety = {}): MiddlewareHandler[] {
  const origins = b.cors ?? [];
  const allowHosts = (b.allowHosts ?? []).map(hostName);
  const guards: MiddlewareHandler[] = [];
  if (isLoopbackName(b.listenHost ?? "127.0.0.1")) {
    guards.push(async (c, next) => {
      const host = requestHost(c);
      const name = hostName(host);
      if (!isLoopbackName(name) && !allowHosts.includes(name)) {
        return errorJson(
          c,
          403,
          `this server listens on loopback and answers to localhost names only, not Host ${JSON.stringify(host)} ` +
            "(a DNS-rebinding page?); start it with --allow-host NAME to answer to NAME",
          null,
        );
      }
      await next();
    });
  }
  if (origins.length) {
    guards.push(cors({
      origin: origins,
      allowMethods: ["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
      allowHeaders: ["Authorization", "Content-Type", "Range"],
      exposeHeaders: ["Location", "Content-Range", "Content-Length", "Retry-After"],
      maxAge: 600,
    }));
  }
  guards.push(async (c, next) => {
    const origin = c.req.header("Origin");
    if (origin === undefined || SAFE_METHODS.includes(c.req.method)) return await next();
    let own = false;
    try {
      own = origin !== "null" && new URL(origin).host === requestHost(c).toLowerCase();
    } catch { /* not a URL: not ours */ }
    if (!own && !origins.includes(origin)) {
      return errorJson(
        c,
        403,
        `cross-site request refused: Origin ${origin} is not this server's own; start it with --cors ${origin} ` +
          "to let that site's pages use the API",
        null,
      );
    }
    await next();
  });
  return guards;
}
