// The HTTP server: the API over a real socket (127.0.0.1, port 0), first with fake runners (fast: validation,
// limits, queue behaviour, restart), then with the real pipeline on the tiny golden models (every mode to a
// playable video, server-sent events, cancelling a running job).
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { join } from "node:path";
import type { JobRequest, JobResult } from "../pipeline/job/types.ts";
import { runJob } from "../pipeline/job/run.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import type { Device } from "../pipeline/gpu/device.ts";
import { testDevice } from "./util.ts";
import { ModelCache } from "../pipeline/model_cache.ts";
import { onnxModel } from "../fixtures/onnx_writer.ts";
import { encodeVideo } from "../pipeline/media/encode.ts";
import { probeVideo } from "../pipeline/media/probe.ts";
import type { Runner } from "../routes/queue/types.ts";
import { openServer, type ServerOptions, type ZerovidServer } from "../routes/server.ts";
import { parseServeArgs, SERVE_USAGE, ServeArgError } from "../routes/cli.ts";
import { GOLDEN_MODELS, MEDIA_DIR } from "../fixtures/paths.ts";

const GOLDEN = GOLDEN_MODELS;
const MEDIA = MEDIA_DIR + "/";
const CLIP = join(MEDIA, "clip_testsrc_128x96_8fps.mp4"); // 16 frames, 128x96, 8 fps
const quiet = () => {};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// -----------------------------------------------------------------------------------------------------------------
// Helpers

interface Running {
  base: string;
  srv: ZerovidServer;
  dir: string;
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

async function start(o: Partial<ServerOptions> & { runner: Runner; dir?: string }): Promise<Running> {
  const dir = o.dir ?? await Deno.makeTempDir({ prefix: "zerovid-server-" });
  const srv = await openServer({
    dataDir: dir,
    modelRoots: [GOLDEN],
    validate: (r, limits, video) => validateRequest(r, { f16: false }, limits, video),
    log: quiet,
    ...o,
  });
  const ac = new AbortController();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} }, srv.app.fetch);
  return {
    base: `http://127.0.0.1:${http.addr.port}`,
    srv,
    dir,
    stop: async ({ keepDir = false } = {}) => {
      await srv.close();
      ac.abort();
      await http.finished;
      if (!keepDir) await Deno.remove(dir, { recursive: true });
    },
  };
}

let tinyVideo: Promise<Uint8Array> | null = null;
/** A real 2-frame 16x16 mp4, made once (what the fake runners return). */
function fakeVideo(): Promise<Uint8Array> {
  tinyVideo ??= encodeVideo(
    { width: 16, height: 16, fps: 4, count: 2, data: new Uint8Array(16 * 16 * 3 * 2).fill(90) },
    "mp4",
  );
  return tinyVideo;
}

/** Reports `steps` steps `ms` apart, stops (AbortError) when aborted, returns a real small mp4. */
function fakeRunner(steps = 3, ms = 5, seen: JobRequest[] = []): Runner {
  return async (req, { onProgress, signal }) => {
    seen.push(req);
    if (req.prompt === "explode") throw new Error("the GPU caught fire");
    for (let i = 1; i <= steps; i++) {
      await sleep(ms);
      if (signal?.aborted) throw new DOMException("stopped", "AbortError");
      onProgress?.({ stage: "denoise", step: i, total: steps });
    }
    const bytes = await fakeVideo();
    const { video: _, ...params } = req;
    return {
      bytes,
      format: "mp4",
      contentType: "video/mp4",
      params,
      frames: 2,
      width: 16,
      height: 16,
      fps: 4,
      timings: { denoise: 0.01, total: 0.02 },
    } satisfies JobResult;
  };
}

async function json(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`not JSON (HTTP ${res.status}): ${text.slice(0, 200)}`);
  }
}

function post(base: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}/v1/jobs`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

function postForm(base: string, fields: Record<string, string>, video?: Uint8Array, name = "clip.mp4") {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  if (video) fd.set("video", new File([video as Uint8Array<ArrayBuffer>], name, { type: "video/mp4" }));
  return fetch(`${base}/v1/jobs`, { method: "POST", body: fd });
}

async function waitJob(base: string, id: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  const t0 = Date.now();
  for (;;) {
    const j = await json(await fetch(`${base}/v1/jobs/${id}`));
    if (["succeeded", "failed", "cancelled"].includes(j.status as string)) return j;
    if (Date.now() - t0 > timeoutMs) throw new Error(`job ${id} still ${j.status} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Reads a job's event stream to its end (the server closes it after done / failed / cancelled). */
