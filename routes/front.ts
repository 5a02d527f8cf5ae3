// The server's public socket. Deno.serve reads a request's headers for as long as the client cares to send them
// (measured: a connection that sends nothing, or one header line a second, stays open indefinitely), so a client
// can hold connections open for free (slowloris). This front owns the TCP socket, passes every byte unchanged to
// Deno.serve on a private Unix socket, and follows the HTTP/1.1 request framing of what the client sends (headers,
// then a Content-Length or chunked body) so it can time each request's headers:
// - a request's headers must be complete within `headerTimeoutMs` of their first byte (of the connection's opening,
//   for the first request): else 408 and the connection is closed;
// - a connection on which no byte moves either way for `idleTimeoutMs` is closed (an idle keep-alive connection, or
//   a body that stalls outside the upload route's own 30 s limit); SSE streams send a ping every 15 s and stay;
// - headers over 64 KiB get 431, framing that is not HTTP/1.1 gets 400 (hyper would refuse them too; here the
//   front needs them to keep count).
// The bytes are not interpreted otherwise: Host, Origin and bodies reach the app exactly as sent.

export interface FrontOptions {
  hostname: string;
  port: number;
  headerTimeoutMs?: number;
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  onListen?: (addr: Deno.NetAddr) => void;
}

export interface Front {
  addr: Deno.NetAddr;
  /** Resolves once the signal aborted, every connection is closed and the inner server has stopped. */
  finished: Promise<void>;
}

