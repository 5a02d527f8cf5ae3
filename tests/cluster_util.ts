// Many-machines tests on one machine: `deno run -A main.ts serve ...` processes (API nodes, workers) on free
// loopback ports, and HTTP helpers that each wait with a deadline and fail with what they saw.
import { freePort } from "./redis_util.ts";

const root = new URL("..", import.meta.url).pathname;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Node {
  pid: number;
  /** http://127.0.0.1:PORT for a node that serves HTTP. */
  base: string;
  /** Everything it printed so far. */
  log(): string;
  readonly exited: Promise<Deno.CommandStatus>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after 20 s. */
  stop(): Promise<void>;
}

/** Starts `main.ts serve ARGS` (plus --port for a node that serves HTTP). Its output is kept for failure messages. */
export function startNode(args: string[], o: { http?: boolean } = {}): Node {
  const port = o.http === false ? 0 : freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "serve", ...args, ...(o.http === false ? [] : ["--port", String(port)])],
    cwd: root,
    env: { NO_COLOR: "1", ZEROVID_MODELS: "", ZEROVID_QUEUE: "", ZEROVID_TOKEN: "", ZEROVID_DATA: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const t of s.pipeThrough(new TextDecoderStream())) out = (out + t).slice(-200_000);
  };
  const streams = Promise.all([drain(child.stdout), drain(child.stderr)]).catch(() => {});
  const exited = Promise.all([child.status, streams]).then(([s]) => s);
  const signal = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch { /* gone already */ }
  };
  return {
    pid: child.pid,
    base: `http://127.0.0.1:${port}`,
    log: () => out,
    exited,
    kill: async () => {
      signal("SIGKILL");
      await exited;
    },
    stop: async () => {
      signal("SIGTERM");
      const t = setTimeout(() => signal("SIGKILL"), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Polls `fn` until it returns something other than null/undefined; past the deadline fails with the last value. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined>,
  timeoutMs: number,
  context: () => string = () => "",
): Promise<T> {
  const t0 = Date.now();
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null && v !== undefined) return v;
      last = v;
    } catch (e) {
      last = e instanceof Error ? e.message : e;
    }
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)})\n${context()}`);
    }
    await sleep(200);
  }
}

export type Json = Record<string, unknown>;

/** A request with a deadline: status, headers and the JSON body (or {text} when the body is not JSON). */
export async function call(
  url: string,
  init: RequestInit = {},
  timeoutMs = 30_000,
): Promise<{ status: number; headers: Headers; body: Json }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: Json;
  try {
    body = JSON.parse(text);
  } catch {
    body = { text };
  }
  return { status: res.status, headers: res.headers, body };
}

export function postJson(base: string, body: unknown) {
  return call(`${base}/v1/jobs`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

export function postForm(base: string, fields: Record<string, string>, video: Uint8Array, name = "clip.mp4") {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  fd.set("video", new File([video as Uint8Array<ArrayBuffer>], name, { type: "video/mp4" }));
  return call(`${base}/v1/jobs`, { method: "POST", body: fd });
}

const FINAL = ["succeeded", "failed", "cancelled"];

/** Waits for a job to end; returns its view. */
export function waitJob(base: string, id: string, timeoutMs: number, context?: () => string): Promise<Json> {
  return waitFor(
    `job ${id} to end`,
    async () => {
      const r = await call(`${base}/v1/jobs/${id}`);
      return r.status === 200 && FINAL.includes(r.body.status as string) ? r.body : null;
    },
    timeoutMs,
    context,
  );
}

export interface SseEvent {
  event: string;
  data: Json;
}

/** Reads a job's event stream until the server ends it (after done / failed / cancelled) or the deadline. */
export async function readEvents(
  base: string,
  id: string,
  timeoutMs: number,
  onEvent?: (e: SseEvent) => void,
): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(`${base}/v1/jobs/${id}/events`, { signal: ac.signal });
    if (res.status !== 200) throw new Error(`events of ${id}: HTTP ${res.status} ${await res.text()}`);
    let buf = "";
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (!data) continue; // a ping
        const e = { event, data: JSON.parse(data) };
        out.push(e);
        onEvent?.(e);
      }
    }
    return out;
  } catch (e) {
    if (ac.signal.aborted) {
      throw new Error(
        `events of ${id}: the stream did not end within ${timeoutMs} ms; saw ${out.map((e) => e.event).join(",")}`,
      );
    }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