async function readEvents(base: string, id: string, onEvent?: (e: SseEvent) => void): Promise<SseEvent[]> {
  const res = await fetch(`${base}/v1/jobs/${id}/events`);
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/event-stream");
  const out: SseEvent[] = [];
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
      if (!data) continue; // a comment (ping)
      const e = { event, data: JSON.parse(data) };
      out.push(e);
      onEvent?.(e);
    }
  }
  return out;
}

const T2V = { mode: "text2video", prompt: "a cat", videoLength: 2, width: 64, height: 64, steps: 2, seed: 1 };

// -----------------------------------------------------------------------------------------------------------------
// Fake runner: the API itself

Deno.test("server: submit, status, events, result (content type, Range), recent jobs", async () => {
  const s = await start({ runner: fakeRunner(4, 10) });
  try {
    const res = await post(s.base, T2V);
    assertEquals(res.status, 202);
    const body = await json(res);
    // An idle server starts the job at once (it says so, with no place in line), else it is first in line.
    const started = body.status === "running" && body.position === null;
    assert(started || (body.status === "queued" && body.position === 1), JSON.stringify(body));
    assertEquals(res.headers.get("location"), `/v1/jobs/${body.id}`);
    const id = body.id as string;
    const events = await readEvents(s.base, id);
    const names = events.map((e) => e.event);
    // Either the stream started while the job waited (queued first) or once it ran.
    const from = names[0] === "queued" ? 1 : 0;
    assertEquals(names.slice(from, from + 1).concat(names.slice(-1)), ["started", "done"]);
    const steps = events.filter((e) => e.event === "progress").map((e) => e.data.step);
    assertEquals(steps, [1, 2, 3, 4]);
    const done = events[events.length - 1].data;
    assertEquals(done.status, "succeeded");

    const job = await json(await fetch(`${s.base}/v1/jobs/${id}`));
    assertEquals(job.status, "succeeded");
    assertEquals(job.mode, "text2video");
    assertEquals(job.progress, { stage: "denoise", step: 4, total: 4 });
    const params = job.params as Record<string, unknown>;
    assertEquals(params.seed, 1);
    assertEquals(params.model, "tiny-sd"); // a name, not the server's path
    assertEquals((job.timings as Record<string, number>).total, 0.02);
    const result = job.result as Record<string, unknown>;
    assertEquals(result.url, `/v1/jobs/${id}/result`);

    const file = await fetch(`${s.base}/v1/jobs/${id}/result`);
    assertEquals(file.status, 200);
    assertEquals(file.headers.get("content-type"), "video/mp4");
    const bytes = new Uint8Array(await file.arrayBuffer());
    assertEquals(bytes, await fakeVideo());
    assertEquals((await probeVideo(bytes)).frames, 2);
    const part = await fetch(`${s.base}/v1/jobs/${id}/result`, { headers: { Range: "bytes=4-11" } });
    assertEquals(part.status, 206);
    assertEquals(part.headers.get("content-range"), `bytes 4-11/${bytes.length}`);
    assertEquals(new Uint8Array(await part.arrayBuffer()), bytes.slice(4, 12));
    const dl = await fetch(`${s.base}/v1/jobs/${id}/result?download=1`);
    assert(/^attachment; filename="zerovid-/.test(dl.headers.get("content-disposition")!));
    await dl.body?.cancel();

    // Events of a finished job: just the outcome.
    assertEquals((await readEvents(s.base, id)).map((e) => e.event), ["done"]);
    const list = await json(await fetch(`${s.base}/v1/jobs`));
    assertEquals((list.jobs as { id: string }[]).map((j) => j.id), [id]);
    const health = await json(await fetch(`${s.base}/healthz`));
    assertEquals(health.queue, { queued: 0, running: 0, max: 20, backend: "sqlite" });
  } finally {
    await s.stop();
  }
});

Deno.test("server: every bad request gets a 4xx JSON {error, field}, and the server keeps serving", async () => {
  const s = await start({ runner: fakeRunner(50, 20), limits: { maxUploadMb: 1, maxFrames: 16, maxPrompt: 200 } });
  try {
    const clip = await Deno.readFile(CLIP);
    const junk = new TextEncoder().encode("this is not a video, just text ".repeat(20));
    const big = new Uint8Array(1.5 * 1024 * 1024);
    big.set(clip);
    const cases: [string, () => Promise<Response>, number, string | null][] = [
      ["malformed JSON", () => post(s.base, '{"mode": "text2video", "prompt": '), 400, "body"],
      ["a JSON array", () => post(s.base, "[1, 2]"), 400, "body"],
      ["a JSON string", () => post(s.base, '"hi"'), 400, "body"],
      ["no body", () => post(s.base, ""), 400, "body"],
      [
        "wrong content type",
        () => fetch(`${s.base}/v1/jobs`, { method: "POST", body: "mode=x", headers: { "Content-Type": "text/plain" } }),
        415,
        "body",
      ],
      ["missing mode", () => post(s.base, { prompt: "x" }), 400, "mode"],
      ["unknown mode", () => post(s.base, { ...T2V, mode: "sing" }), 400, "mode"],
      ["missing prompt", () => post(s.base, { mode: "text2video" }), 400, "prompt"],
      ["prompt of the wrong type", () => post(s.base, { ...T2V, prompt: 5 }), 400, "prompt"],
      ["prompt too long", () => post(s.base, { ...T2V, prompt: "x".repeat(201) }), 400, "prompt"],
      ["steps as text", () => post(s.base, { ...T2V, steps: "ten" }), 400, "steps"],
      ["steps zero", () => post(s.base, { ...T2V, steps: 0 }), 400, "steps"],
      ["steps huge", () => post(s.base, { ...T2V, steps: 1e9 }), 400, "steps"],
      ["steps fractional", () => post(s.base, { ...T2V, steps: 2.5 }), 400, "steps"],
      ["width not a multiple of 8", () => post(s.base, { ...T2V, width: 100 }), 400, "width"],
      ["width over the limit", () => post(s.base, { ...T2V, width: 4096 }), 400, "width"],
      ["negative guidance", () => post(s.base, { ...T2V, guidanceScale: -1 }), 400, "guidanceScale"],
      ["seed negative", () => post(s.base, { ...T2V, seed: -5 }), 400, "seed"],
      ["too many frames", () => post(s.base, { ...T2V, videoLength: 17 }), 400, "videoLength"],
      ["bad format", () => post(s.base, { ...T2V, format: "avi" }), 400, "format"],
      ["unknown field", () => post(s.base, { ...T2V, turbo: true }), 400, "turbo"],
      ["field of another mode", () => post(s.base, { ...T2V, imageGuidanceScale: 1.5 }), 400, "imageGuidanceScale"],
      ["t0 after t1", () => post(s.base, { ...T2V, steps: 10, t0: 8, t1: 5 }), 400, "t0"],
      ["unknown model", () => post(s.base, { ...T2V, model: "no-such-model" }), 400, "model"],
      ["traversal name", () => post(s.base, { ...T2V, model: "../../../etc/passwd" }), 400, "model"],
      ["absolute path", () => post(s.base, { ...T2V, model: "/etc/passwd" }), 400, "model"],
      ["dot segments", () => post(s.base, { ...T2V, model: "tiny-sd/../tiny-sd" }), 400, "model"],
      ["backslash", () => post(s.base, { ...T2V, model: "..\\tiny-sd" }), 400, "model"],
      ["hub id", () => post(s.base, { ...T2V, model: "runwayml/stable-diffusion-v1-5" }), 400, "model"],
      ["a ControlNet as base model", () => post(s.base, { ...T2V, model: "tiny-controlnet" }), 400, "model"],
      ["pix2pix model for text2video", () => post(s.base, { ...T2V, model: "tiny-pix2pix" }), 400, "model"],
      [
        "traversal controlnet",
        () => postForm(s.base, { mode: "canny", prompt: "x", controlnet: "../golden/models/tiny-controlnet" }, clip),
        400,
        "controlnet",
      ],
      [
        "depth model outside",
        () => postForm(s.base, { mode: "depth", prompt: "x", depthModel: "/tmp/evil.onnx" }, clip),
        400,
        "depthModel",
      ],
      ["video in JSON", () => post(s.base, { ...T2V, mode: "pix2pix", video: "AAAA" }), 400, "video"],
      ["video mode without a video", () => post(s.base, { mode: "canny", prompt: "x" }), 400, "video"],
      ["a video for text2video", () => postForm(s.base, { mode: "text2video", prompt: "x" }, clip), 400, "video"],
      ["not a video", () => postForm(s.base, { mode: "pix2pix", prompt: "x" }, junk, "notes.mp4"), 400, "video"],
      ["empty upload", () => postForm(s.base, { mode: "pix2pix", prompt: "x" }, new Uint8Array(0)), 400, "video"],
      [
        "truncated video",
        () => postForm(s.base, { mode: "pix2pix", prompt: "x" }, clip.slice(0, clip.length >> 1)),
        400,
        "video",
      ],
      ["oversized upload", () => postForm(s.base, { mode: "pix2pix", prompt: "x" }, big), 413, "video"],
      [
        "form number as text",
        () => postForm(s.base, { mode: "canny", prompt: "x", steps: "many" }, clip),
        400,
        "steps",
      ],
      ["start after the clip", () => postForm(s.base, { mode: "canny", prompt: "x", start: "30" }, clip), 400, "start"],
      [
        "end before start",
        () => postForm(s.base, { mode: "canny", prompt: "x", start: "1", end: "0.5" }, clip),
        400,
        "end",
      ],
      ["unknown job", () => fetch(`${s.base}/v1/jobs/nope`), 404, "id"],
      ["unknown job's result", () => fetch(`${s.base}/v1/jobs/nope/result`), 404, "id"],
      ["unknown job's events", () => fetch(`${s.base}/v1/jobs/nope/events`), 404, "id"],
      ["cancel an unknown job", () => fetch(`${s.base}/v1/jobs/nope`, { method: "DELETE" }), 404, "id"],
      ["bad list limit", () => fetch(`${s.base}/v1/jobs?limit=lots`), 400, "limit"],
      ["unknown route", () => fetch(`${s.base}/v2/everything`), 404, null],
    ];
    for (const [what, send, status, field] of cases) {
      const res = await send();
      const body = await json(res);
      assertEquals([what, res.status], [what, status], `${what}: ${JSON.stringify(body)}`);
      assertEquals([what, body.field], [what, field], `${what}: ${JSON.stringify(body)}`);
      assert(typeof body.error === "string" && body.error.length > 5, `${what}: no message`);
      const h = await fetch(`${s.base}/healthz`);
      assertEquals(h.status, 200, `${what}: the server stopped answering`);
      await h.body?.cancel();
    }
    // The result of a job that has not finished: 409.
    const slow = await json(await post(s.base, T2V));
    const early = await fetch(`${s.base}/v1/jobs/${slow.id}/result`);
    assertEquals(early.status, 409);
    assertEquals((await json(early)).field, "id");
    // Nothing bad was queued.
    assertEquals((await s.srv.queue.list(100)).length, 1);
  } finally {
    await s.stop();
  }
});

Deno.test("server: a video too long for --max-frames is cut, with a notice; form fields are typed", async () => {
  const seen: JobRequest[] = [];
  const s = await start({ runner: fakeRunner(1, 1, seen), limits: { maxFrames: 4 } });
  try {
    const clip = await Deno.readFile(CLIP);
    const res = await postForm(
      s.base,
      { mode: "canny", prompt: "edges", steps: "2", resolution: "64", seed: "" },
      clip,
    );
    const body = await json(res);
    assertEquals(res.status, 202, JSON.stringify(body));
    assert(/16 frames; the first 4/.test(body.notice as string), String(body.notice));
    const job = await waitJob(s.base, body.id as string);
    assertEquals(job.status, "succeeded");
    const r = seen[0];
    assertEquals([r.videoLength, r.steps, r.resolution, r.videoName], [4, 2, 64, "clip.mp4"]);
    assert(r.video instanceof Uint8Array && r.video.length === clip.length);
    // Defaults came from the model roots (names in the job, paths only inside the runner).
    assertEquals(r.model, join(GOLDEN, "tiny-sd"));
    assertEquals(r.controlnet, join(GOLDEN, "tiny-controlnet"));
    const params = job.params as Record<string, unknown>;
    assertEquals([params.model, params.controlnet], ["tiny-sd", "tiny-controlnet"]);
    assert(Number.isInteger(params.seed), "a random seed is chosen and reported");
  } finally {
    await s.stop();
  }
});

Deno.test("server: 30 jobs at once with queue size 10: the rest get 429 + Retry-After, no accepted job is lost", async () => {
  const s = await start({ runner: fakeRunner(2, 50), limits: { queueSize: 10 } });
  try {
    const res = await Promise.all(Array.from({ length: 30 }, (_, i) => post(s.base, { ...T2V, prompt: `job ${i}` })));
    const bodies = await Promise.all(res.map(json));
    const accepted = bodies.filter((_, i) => res[i].status === 202).map((b) => b.id as string);
    const refused = res.filter((r) => r.status === 429);
    assertEquals(accepted.length + refused.length, 30);
    // 10 waiting, plus the one the worker may already have taken off the queue.
    assert(accepted.length >= 10 && accepted.length <= 11, `${accepted.length} accepted`);
    for (const r of refused) assert(Number(r.headers.get("retry-after")) >= 1);
    for (const [i, b] of bodies.entries()) {
      if (res[i].status === 429) assert(/queue is full/.test(b.error as string) && b.field === null);
    }
    for (const id of accepted) assertEquals((await waitJob(s.base, id)).status, "succeeded");
    assertEquals(new Set(accepted).size, accepted.length);
    // And once drained, the queue takes jobs again.
    assertEquals((await post(s.base, T2V)).status, 202);
  } finally {
    await s.stop();
  }
});

Deno.test("server: cancel a queued job and a running one through DELETE; a failed job does not stop the queue", async () => {
  const s = await start({ runner: fakeRunner(400, 5) });
  try {
    const a = (await json(await post(s.base, { ...T2V, prompt: "long" }))).id as string;
    const b = (await json(await post(s.base, { ...T2V, prompt: "waiting" }))).id as string;
    while ((await json(await fetch(`${s.base}/v1/jobs/${a}`))).status !== "running") await sleep(5);
    const eventsB = readEvents(s.base, b);
    const delB = await fetch(`${s.base}/v1/jobs/${b}`, { method: "DELETE" });
    assertEquals(delB.status, 200);
    assertEquals((await json(delB)).status, "cancelled");
    assertEquals((await eventsB).map((e) => e.event).slice(-1), ["cancelled"]);

    const eventsA = readEvents(s.base, a);
    const delA = await fetch(`${s.base}/v1/jobs/${a}`, { method: "DELETE" });
    assertEquals(delA.status, 202);
    assertEquals((await json(delA)).cancelRequested, true);
    const evA = await eventsA;
    assertEquals(evA[evA.length - 1].event, "cancelled");
    const jobA = await waitJob(s.base, a);
    assertEquals(jobA.status, "cancelled");
    assert(((jobA.progress as { step: number } | null)?.step ?? 0) < 400, "stopped early");
    assertEquals((await fetch(`${s.base}/v1/jobs/${a}/result`)).status, 409);

    const boom = (await json(await post(s.base, { ...T2V, prompt: "explode", steps: 2 }))).id as string;
    const after = (await json(await post(s.base, { ...T2V, prompt: "after" }))).id as string;
    const failed = await waitJob(s.base, boom);
    assertEquals([failed.status, failed.error], ["failed", "the GPU caught fire"]);
    const r = await fetch(`${s.base}/v1/jobs/${boom}/result`);
    assertEquals(r.status, 409);
    assert(/failed: the GPU caught fire/.test((await json(r)).error as string));
    await fetch(`${s.base}/v1/jobs/${after}`, { method: "DELETE" }).then((r) => r.body?.cancel());
    assertEquals((await waitJob(s.base, after)).status, "cancelled");
    // A finished job can be deleted.
    const del = await fetch(`${s.base}/v1/jobs/${boom}`, { method: "DELETE" });
    assertEquals(await json(del), { id: boom, deleted: true });
    assertEquals(await fetch(`${s.base}/v1/jobs/${boom}`).then((r) => r.body?.cancel(), () => {}), undefined);
  } finally {
    await s.stop();
  }
});

Deno.test("server: a restart over the same data dir keeps queued jobs (they run) and finished results", async () => {
  const hang: Runner = (req, { signal }) =>
    req.prompt === "first" ? fakeRunner(1, 1)(req, { signal }) : new Promise((_, reject) => {
      signal?.addEventListener("abort", () => reject(new DOMException("stopped", "AbortError")));
    });
  const s1 = await start({ runner: hang });
  const first = (await json(await post(s1.base, { ...T2V, prompt: "first" }))).id as string;
  assertEquals((await waitJob(s1.base, first)).status, "succeeded");
  const clip = await Deno.readFile(CLIP);
  const running = (await json(await post(s1.base, { ...T2V, prompt: "running" }))).id as string;
  const queued = (await json(await postForm(s1.base, { mode: "pix2pix", prompt: "queued", steps: "2" }, clip)))
    .id as string;
  while ((await json(await fetch(`${s1.base}/v1/jobs/${running}`))).status !== "running") await sleep(5);
  await s1.stop({ keepDir: true });

  const seen: JobRequest[] = [];
  const s2 = await start({ runner: fakeRunner(1, 1, seen), dir: s1.dir });
  try {
    for (const id of [running, queued]) assertEquals((await waitJob(s2.base, id)).status, "succeeded");
    assertEquals(seen.map((r) => r.prompt), ["running", "queued"]);
    // The upload survived the restart.
    assertEquals(seen[1].video, clip);
    const old = await fetch(`${s2.base}/v1/jobs/${first}/result`);
    assertEquals(old.status, 200);
    assertEquals(new Uint8Array(await old.arrayBuffer()), await fakeVideo());
  } finally {
    await s2.stop();
  }
});

Deno.test("server: bearer token on /v1/* (header or ?token=); page, health and OpenAPI stay public", async () => {
  const s = await start({ runner: fakeRunner(1, 1), token: "s3cret" });
  try {
    const no = await fetch(`${s.base}/v1/models`);
    assertEquals(no.status, 401);
    assertEquals(no.headers.get("www-authenticate"), 'Bearer realm="zerovid"');
    assertEquals((await json(no)).field, "authorization");
    const wrong = await fetch(`${s.base}/v1/models`, { headers: { Authorization: "Bearer nope" } });
    assertEquals(wrong.status, 401);
    assert(/invalid_token/.test(wrong.headers.get("www-authenticate")!));
    assertEquals(await json(wrong), { error: "wrong token", field: "authorization" });
    const basic = await fetch(`${s.base}/v1/models`, { headers: { Authorization: "Basic czNjcmV0" } });
    assertEquals([basic.status, (await json(basic)).field], [400, "authorization"]);
    const wrongQuery = await fetch(`${s.base}/v1/jobs?token=s3cre`);
    assertEquals([wrongQuery.status, (await json(wrongQuery)).field], [401, "authorization"]);
    // ?token= is for what cannot send headers (EventSource, <video src>, links): GET only.
    assertEquals((await post(s.base, T2V)).status, 401);
    const postQuery = await fetch(`${s.base}/v1/jobs?token=s3cret`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(T2V),
    });
    assertEquals([postQuery.status, (await json(postQuery)).field], [401, "authorization"]);
    const ok = await fetch(`${s.base}/v1/models`, { headers: { Authorization: "Bearer s3cret" } });
    assertEquals(ok.status, 200);
    await ok.body?.cancel();
    const q = await fetch(`${s.base}/v1/jobs?token=s3cret`);
    assertEquals(q.status, 200);
    await q.body?.cancel();
    assertEquals((await post(s.base, T2V, { Authorization: "Bearer s3cret" })).status, 202);
    for (const p of ["/", "/app.js", "/style.css", "/healthz", "/openapi.json"]) {
      const r = await fetch(`${s.base}${p}`);
      assertEquals(r.status, 200, p);
      await r.body?.cancel();
    }
  } finally {
    await s.stop();
  }
});

