// Small server behaviours from issue 11: the 202 reply of a job that started at once, HEAD on a result, result
// retention that never deletes the result a job just reported, and an AV1 input named as such (ffmpeg.wasm has no
// AV1 decoder). In-process app over a real socket with a fake runner, as tests/server_test.ts does.
// deno-lint-ignore-file no-explicit-any -- JSON replies are read loosely; each field read is asserted
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import { encodeVideo } from "../pipeline/media/encode.ts";
import { probeVideo } from "../pipeline/media/probe.ts";
import { decodeVideo } from "../pipeline/media/decode.ts";
import { parseServeArgs, ServeArgError } from "../routes/cli.ts";
import type { Runner } from "../routes/queue/types.ts";
import { openServer } from "../routes/server.ts";
import { MEDIA_DIR } from "../fixtures/paths.ts";
import { browserGuards, type BrowserSafety } from "../routes/app/guard.ts";
import { Hono } from "hono";

/** A 2-frame 32x32 AV1 video in an MP4 (made with aomenc, remuxed by FFmpeg; 895 bytes). */
const AV1_MP4 = Uint8Array.from(
  atob([
    "AAAAIGZ0eXBpc29tAAACAGlzb21hdjAxaXNvMm1wNDEAAAAIZnJlZQAAAGttZGF0CgoAAAACJ/5tfIAgMi8QAIAAI4RcWLtWs2yH",
    "qN3NkHmdje9d9qe1Y8v+KORg/UfuU2xJPB5tgR9JOq//6DIkMAPAgAAARoABAMTw4+6UJUhx8h+9d7VHMIuk1ullH6w9szD4AAAC",
    "7G1vb3YAAABsbXZoZAAAAAAAAAAAAAAAAAAAA+gAAAB9AAEAAAEAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAA",
    "AAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIAAAI7dHJhawAAAFx0a2hkAAAAAwAAAAAAAAAAAAAAAQAAAAAA",
    "AAB9AAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAQAAAAAAgAAAAIAAAAAAAJGVkdHMAAAAc",
    "ZWxzdAAAAAAAAAABAAAAfQAAAAAAAQAAAAABs21kaWEAAAAgbWRoZAAAAAAAAAAAAAAAAAAAPoAAAAfQVcQAAAAAAC1oZGxyAAAA",
    "AAAAAAB2aWRlAAAAAAAAAAAAAAAAVmlkZW9IYW5kbGVyAAAAAV5taW5mAAAAFHZtaGQAAAABAAAAAAAAAAAAAAAkZGluZgAAABxk",
    "cmVmAAAAAAAAAAEAAAAMdXJsIAAAAAEAAAEec3RibAAAAJZzdHNkAAAAAAAAAAEAAACGYXYwMQAAAAAAAAABAAAAAAAAAAAAAAAA",
    "AAAAAAAgACAASAAAAEgAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABj//wAAAAxhdjFDgQAMAAAAABBw",
    "YXNwAAAAAQAAAAEAAAAUYnRydAAAAAAAABjAAAAYwAAAACBzdHRzAAAAAAAAAAIAAAABAAAH0AAAAAEAAAAAAAAAFHN0c3MAAAAA",
    "AAAAAQAAAAEAAAAcc3RzYwAAAAAAAAABAAAAAQAAAAIAAAABAAAAHHN0c3oAAAAAAAAAAAAAAAIAAAA9AAAAJgAAABRzdGNvAAAA",
    "AAAAAAEAAAAwAAAAPXVkdGEAAAA1bWV0YQAAAAAAAAAhaGRscgAAAAAAAAAAbWRpcmFwcGwAAAAAAAAAAAAAAAAIaWxzdA==",
  ].join("")),
  (c) => c.charCodeAt(0),
);

const quiet = () => {};

async function withServer(
  o: {
    runner: Runner;
    keepBytes?: number;
    browser?: BrowserSafety;
    intake?: { uploadSlots?: number; idleMs?: number };
    limits?: { queueSize?: number };
  },
  fn: (base: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-small-" });
  const srv = await openServer({
    dataDir: dir,
    modelRoots: [],
    validate: (r, limits, video) => validateRequest(r, { f16: false }, limits, video),
    log: quiet,
    ...o,
  });
  const ac = new AbortController();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} }, srv.app.fetch);
  try {
    await fn(`http://127.0.0.1:${http.addr.port}`);
  } finally {
    await srv.close();
    ac.abort();
    await http.finished;
    await Deno.remove(dir, { recursive: true });
  }
}