const MAX_HEADER_BYTES = 64 * 1024;
const enc = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** Reply written by the front itself, then the connection closes. */
function reply(status: string): Uint8Array {
  const body = `${status}\n`;
  return enc.encode(
    `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
  );
}

class FramingError extends Error {
  constructor(readonly status: string) {
    super(status);
  }
}

/**
 * Follows the request framing of a client's byte stream (RFC 9112): where each request's headers start and end.
 * `push` takes the bytes as they arrive; `headerSince` is when the current request's headers began (null between
 * requests and inside a body).
 */
export class RequestFraming {
  private state: "headers" | "body" | "chunk-size" | "chunk-data" | "chunk-end" | "trailers" | "opaque" = "headers";
  private head: number[] = [];
  private line: number[] = [];
  private left = 0;
  requests = 0;
  headerSince: number | null;

  constructor(now: number) {
    this.headerSince = now; // a new connection owes its first request's headers from the start
  }

  push(b: Uint8Array, now: number): void {
    for (let i = 0; i < b.length;) {
      switch (this.state) {
        case "headers": {
          // Empty lines before a request are allowed (RFC 9112 2.2); they start no request.
          if (this.head.length === 0 && (b[i] === 13 || b[i] === 10)) {
            i++;
            continue;
          }
          this.headerSince ??= now;
          const end = this.headEnd(b, i);
          const upto = end < 0 ? b.length : end;
          for (let k = i; k < upto; k++) this.head.push(b[k]);
          if (this.head.length > MAX_HEADER_BYTES) throw new FramingError("431 Request Header Fields Too Large");
          i = upto;
          if (end >= 0) this.startBody();
          break;
        }
        case "body":
        case "chunk-data": {
          // Content is skipped, not read: `left` counts down to the end of the body or of the chunk.
          const n = Math.min(this.left, b.length - i);
          i += n;
          if ((this.left -= n) === 0) this.state = this.state === "body" ? "headers" : "chunk-end";
          break;
        }
        case "chunk-size":
        case "chunk-end":
        case "trailers": {
          const c = b[i++];
          if (c !== 10) {
            if (this.line.length > 4096) throw new FramingError("400 Bad Request");
            this.line.push(c);
            break;
          }
          const text = latin1.decode(new Uint8Array(this.line)).replace(/\r$/, "");
          this.line = [];
          if (this.state === "chunk-end") {
            if (text !== "") throw new FramingError("400 Bad Request");
            this.state = "chunk-size";
          } else if (this.state === "trailers") {
            if (text === "") this.state = "headers";
          } else {
            const size = /^([0-9a-fA-F]{1,15})[ \t]*(;.*)?$/.exec(text);
            if (!size) throw new FramingError("400 Bad Request");
            this.left = parseInt(size[1], 16);
            this.state = this.left === 0 ? "trailers" : "chunk-data";
          }
          break;
        }
        case "opaque":
          return;
      }
    }
  }

  /** Index just past the blank line that ends the headers in head + b[from..], or -1. */
  private headEnd(b: Uint8Array, from: number): number {
    // The terminator may straddle chunks: look at the last 3 bytes already kept, then at b.
    const h = this.head;
    for (let i = from; i < b.length; i++) {
      if (b[i] !== 10) continue;
      const prev = (k: number) => (i - k >= from ? b[i - k] : h[h.length - (k - (i - from))]);
      if (prev(1) === 13 && prev(2) === 10 && prev(3) === 13) return i + 1;
      if (prev(1) === 10) return i + 1; // bare LF line ends, as hyper accepts them
    }
    return -1;
  }

  private startBody(): void {
    const text = latin1.decode(new Uint8Array(this.head));
    this.head = [];
    this.headerSince = null;
    this.requests++;
    const field = (name: string) =>
      [...text.matchAll(new RegExp(`^${name}[ \\t]*:[ \\t]*(.*?)[ \\t]*\\r?$`, "gim"))].map((m) => m[1]);
    const te = field("transfer-encoding").join(",").toLowerCase();
    const cl = field("content-length");
    if (field("upgrade").length && /upgrade/i.test(field("connection").join(","))) {
      this.state = "opaque"; // a protocol switch: the bytes after it are not HTTP/1.1 (the idle timeout still holds)
    } else if (te) {
      if (!/(^|,)\s*chunked\s*$/.test(te)) throw new FramingError("400 Bad Request");
      this.state = "chunk-size";
    } else if (cl.length) {
      if (new Set(cl).size !== 1 || !/^\d{1,15}$/.test(cl[0])) throw new FramingError("400 Bad Request");
      this.left = Number(cl[0]);
      this.state = this.left > 0 ? "body" : "headers";
    } else this.state = "headers";
  }
}

/** Serves `handler` behind the front on hostname:port. */
export async function serveFronted(
  o: FrontOptions,
  handler: (req: Request) => Response | Promise<Response>,
): Promise<Front> {
  const headerTimeoutMs = o.headerTimeoutMs ?? 10_000;
  const idleTimeoutMs = o.idleTimeoutMs ?? 60_000;
  const dir = await Deno.makeTempDir({ prefix: "zerovid-http-" });
  const path = `${dir}/http.sock`;
  const innerAbort = new AbortController();
  const inner = Deno.serve({ path, signal: innerAbort.signal, onListen: () => {} }, handler);
  const listener = Deno.listen({ hostname: o.hostname, port: o.port });
  const addr = listener.addr as Deno.NetAddr;

  interface Conn {
    client: Deno.Conn;
    framing: RequestFraming;
    last: number;
    close(why?: string): void;
  }
  const open = new Set<Conn>();
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const c of open) {
      const since = c.framing.headerSince;
      if (since !== null && now - since > headerTimeoutMs) {
        c.close(c.framing.requests === 0 ? "408 Request Timeout" : "");
      } else if (now - c.last > idleTimeoutMs) c.close();
    }
  }, Math.min(1000, Math.max(50, headerTimeoutMs / 4)));

  const serveConn = async (client: Deno.Conn) => {
    let upstream: Deno.Conn | null = null;
    let closed = false;
    const c: Conn = {
      client,
      framing: new RequestFraming(performance.now()),
      last: performance.now(),
      close(why) {
        if (closed) return;
        closed = true;
        open.delete(c);
        // The front's own answer goes out only when no response can be under way (nothing forwarded yet).
        if (why && (c.framing.requests === 0)) client.write(reply(why)).catch(() => {}).finally(() => client.close());
        else {
          try {
            client.close();
          } catch { /* closed */ }
        }
        try {
          upstream?.close();
        } catch { /* closed */ }
      },
    };
    open.add(c);
    try {
      upstream = await Deno.connect({ transport: "unix", path });
    } catch {
      c.close("503 Service Unavailable");
      return;
    }
    const up = upstream;
    const failed: { error: FramingError | null } = { error: null };
    const toUpstream = (async () => {
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await client.read(buf);
        if (n === null) return await up.closeWrite(); // the client is done sending; its answer may still come
        const now = performance.now();
        c.last = now;
        const chunk = buf.subarray(0, n);
        c.framing.push(chunk, now);
        for (let off = 0; off < n;) off += await up.write(chunk.subarray(off));
      }
    })().catch((e) => void (e instanceof FramingError && (failed.error = e)));
    const toClient = (async () => {
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await up.read(buf);
        if (n === null) return;
        c.last = performance.now();
        for (let off = 0; off < n;) off += await client.write(buf.subarray(off, n));
      }
    })().catch(() => {});
    // The response side decides when the connection is over (the app closes it, or the client goes away); bad
    // framing ends it at once.
    await Promise.race([toClient, toUpstream.then(() => failed.error ? undefined : toClient)]);
    c.close(failed.error?.status);
  };

  const accepting = (async () => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return; // the listener closed
      }
      serveConn(client).catch(() => {});
    }
  })();
  o.onListen?.(addr);

  const finished = (async () => {
    await new Promise<void>((r) => {
      if (o.signal?.aborted) r();
      o.signal?.addEventListener("abort", () => r(), { once: true });
    });
    listener.close();
    await accepting;
    clearInterval(sweep);
    for (const c of open) c.close();
    innerAbort.abort();
    await inner.finished.catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  })();
  return { addr, finished };
}