Deno.test("server: /v1/models lists the roots' models by kind and mode; no roots = the demo model", async () => {
  const s = await start({ runner: fakeRunner(1, 1) });
  try {
    const body = await json(await fetch(`${s.base}/v1/models`));
    assertEquals(body.demo, false);
    type M = { name: string; kind: string; modes: string[]; crossAttentionDim?: number };
    const byName: Record<string, M> = Object.fromEntries((body.models as M[]).map((m) => [m.name, m]));
    assertEquals(Object.keys(byName).sort(), [
      "tiny-controlnet",
      "tiny-pix2pix",
      "tiny-sd",
      "tiny-sd-original.safetensors",
    ]);
    assertEquals(byName["tiny-sd"], {
      name: "tiny-sd",
      kind: "sd",
      modes: ["text2video", "pose", "canny", "depth"],
      crossAttentionDim: 32,
    });
    assertEquals(byName["tiny-pix2pix"].kind, "pix2pix");
    assertEquals(byName["tiny-controlnet"].modes, ["pose", "canny", "depth"]);
    assertEquals(byName["tiny-sd-original.safetensors"].kind, "single-file");
    assert(!JSON.stringify(body).includes(GOLDEN), "no server paths");
    const health = await json(await fetch(`${s.base}/healthz`));
    assertEquals(health.demo, false);
    const api = await json(await fetch(`${s.base}/openapi.json`));
    assertEquals(api.openapi, "3.1.0");
    const paths = Object.keys(api.paths as object);
    for (const p of ["/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/events", "/v1/jobs/{id}/result", "/v1/models"]) {
      assert(paths.includes(p), p);
    }
    // One body schema per mode (the field registry's fields of that mode), narrowed by the limits.
    type Body = { properties: Record<string, Record<string, unknown>> };
    const schema = (api.components as Record<string, Record<string, { oneOf: Body[] }>>).schemas.JobRequest;
    const bodyOf = (mode: string) => schema.oneOf.find((b) => b.properties.mode.const === mode)!;
    assertEquals(bodyOf("text2video").properties.steps, {
      type: "integer",
      minimum: 2,
      maximum: 150,
      description: "Denoising steps.",
    });
    assertEquals(bodyOf("canny").properties.steps, {
      type: "integer",
      minimum: 1,
      maximum: 150,
      description: "Denoising steps.",
    });
    const page = await (await fetch(`${s.base}/`)).text();
    assert(page.includes('<progress id="progress"'));
  } finally {
    await s.stop();
  }
  const demo = await start({ runner: fakeRunner(1, 1), modelRoots: [] });
  try {
    const body = await json(await fetch(`${demo.base}/v1/models`));
    assertEquals(body, {
      demo: true,
      models: [{ name: "demo", kind: "demo", modes: ["text2video", "pix2pix", "pose", "canny", "depth"] }],
    });
    assertEquals((await json(await fetch(`${demo.base}/healthz`))).demo, true);
    const id = (await json(await post(demo.base, T2V))).id as string;
    const job = await waitJob(demo.base, id);
    assertEquals((job.params as { model: string }).model, "demo");
  } finally {
    await demo.stop();
  }
});