/** Returns a real 2-frame mp4 of `side` pixels; waits for `gate` first when given. */
function runner(side: number, gate?: Promise<void>): Runner {
  return async (req) => {
    await gate;
    const bytes = await encodeVideo(
      { width: side, height: side, fps: 4, count: 2, data: new Uint8Array(side * side * 3 * 2).fill(77) },
      "mp4",
    );
    const { video: _, ...params } = req;
    return {
      bytes,
      format: "mp4",
      contentType: "video/mp4",
      params,
      frames: 2,
      width: side,
      height: side,
      fps: 4,
      timings: { total: 0 },
    };
  };
}

async function post(base: string, body: Record<string, unknown>): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}/v1/jobs`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

async function waitDone(base: string, id: string): Promise<any> {
  const until = performance.now() + 20_000;
  let j: any = null;
  while (performance.now() < until) {
    j = await (await fetch(`${base}/v1/jobs/${id}`)).json();
    if (!["queued", "running"].includes(j.status)) return j;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`job ${id} did not finish: ${JSON.stringify(j)}`);
}

/** A GET with a Host header of our choosing (fetch always sends the URL's): a raw HTTP/1.1 exchange. */
async function rawGet(base: string, path: string, host: string): Promise<{ status: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(base).port) });
  try {
    await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    let text = "";
    const buf = new Uint8Array(65536);
    const until = performance.now() + 10_000;
    for (;;) {
      if (performance.now() > until) throw new Error(`no complete answer to GET ${path}: ${text.slice(0, 200)}`);
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0), text };
  } finally {
    conn.close();
  }
}

const T2V = { mode: "text2video", prompt: "a cat", videoLength: 2, steps: 2 };

Deno.test("server: the 202 reply says running (position null) for a job that started, queued with its place else", async () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => open = r);
  await withServer({ runner: runner(16, gate) }, async (base) => {
    const first = await post(base, T2V);
    assertEquals(first.status, 202);
    // The queue was empty: the job starts at once, or is first in line; never "queued" at position 0.
    if (first.json.status === "queued") assertEquals(first.json.position, 1);
    else assertEquals([first.json.status, first.json.position], ["running", null]);
    const until = performance.now() + 5000;
    while ((await (await fetch(`${base}/v1/jobs/${first.json.id}`)).json()).status !== "running") {
      assert(performance.now() < until, "the first job did not start");
      await new Promise((r) => setTimeout(r, 10));
    }
    const second = await post(base, T2V);
    assertEquals([second.json.status, second.json.position], ["queued", 1]);
    open();
    await waitDone(base, second.json.id);
  });
});

Deno.test("server: HEAD on a result sends GET's headers with the real length; a range's length is the range's", async () => {
  await withServer({ runner: runner(32) }, async (base) => {
    const { json } = await post(base, T2V);
    assertEquals((await waitDone(base, json.id)).status, "succeeded");
    const url = `${base}/v1/jobs/${json.id}/result`;
    const get = await fetch(url);
    const bytes = new Uint8Array(await get.arrayBuffer());
    assert(bytes.length > 100, `${bytes.length} bytes`);
    assertEquals(get.headers.get("content-length"), String(bytes.length));
    assertEquals((await probeVideo(bytes)).frames, 2);
    const head = await fetch(url, { method: "HEAD" });
    assertEquals(head.status, 200);
    assertEquals(head.headers.get("content-length"), String(bytes.length));
    assertEquals(head.headers.get("content-type"), "video/mp4");
    assertEquals((await head.arrayBuffer()).byteLength, 0);
    const part = await fetch(url, { headers: { Range: "bytes=10-19" } });
    assertEquals(part.status, 206);
    assertEquals(part.headers.get("content-length"), "10");
    assertEquals(new Uint8Array(await part.arrayBuffer()), bytes.slice(10, 20));
    const headPart = await fetch(url, { method: "HEAD", headers: { Range: "bytes=-7" } });
    assertEquals([headPart.status, headPart.headers.get("content-length")], [206, "7"]);
    await headPart.body?.cancel();
  });
});

Deno.test("server: a byte budget smaller than one result keeps the newest result; --keep-mb/--keep-hours 0 refused", async () => {
  await withServer({ runner: runner(32), keepBytes: 1 }, async (base) => {
    const a = (await post(base, T2V)).json.id;
    const ja = await waitDone(base, a);
    assertEquals([ja.status, ja.result.available], ["succeeded", true]);
    assertEquals((await fetch(`${base}/v1/jobs/${a}/result`)).status, 200, "the result the job just reported");
    const b = (await post(base, T2V)).json.id;
    await waitDone(base, b);
    const rb = await fetch(`${base}/v1/jobs/${b}/result`);
    assertEquals(rb.status, 200);
    await rb.body?.cancel();
    const ra = await fetch(`${base}/v1/jobs/${a}/result`);
    assertEquals(ra.status, 410, "the older result makes room");
    await ra.body?.cancel();
  });
  for (const flag of ["--keep-mb", "--keep-hours"]) {
    let err: unknown = null;
    try {
      parseServeArgs([flag, "0"]);
    } catch (e) {
      err = e;
    }
    assert(err instanceof ServeArgError && err.message.startsWith(`${flag}: expected a number > 0 (0: `), `${err}`);
  }
  assertEquals(parseServeArgs(["--keep-mb", "0.5"]).keepMb, 0.5);
});

Deno.test("media: an AV1 video is refused naming its codec (probe, decode, and the server's 400)", async () => {
  for (
    const step of [() => probeVideo(AV1_MP4, "clip.mp4"), () => decodeVideo(AV1_MP4, { resolution: 64 }, "clip.mp4")]
  ) {
    const err = await step().then(() => null, (e) => e as Error);
    assert(err && /its video codec is AV1/.test(err.message), `${err}`);
  }
  await withServer({ runner: runner(16) }, async (base) => {
    const form = new FormData();
    form.set("mode", "canny");
    form.set("prompt", "edges");
    form.set("video", new File([AV1_MP4], "clip.mp4", { type: "video/mp4" }));
    const res = await fetch(`${base}/v1/jobs`, { method: "POST", body: form });
    const j = await res.json();
    assertEquals([res.status, j.field], [400, "video"]);
    assert(/its video codec is AV1/.test(j.error), j.error);
  });
});

Deno.test("server: cross-site state changes get 403 (JSON, form, multipart, DELETE); same-origin and no-Origin pass", async () => {
  await withServer({ runner: runner(16) }, async (base) => {
    const evil = "http://evil.example";
    const bodies: [string, BodyInit, Record<string, string>][] = [
      ["json", JSON.stringify(T2V), { "Content-Type": "application/json" }],
      ["urlencoded", new URLSearchParams({ mode: "text2video", prompt: "x" }), {}],
      [
        "multipart",
        (() => {
          const f = new FormData();
          f.set("mode", "text2video");
          f.set("prompt", "x");
          return f;
        })(),
        {},
      ],
    ];
    for (const [what, body, headers] of bodies) {
      for (const origin of [evil, "null", `${evil}:${new URL(base).port}`]) {
        const res = await fetch(`${base}/v1/jobs`, { method: "POST", body, headers: { ...headers, Origin: origin } });
        const j = await res.json();
        assertEquals(res.status, 403, `${what} from ${origin}: ${JSON.stringify(j)}`);
        assert(/cross-site request refused/.test(j.error), j.error);
      }
    }
    assertEquals((await (await fetch(`${base}/v1/jobs`)).json()).jobs.length, 0, "a refused request queued a job");
    const own = await fetch(`${base}/v1/jobs`, {
      method: "POST",
      body: JSON.stringify(T2V),
      headers: { "Content-Type": "application/json", Origin: base },
    });
    assertEquals(own.status, 202);
    const { id } = await own.json();
    await waitDone(base, id);
    const none = await post(base, T2V); // curl and scripts send no Origin
    assertEquals(none.status, 202);
    await waitDone(base, none.json.id);
    const del = await fetch(`${base}/v1/jobs/${id}`, { method: "DELETE", headers: { Origin: evil } });
    assertEquals(del.status, 403);
    await del.body?.cancel();
    // Reading is not state-changing: a GET with a foreign Origin is answered (CORS keeps its body from the page).
    const get = await fetch(`${base}/v1/jobs/${id}`, { headers: { Origin: evil } });
    assertEquals(get.status, 200);
    assertEquals(get.headers.get("access-control-allow-origin"), null);
    await get.body?.cancel();
  });
});

Deno.test("server: on loopback, a Host that is not a loopback name (DNS rebinding) gets 403 unless --allow-host", async () => {
  await withServer({ runner: runner(16), browser: { allowHosts: ["zerovid.lan"] } }, async (base) => {
    const port = new URL(base).port;
    for (
      const [host, status] of [
        [`evil.example:${port}`, 403],
        ["evil.example:8787", 403],
        [`127.0.0.1:${port}`, 200],
        [`localhost:${port}`, 200],
        [`[::1]:${port}`, 200],
        [`app.localhost:${port}`, 200],
        [`zerovid.lan:${port}`, 200],
      ] as const
    ) {
      for (const path of ["/healthz", "/", "/v1/jobs"]) {
        const res = await rawGet(base, path, host);
        assertEquals(res.status, status, `${path} with Host ${host}: ${res.text.slice(0, 300)}`);
        if (status === 403) assert(/DNS-rebinding/.test(res.text), res.text);
      }
    }
  });
  // Listening on every interface, names are not checked (the server is reachable by any of its names).
  await withServer({ runner: runner(16), browser: { listenHost: "0.0.0.0" } }, async (base) => {
    assertEquals((await rawGet(base, "/healthz", "box.example:8000")).status, 200);
  });
});

Deno.test("server: --cors ORIGIN answers preflights for it and lets its POSTs through; other origins stay refused", async () => {
  const app = "https://app.example";
  await withServer({ runner: runner(16), browser: { cors: [app] } }, async (base) => {
    const pre = await fetch(`${base}/v1/jobs`, {
      method: "OPTIONS",
      headers: {
        Origin: app,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
      },
    });
    assertEquals(pre.status, 204);
    assertEquals(pre.headers.get("access-control-allow-origin"), app);
    assert(/POST/.test(pre.headers.get("access-control-allow-methods") ?? ""), "POST not allowed");
    await pre.body?.cancel();
    const res = await fetch(`${base}/v1/jobs`, {
      method: "POST",
      body: JSON.stringify(T2V),
      headers: { "Content-Type": "application/json", Origin: app },
    });
    assertEquals(res.status, 202);
    assertEquals(res.headers.get("access-control-allow-origin"), app);
    await waitDone(base, (await res.json()).id);
    const evil = await fetch(`${base}/v1/jobs`, {
      method: "POST",
      body: JSON.stringify(T2V),
      headers: { "Content-Type": "application/json", Origin: "https://evil.example" },
    });
    assertEquals(evil.status, 403);
    assertEquals(evil.headers.get("access-control-allow-origin"), null);
    await evil.body?.cancel();
  });
  assertEquals(parseServeArgs(["--cors", app, "--cors=http://localhost:3000/"]).cors, [app, "http://localhost:3000"]);
  assertEquals(parseServeArgs(["--allow-host", "Zerovid.LAN"]).allowHosts, ["zerovid.lan"]);
  for (const bad of ["app.example", "https://app.example/path", "ftp://x", "*"]) {
    let err: unknown = null;
    try {
      parseServeArgs(["--cors", bad]);
    } catch (e) {
      err = e;
    }
    assert(err instanceof ServeArgError && /^--cors: expected an origin/.test(err.message), `${bad}: ${err}`);
  }
});

/** Opens a raw connection and sends `head` (and nothing more until told); reads the answer with a deadline. */
async function rawSend(
  base: string,
  head: string,
): Promise<{ conn: Deno.TcpConn; answer(ms: number): Promise<string> }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(base).port) });
  await conn.write(new TextEncoder().encode(head));
  return {
    conn,
    answer: async (ms) => {
      let text = "";
      const buf = new Uint8Array(65536);
      const until = performance.now() + ms;
      while (!/\r\n\r\n[\s\S]*\}/.test(text)) {
        const left = until - performance.now();
        if (left <= 0) throw new Error(`no answer within ${ms} ms; got ${JSON.stringify(text)}`);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const n = await Promise.race([
          conn.read(buf),
          new Promise<"late">((r) => timer = setTimeout(() => r("late"), left)),
        ]).finally(() => clearTimeout(timer));
        if (n === "late") continue;
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      return text;
    },
  };
}

Deno.test("server: a body that stops arriving gets 408 after the idle time; a full queue is refused before the body", async () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => open = r);
  await withServer({ runner: runner(16, gate), intake: { idleMs: 800 }, limits: { queueSize: 1 } }, async (base) => {
    // A client that announces 100 bytes and sends 3 (slowloris on the body).
    const t0 = performance.now();
    const slow = await rawSend(
      base,
      'POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"m',
    );
    const text = await slow.answer(10_000);
    slow.conn.close();
    const ms = performance.now() - t0;
    assert(/^HTTP\/1\.1 408/.test(text), text);
    assert(/stopped arriving/.test(text), text);
    assert(ms >= 700 && ms < 5000, `answered after ${ms} ms`);

    // One job runs (held), one waits: the queue (size 1) is full. The next POST is refused from its headers alone.
    const a = await post(base, T2V);
    const until = performance.now() + 5000;
    while ((await (await fetch(`${base}/v1/jobs/${a.json.id}`)).json()).status !== "running") {
      assert(performance.now() < until, "the first job did not start");
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals((await post(base, T2V)).status, 202);
    const full = await rawSend(
      base,
      "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n" +
        "Content-Length: 50000000\r\n\r\n",
    );
    const refused = await full.answer(5000);
    full.conn.close();
    assert(/^HTTP\/1\.1 429/.test(refused) && /queue is full/.test(refused), refused);
    assert(/retry-after: \d+/i.test(refused), refused);
    open();
  });
});

Deno.test("server: uploads beyond the slot count get 429 at once while the others are received", async () => {
  await withServer({ runner: runner(16), intake: { uploadSlots: 1, idleMs: 5000 } }, async (base) => {
    // The one slot is held by an upload that is still arriving.
    const held = await rawSend(
      base,
      "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n" +
        "Content-Length: 1000\r\n\r\n--b\r\n",
    );
    await new Promise((r) => setTimeout(r, 200));
    const form = new FormData();
    form.set("mode", "canny");
    form.set("prompt", "edges");
    form.set("video", new File([new Uint8Array(1000)], "v.mp4"));
    const res = await fetch(`${base}/v1/jobs`, { method: "POST", body: form });
    const j = await res.json();
    assertEquals(res.status, 429, JSON.stringify(j));
    assert(/1 uploads are being received/.test(j.error), j.error);
    assertEquals(res.headers.get("retry-after"), "5");
    held.conn.close();
    // The slot comes back when that upload ends (here: its client went away).
    const until = performance.now() + 10_000;
    for (;;) {
      const r = await fetch(`${base}/v1/jobs`, { method: "POST", body: form });
      const body = await r.json();
      if (r.status !== 429) {
        assertEquals([r.status, body.field], [400, "video"]); // read and judged: 1000 zero bytes are no video
        break;
      }
      assert(performance.now() < until, "the slot was not freed");
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});

Deno.test("browser guards: a client that sends no Host header is judged by its URL's host", async () => {
  const app = new Hono();
  for (const g of browserGuards({ listenHost: "127.0.0.1" })) app.use(g);
  app.get("/x", (c) => c.text("ok"));
  app.post("/x", (c) => c.text("ok"));
  assertEquals((await app.fetch(new Request("http://localhost/x"))).status, 200);
  assertEquals((await app.fetch(new Request("http://127.0.0.1:8787/x"))).status, 200);
  const rebound = await app.fetch(new Request("http://evil.example/x"));
  assertEquals(rebound.status, 403);
  assert(/DNS-rebinding/.test(await rebound.text()));
  // Origin is compared with the same host: the page's own origin passes, another site's does not.
  const post = (origin: string) =>
    app.fetch(new Request("http://localhost:8787/x", { method: "POST", headers: { Origin: origin } }));
  assertEquals((await post("http://localhost:8787")).status, 200);
  assertEquals((await post("http://evil.example")).status, 403);
});

Deno.test("server: an uploaded video reaches the job byte for byte (parsed as it arrives, stored from disk)", async () => {
  // A real clip with a few KiB of junk appended after its end (FFmpeg ignores it), so every byte is distinct
  // content the parser must not lose or add: boundary-like text included.
  const clip = await Deno.readFile(`${MEDIA_DIR}/clip_testsrc_128x96_8fps.mp4`);
  const tail = new TextEncoder().encode("\r\n--boundary\r\n--\r\n".repeat(200));
  const upload = new Uint8Array(clip.length + tail.length);
  upload.set(clip);
  upload.set(tail, clip.length);
  const seen: Uint8Array[] = [];
  const inner = runner(16);
  await withServer({ runner: (req, hooks) => (seen.push(req.video!), inner(req, hooks)) }, async (base) => {
    const form = new FormData();
    form.set("mode", "canny");
    form.set("prompt", "edges");
    form.set("resolution", "64");
    form.set("videoLength", "2");
    form.set("video", new File([upload], "clip.mp4"));
    const res = await fetch(`${base}/v1/jobs`, { method: "POST", body: form });
    const j = await res.json();
    assertEquals(res.status, 202, JSON.stringify(j));
    const until = performance.now() + 30_000;
    for (;;) {
      const job = await (await fetch(`${base}/v1/jobs/${j.id}`)).json();
      if (job.status === "succeeded") break;
      assert(job.status !== "failed" && performance.now() < until, JSON.stringify(job));
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  assertEquals(seen.length, 1);
  assertEquals(seen[0].length, upload.length);
  assert(seen[0].every((b, i) => b === upload[i]), "the job got other bytes than were uploaded");
});
