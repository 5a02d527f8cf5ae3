// A real redis-server for tests: started on a free loopback port in its own temp folder, stopped, killed and
// restarted on the same port and folder (so persistence can be tested), and always cleaned up.
//
//   await using redis = await startRedis({ persist: true });
//   redis.url            // redis://127.0.0.1:PORT
//   await redis.kill();   // SIGKILL: what a crash looks like to the nodes
//   await redis.start();  // same port, same folder: with persist, the data is back
import { join } from "node:path";

export interface RedisOptions {
  /** Append-only file, fsync on every write: a restart (even after kill -9) keeps every acknowledged write. */
  persist?: boolean;
  /** Most time to wait for the server to answer PING after a start. Default 10 s. */
  readyMs?: number;
}

export interface RedisServer extends AsyncDisposable {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** True while a server process runs. */
  readonly running: boolean;
  /** Starts the server again (same port and folder). */
  start(): Promise<void>;
  /** Asks the server to shut down (SIGTERM: it writes its data first when persistence is on). */
  stop(): Promise<void>;
  /** SIGKILL: the server dies without a word, as in a crash. */
  kill(): Promise<void>;
  /** Stops the server and deletes its folder. */
  close(): Promise<void>;
  /** What the server printed (for failure messages). */
  log(): string;
}

/** A TCP port on 127.0.0.1 nobody listens on right now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Sends PING over a plain socket; true on +PONG. No client library: the harness checks the server, not BullMQ. */
export async function redisPing(port: number, timeoutMs = 1000): Promise<boolean> {
  let conn: Deno.TcpConn | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const attempt = (async () => {
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buf = new Uint8Array(64);
      const n = await conn.read(buf);
      return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG");
    })();
    const late = new Promise<boolean>((r) => timer = setTimeout(() => r(false), timeoutMs));
    return await Promise.race([attempt.catch(() => false), late]);
  } finally {
    clearTimeout(timer);
    try {
      (conn as Deno.TcpConn | null)?.close();
    } catch { /* already closed */ }
  }
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const bin = "redis-server";
  const dir = await Deno.makeTempDir({ prefix: "zerovid-redis-" });
  const port = freePort();
  const readyMs = opts.readyMs ?? 10_000;
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--save",
    "",
    "--appendonly",
    opts.persist ? "yes" : "no",
    "--appendfsync",
    "always",
    "--logfile",
    "",
    "--protected-mode",
    "yes",
  ];
  let child: Deno.ChildProcess | null = null;
  let exited: Promise<unknown> = Promise.resolve();
  let out = "";

  const drain = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const chunk of s) out = (out + d.decode(chunk)).slice(-20_000);
  };

  const start = async () => {
    if (child) throw new Error("redis-server is already running");
    try {
      child = new Deno.Command(bin, { args, stdout: "piped", stderr: "piped", stdin: "null" }).spawn();
    } catch (e) {
      throw new Error(`cannot start ${bin} (apt-get install -y redis-server): ${(e as Error).message}`);
    }
    const c = child;
    const streams = Promise.all([drain(c.stdout), drain(c.stderr)]).catch(() => {});
    exited = Promise.all([c.status, streams]).then(() => {
      if (child === c) child = null;
    });
    const deadline = Date.now() + readyMs;
    while (Date.now() < deadline) {
      if (!child) throw new Error(`redis-server exited at start:\n${out}`);
      if (await redisPing(port, 500)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    await halt("SIGKILL");
    throw new Error(`redis-server did not answer PING on port ${port} within ${readyMs} ms:\n${out}`);
  };

  const halt = async (sig: Deno.Signal) => {
    const c = child;
    if (!c) return;
    try {
      c.kill(sig);
    } catch { /* already gone */ }
    // A SIGTERM'd server saves first; give it time, then make sure.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), 10_000)),
    ]);
    clearTimeout(timer);
    if (late) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
      await exited;
    }
  };

  const close = async () => {
    await halt("SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  await start().catch(async (e) => {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  });
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    get running() {
      return child !== null;
    },
    start,
    stop: () => halt("SIGTERM"),
    kill: () => halt("SIGKILL"),
    close,
    log: () => out,
    [Symbol.asyncDispose]: close,
  };
}

/** Where the append-only data lives (tests check persistence really wrote something). */
export function aofDir(r: RedisServer): string {
  return join(r.dir, "appendonlydir");
}