Deno.test("server: parseServeArgs reads flags and the environment, and names a bad option", () => {
  const a = parseServeArgs(
    ["--port", "0", "--models", "/m1", "--models=/m2", "--max-frames", "12", "--queue-size=3", "--host", "0.0.0.0"],
    { ZEROVID_MODELS: "/ignored", ZEROVID_TOKEN: "tok" },
  );
  assertEquals([a.port, a.host, a.modelRoots, a.token], [0, "0.0.0.0", ["/m1", "/m2"], "tok"]);
  assertEquals([a.limits.maxFrames, a.limits.queueSize, a.limits.maxUploadMb], [12, 3, 64]);
  const b = parseServeArgs(["--data-dir", "/d", "--token", "x"], { ZEROVID_MODELS: "/a:/b" });
  assertEquals([b.modelRoots, b.dataDir, b.token], [["/a", "/b"], "/d", "x"]);
  for (
    const [args, msg] of [
      [["--port", "http"], "--port"],
      [["--max-frames", "0"], "--max-frames"],
      [["--models"], "needs a value"],
      [["--fast"], "unknown option"],
      [["--port", "70000"], "--port: expected an integer in 0..65535"],
      [["--keep-hours=-1"], "--keep-hours"],
      [["--host", ""], "--host: empty"],
      [["--token", "has space"], "--token: use letters"],
      [["stray"], "options only"],
    ] as const
  ) {
    let err: unknown = null;
    try {
      parseServeArgs([...args]);
    } catch (e) {
      err = e;
    }
    assert(err instanceof ServeArgError && err.message.includes(msg), `${args}: ${err}`);
  }
  assertEquals(parseServeArgs(["-h"]).help, true);
  // The usage text lists every flag, with the limits' defaults.
  for (
    const f of ["--host H", "--port N", "--models DIR", "--token T", "--data-dir DIR", "--queue-size N", "--cache-mb N"]
  ) {
    assert(SERVE_USAGE.includes(f), f);
  }
  assert(SERVE_USAGE.includes("most denoising steps (default 150)"), SERVE_USAGE);
});

// -----------------------------------------------------------------------------------------------------------------
// The real pipeline (WebGPU) on the tiny golden models

let gpu: Promise<{ dev: Device; models: ModelCache }> | null = null;
function gpuEnv() {
  gpu ??= testDevice().then((dev) => ({ dev, models: new ModelCache(dev) }));
  return gpu;
}

/** A model root: the golden tiny models (linked) plus a tiny depth estimator (1x1 conv to one channel). */
async function tinyRoot(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "zerovid-models-" });
  for (const m of ["tiny-sd", "tiny-pix2pix", "tiny-controlnet", "tiny-sd-original.safetensors"]) {
    await Deno.symlink(join(GOLDEN, m), join(root, m));
  }
  const depth = onnxModel({
    nodes: [
      { op: "Conv", inputs: ["x", "w", "b"], outputs: ["c"] },
      { op: "Squeeze", inputs: ["c", "axis1"], outputs: ["depth"] },
    ],
    initializers: [
      { name: "w", dims: [1, 3, 1, 1], data: new Float32Array([0.3, 0.5, 0.2]) },
      { name: "b", dims: [1], data: new Float32Array([0.1]) },
      { name: "axis1", dims: [1], data: [1], type: "int64" },
    ],
    inputs: [{ name: "x", shape: [1, 3, "height", "width"] }],
    outputs: [{ name: "depth", shape: [1, "height", "width"] }],
  });
  await Deno.writeFile(join(root, "depth-tiny.onnx"), depth);
  return root;
}

async function startGpu(roots: string[]): Promise<Running & { dev: Device }> {
  const env = await gpuEnv();
  const s = await start({
    runner: (req, hooks) => runJob({ ...env, modelRoots: roots }, req, hooks),
    validate: (r, limits, video) => validateRequest(r, env.dev, limits, video),
    modelRoots: roots,
    health: () => ({ adapter: env.dev.adapterName, ok: true }),
  });
  return { ...s, dev: env.dev };
}

const SMALL = { videoLength: "2", resolution: "64", steps: "1", seed: "3" };

Deno.test({
  name: "server (GPU): every mode through the API to a playable video; the event stream of a real job",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await tinyRoot();
    const s = await startGpu([root]);
    try {
      const clip = await Deno.readFile(CLIP);
      const t0 = performance.now();
      const first = await post(s.base, { ...T2V, steps: 2, format: "mp4" });
      const firstBody = await json(first);
      assertEquals(first.status, 202, JSON.stringify(firstBody));
      // The first job's events, read while the jobs run.
      const eventsDone = readEvents(s.base, firstBody.id as string);
      const submitted: [string, Response][] = [
        ["text2video mp4", Response.json(firstBody, { status: 202 })],
        [
          "pix2pix webm",
          await postForm(s.base, { mode: "pix2pix", prompt: "make it blue", ...SMALL, format: "webm" }, clip),
        ],
        [
          "pose gif",
          await postForm(s.base, { mode: "pose", prompt: "a dancer", ...SMALL, fps: "4", format: "gif" }, clip),
        ],
        ["canny mp4", await postForm(s.base, { mode: "canny", prompt: "a deer", ...SMALL, lowThreshold: "50" }, clip)],
        ["depth mp4", await postForm(s.base, { mode: "depth", prompt: "a santa", ...SMALL }, clip)],
        [
          "canny + custom single-file model gif",
          await postForm(s.base, {
            mode: "canny",
            prompt: "arcane style",
            model: "tiny-sd-original.safetensors",
            ...SMALL,
            format: "gif",
          }, clip),
        ],
      ];
      const ids: [string, string][] = [];
      for (const [what, res] of submitted) {
        const body = await json(res);
        assertEquals(res.status, 202, `${what}: ${JSON.stringify(body)}`);
        ids.push([what, body.id as string]);
      }
      for (const [what, id] of ids) {
        const job = await waitJob(s.base, id, 300_000);
        assertEquals(job.status, "succeeded", `${what}: ${job.error}`);
        const res = await fetch(`${s.base}/v1/jobs/${id}/result`);
        assertEquals(res.status, 200);
        const bytes = new Uint8Array(await res.arrayBuffer());
        const format = what.split(" ").pop()!;
        assertEquals(
          res.headers.get("content-type"),
          { mp4: "video/mp4", webm: "video/webm", gif: "image/gif" }[format],
        );
        const info = await probeVideo(bytes, what);
        assertEquals([what, info.frames, info.width, info.height], [what, 2, 64, 64]);
        const params = job.params as Record<string, unknown>;
        assert(!JSON.stringify(job).includes(root), `${what}: the job shows a server path`);
        if (what.startsWith("canny + custom")) {
          assertEquals([params.model, params.config], ["tiny-sd-original.safetensors", "tiny-sd"]);
        }
        if (what.startsWith("depth")) assertEquals(params.depthModel, "depth-tiny.onnx");
        const t = job.timings as Record<string, number>;
        console.log(`  ${what}: ${t.total.toFixed(2)} s (${bytes.length} bytes)`);
      }
      console.log(`  six modes: ${((performance.now() - t0) / 1000).toFixed(1)} s`);

      const events = await eventsDone;
      const names = events.map((e) => e.event);
      assertEquals(names[names.length - 1], "done");
      assert(names.includes("started"), names.join(","));
      const stages = new Set(events.filter((e) => e.event === "progress").map((e) => e.data.stage));
      for (const st of ["load", "denoise", "encode_video"]) assert(stages.has(st), `no ${st} progress: ${[...stages]}`);
      const denoise = events.filter((e) => e.event === "progress" && e.data.stage === "denoise").map((e) =>
        e.data.step
      );
      assert(denoise.length >= 1 && denoise.every((v, i) => i === 0 || (v as number) >= (denoise[i - 1] as number)));
    } finally {
      await s.stop();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "server (GPU): cancelling a running job stops it within a step, frees its GPU memory, the next job runs",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await startGpu([GOLDEN]);
    try {
      const before = s.dev.pool.inUse;
      const long = (await json(await post(s.base, { ...T2V, steps: 40 }))).id as string;
      const next = (await json(await post(s.base, { ...T2V, steps: 2 }))).id as string;
      let cancelledAt = 0;
      const events = await readEvents(s.base, long, (e) => {
        if (e.event === "progress" && e.data.stage === "denoise" && !cancelledAt) {
          cancelledAt = performance.now();
          fetch(`${s.base}/v1/jobs/${long}`, { method: "DELETE" }).then((r) => r.body?.cancel());
        }
      });
      const stopped = performance.now() - cancelledAt;
      assertEquals(events[events.length - 1].event, "cancelled");
      const job = await waitJob(s.base, long);
      assertEquals(job.status, "cancelled");
      const p = job.progress as { stage: string; step: number; total: number };
      assert(p.step < p.total, `ran to the end: ${JSON.stringify(p)}`);
      console.log(`  stopped ${stopped.toFixed(0)} ms after the cancel, at ${p.stage} ${p.step}/${p.total}`);
      assertEquals((await waitJob(s.base, next)).status, "succeeded");
      assertEquals(
        s.dev.pool.inUse,
        before,
        `${
          s.dev.pool.inUse - before
        } bytes of pooled GPU buffers are still held after a cancelled job and a finished ` +
          "one (a mode that throws Cancelled must free its tensors)",
      );
    } finally {
      await s.stop();
    }
  },
});
