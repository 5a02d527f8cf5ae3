// The job queue on Redis (routes/queue/redis.ts), against a real redis-server started per test (redis_util.ts).
// First in-process nodes with a fake runner (queue limits across nodes, failures, retention, graceful stop, the
// crash policy), then real `main.ts serve` processes running the pipeline: one API node and two GPU workers,
// a worker killed mid-job, Redis lost and restarted.
import { assert, assertEquals, assertRejects } from "../fixtures/asserts.ts";
import { join } from "node:path";
import { Redis } from "ioredis";
import type { JobRequest, JobResult } from "../pipeline/job/types.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import { probeVideo } from "../pipeline/media/probe.ts";
import { MEDIA_DIR } from "../fixtures/paths.ts";
import { QueueUnavailableError, type Runner } from "../routes/queue/types.ts";
import { RedisQueue } from "../routes/queue/redis.ts";
import { parseRedisUrl } from "../routes/queue/redis_url.ts";
import { parseServeArgs, ServeArgError } from "../routes/cli.ts";
import { openServer, type ServerOptions, type ZerovidServer } from "../routes/server.ts";
import { freePort, startRedis } from "./redis_util.ts";
import {
  call,
  type Json,
  type Node,
  postForm,
  postJson,
  readEvents,
  sleep,
  startNode,
  waitFor,
  waitJob,
} from "./cluster_util.ts";

const CLIP = join(MEDIA_DIR, "clip_testsrc_128x96_8fps.mp4");
const quiet = () => {};
const T2V = { mode: "text2video", prompt: "a cat", videoLength: 2, width: 64, height: 64, steps: 2, seed: 1 };

// -----------------------------------------------------------------------------------------------------------------
// Flags and addresses

Deno.test("redis: --queue / --role / --stall-seconds flags and Redis URLs, each bad value named", () => {
  const a = parseServeArgs(["--queue", "redis://:s3cret@db.example:6380/2", "--role", "api", "--stall-seconds", "12"]);
  assertEquals([a.queue, a.role, a.stallSeconds], ["redis://:s3cret@db.example:6380/2", "api", 12]);
  assertEquals(parseServeArgs([]).role, "both");
  assertEquals(parseServeArgs([], { ZEROVID_QUEUE: "redis://h:1" }).queue, "redis://h:1");
  const addr = parseRedisUrl("rediss://:p%40ss@cache.internal/3");
  assertEquals([addr.host, addr.port, addr.db, addr.password, addr.tls], ["cache.internal", 6379, 3, "p@ss", true]);
  assertEquals(addr.display, "rediss://:***@cache.internal:6379/3");
  for (
    const [args, msg] of [
      [["--role", "worker"], "needs --queue"],
      [["--role", "gpu", "--queue", "redis://h:1"], "expected api, worker or both"],
      [["--queue", "http://h:1"], "--queue: expected a redis:// or rediss:// URL"],
      [["--queue", "redis://h:1/x"], "database after the host must be a number"],
      [["--queue", "redis://"], "--queue"],
      [["--stall-seconds", "0", "--queue", "redis://h"], "--stall-seconds"],
    ] as [string[], string][]
  ) {
    let err: unknown = null;
    try {
      parseServeArgs(args);
    } catch (e) {
      err = e;
    }
    assert(err instanceof ServeArgError && err.message.includes(msg), `${args.join(" ")}: ${err}`);
  }
});

Deno.test({
  name: "redis: a node that cannot reach Redis at start says so in one line and exits with code 2",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const url = `redis://127.0.0.1:${freePort()}`;
    const t0 = Date.now();
    await assertRejects(() => RedisQueue.open({ url, log: quiet }), QueueUnavailableError, "cannot reach Redis at");
    assert(Date.now() - t0 < 5000, `open took ${Date.now() - t0} ms to give up`);
    for (const role of ["api", "worker"]) {
      const node = startNode(["--queue", url, "--role", role], { http: role === "api" });
      const st = await Promise.race([node.exited, sleep(60_000).then(() => null)]);
      if (!st) await node.kill();
      assertEquals(st?.code, 2, `role ${role}: ${node.log()}`);
      const lines = node.log().trim().split("\n").filter((l) => /error/i.test(l));
      assertEquals(lines.length, 1, node.log());
      assert(lines[0].startsWith(`error: cannot reach Redis at ${url}`), node.log());
    }
  },
});

// -----------------------------------------------------------------------------------------------------------------
// In-process nodes with a fake runner

/** Reports `steps` steps `ms` apart (stops when aborted); "explode" throws; returns `bytes` bytes as an mp4. */
function fakeRunner(o: { steps?: number; ms?: number; bytes?: number } = {}): Runner {
  return async (req, { onProgress, signal }) => {
    if (req.prompt === "explode") throw new Error("the GPU caught fire");
    const steps = o.steps ?? 3;
    for (let i = 1; i <= steps; i++) {
      await sleep(o.ms ?? 5);
      if (signal?.aborted) throw new DOMException("stopped", "AbortError");
      onProgress?.({ stage: "denoise", step: i, total: steps });
    }
    const bytes = Uint8Array.from({ length: o.bytes ?? 1000 }, (_, i) => (i * 7 + req.prompt.length) & 255);
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

interface InProcess {
  base: string;
  srv: ZerovidServer;
  stop(): Promise<void>;
}

/** An API node (and worker, unless autostart is false) in this process, on the given Redis. */
async function node(url: string, o: Partial<ServerOptions> = {}): Promise<InProcess> {
  const srv = await openServer({
    runner: fakeRunner(),
    dataDir: "",
    modelRoots: [],
    validate: (r: JobRequest, limits, video) => validateRequest(r, { f16: false }, limits, video),
    log: quiet,
    queue: url,
    stallMs: 2000,
    ...o,
  });
  const ac = new AbortController();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} }, srv.app.fetch);
  return {
    base: `http://127.0.0.1:${http.addr.port}`,
    srv,
    stop: async () => {
      await srv.close();
      ac.abort();
      await http.finished;
    },
  };
}

const inProcess = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeResources: false, sanitizeOps: false, fn });

inProcess("redis: two API nodes share one queue limit: 429 + Retry-After beyond it, no accepted job lost", async () => {
  await using redis = await startRedis();
  const a = await node(redis.url, { autostart: false, limits: { queueSize: 3 } });
  const b = await node(redis.url, { autostart: false, limits: { queueSize: 3 } });
  try {
    const res = await Promise.all(
      Array.from({ length: 8 }, (_, i) => postJson(i % 2 ? a.base : b.base, { ...T2V, prompt: `job ${i}` })),
    );
    const ok = res.filter((r) => r.status === 202), full = res.filter((r) => r.status === 429);
    assertEquals([ok.length, full.length], [3, 5], JSON.stringify(res.map((r) => [r.status, r.body])));
    for (const r of full) {
      assert(Number(r.headers.get("retry-after")) >= 1, "no Retry-After");
      assert(/queue is full/.test(r.body.error as string), JSON.stringify(r.body));
    }
    assertEquals(((await call(`${b.base}/v1/jobs`)).body.jobs as Json[]).length, 3);
    // Positions as every node sees them: 1, 2, 3 in submission order.
    const ids = ok.map((r) => r.body.id as string);
    const pos = await Promise.all(ids.map(async (id) => (await call(`${a.base}/v1/jobs/${id}`)).body.position));
    assertEquals([...pos].sort(), [1, 2, 3]);
    a.srv.startWorker();
    for (const id of ids) assertEquals((await waitJob(b.base, id, 30_000)).status, "succeeded");
  } finally {
    await a.stop();
    await b.stop();
  }
});

inProcess(
  "redis: a job that throws fails with its message, the next runs; results by range; cancel and delete",
  async () => {
    await using redis = await startRedis();
    const n = await node(redis.url);
    const api = await node(redis.url, { role: "api" });
    try {
      const bad = (await postJson(api.base, { ...T2V, prompt: "explode" })).body.id as string;
      const good = (await postJson(api.base, { ...T2V, prompt: "fine" })).body.id as string;
      const failed = await waitJob(api.base, bad, 30_000);
      assertEquals([failed.status, failed.error], ["failed", "the GPU caught fire"]);
      const done = await waitJob(api.base, good, 30_000);
      assertEquals(done.status, "succeeded");
      assertEquals((done.result as Json).bytes, 1000);
      const expect = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7 + "fine".length) & 255);
      const whole = await fetch(`${api.base}/v1/jobs/${good}/result`);
      assertEquals(whole.status, 200);
      assertEquals(new Uint8Array(await whole.arrayBuffer()), expect);
      const part = await fetch(`${api.base}/v1/jobs/${good}/result`, { headers: { Range: "bytes=10-19" } });
      assertEquals([part.status, part.headers.get("content-range")], [206, "bytes 10-19/1000"]);
      assertEquals(new Uint8Array(await part.arrayBuffer()), expect.slice(10, 20));
      const tail = await fetch(`${api.base}/v1/jobs/${good}/result`, { headers: { Range: "bytes=-5" } });
      assertEquals(new Uint8Array(await tail.arrayBuffer()), expect.slice(995));
      // The API node (no worker, no roots) offers the models its worker announced.
      const models = (await call(`${api.base}/v1/models`)).body;
      assertEquals([models.demo, (models.models as Json[]).map((m) => m.name)], [true, ["demo"]]);
      assertEquals((models.workers as Json[]).map((w) => w.models), [["demo"]]);
      const health = await call(`${api.base}/healthz`);
      assertEquals(health.status, 200);
      assertEquals((health.body.queue as Json).backend, "redis");
      assertEquals((health.body.workers as Json[]).length, 1);
      // Delete a finished job: gone everywhere, result included.
      assertEquals((await call(`${api.base}/v1/jobs/${good}`, { method: "DELETE" })).body.deleted, true);
      assertEquals((await call(`${n.base}/v1/jobs/${good}`)).status, 404);
      assertEquals((await call(`${n.base}/v1/jobs/${good}/result`)).status, 404);
    } finally {
      await api.stop();
      await n.stop();
    }
  },
);

inProcess(
  "redis: retention by total size (the newest stays) and by age (TTL too); an oversized result fails",
  async () => {
    await using redis = await startRedis();
    const n = await node(redis.url, { runner: fakeRunner({ bytes: 4000 }), keepBytes: 10_000, keepMs: 3600e3 });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const id = (await postJson(n.base, { ...T2V, prompt: `p${i}` })).body.id as string;
        assertEquals((await waitJob(n.base, id, 30_000)).status, "succeeded");
        ids.push(id);
      }
      // 12000 bytes > 10000: the oldest went.
      assertEquals((await call(`${n.base}/v1/jobs/${ids[0]}/result`)).status, 410);
      assertEquals(((await call(`${n.base}/v1/jobs/${ids[0]}`)).body.result as Json).available, false);
      for (const id of ids.slice(1)) assertEquals((await call(`${n.base}/v1/jobs/${id}/result`)).status, 200);
      // The key itself carries the age as a TTL, so Redis frees it even if no node sweeps.
      const r = new Redis(redis.url);
      try {
        const ttl = await r.pttl(`zerovid:result:${ids[2]}`);
        assert(ttl > 3500e3 && ttl <= 3600e3, `result key TTL ${ttl} ms, expected about an hour`);
      } finally {
        r.disconnect();
      }
      // An hour and a bit later every result is past its age.
      await (n.srv.queue as RedisQueue).sweep(Date.now() + 3601e3);
      for (const id of ids) assertEquals((await call(`${n.base}/v1/jobs/${id}/result`)).status, 410);
    } finally {
      await n.stop();
    }
    // The newest result stays even past the byte budget, until the next one.
    const small = await node(redis.url, { runner: fakeRunner({ bytes: 4000 }), keepBytes: 3000 });
    try {
      const a = (await postJson(small.base, T2V)).body.id as string;
      assertEquals((await waitJob(small.base, a, 30_000)).status, "succeeded");
      assertEquals((await call(`${small.base}/v1/jobs/${a}/result`)).status, 200);
      const b = (await postJson(small.base, T2V)).body.id as string;
      assertEquals((await waitJob(small.base, b, 30_000)).status, "succeeded");
      assertEquals((await call(`${small.base}/v1/jobs/${a}/result`)).status, 410);
      assertEquals((await call(`${small.base}/v1/jobs/${b}/result`)).status, 200);
    } finally {
      await small.stop();
    }
    // A result larger than a Redis value may hold (maxResultBytes) fails its job, saying so; only the newest
    // keepJobs finished jobs are kept.
    const q = await RedisQueue.open({ url: redis.url, maxResultBytes: 3000, keepJobs: 2, stallMs: 2000, log: quiet });
    try {
      q.startWorker(fakeRunner({ bytes: 4000 }));
      const ended = (id: string) =>
        waitFor(`job ${id} to end`, async () => {
          const j = await q.get(id);
          return j && j.status !== "queued" && j.status !== "running" ? j : null;
        }, 30_000);
      const done = await ended((await q.submit({ ...T2V, model: "demo" } as unknown as JobRequest)).id);
      const later = [];
      for (let i = 0; i < 2; i++) later.push(await ended((await q.submit({ ...T2V } as unknown as JobRequest)).id));
      assertEquals(await q.get(done.id), null, "the oldest of three finished jobs (keepJobs 2) is still there");
      for (const j of later) assert(await q.get(j.id), `job ${j.id} is gone`);
      assertEquals(done.status, "failed");
      assert(
        /the video is 4000 bytes, more than the queue stores \(3000 bytes\)/.test(done.error ?? ""),
        done.error ?? "",
      );
    } finally {
      await q.close();
    }
  },
);

inProcess("redis: a graceful stop puts the running job back at the head; a job interrupted twice fails", async () => {
  await using redis = await startRedis();
  const slow = await node(redis.url, { runner: fakeRunner({ steps: 200, ms: 20 }) });
  const api = await node(redis.url, { role: "api" });
  let other: InProcess | null = null;
  try {
    const first = (await postJson(api.base, { ...T2V, prompt: "first" })).body.id as string;
    const second = (await postJson(api.base, { ...T2V, prompt: "second" })).body.id as string;
    await waitFor("the first job to run", async () => {
      const j = (await call(`${api.base}/v1/jobs/${first}`)).body;
      return j.status === "running" && j.progress ? j : null;
    }, 30_000);
    await slow.stop();
    const back = (await call(`${api.base}/v1/jobs/${first}`)).body;
    assertEquals([back.status, back.attempts, back.position], ["queued", 0, 1]);
    other = await node(redis.url, { runner: fakeRunner() });
    const done = await waitJob(api.base, first, 30_000);
    assertEquals([done.status, done.attempts], ["succeeded", 1]);
    assertEquals((await waitJob(api.base, second, 30_000)).status, "succeeded");
    await other.stop();
    other = null;

    // A job whose worker died twice while running it (its record says running, attempt 2): not run a third time.
    const doomed = (await postJson(api.base, { ...T2V, prompt: "doomed" })).body.id as string;
    const r = new Redis(redis.url);
    try {
      await r.hset(`zerovid:job:${doomed}`, { status: "running", attempts: 2 });
    } finally {
      r.disconnect();
    }
    other = await node(redis.url, { runner: fakeRunner() });
    const failed = await waitJob(api.base, doomed, 30_000);
    assertEquals(failed.status, "failed");
    assert(/interrupted twice/.test(failed.error as string), failed.error as string);
  } finally {
    await other?.stop();
    await api.stop();
  }
});

// -----------------------------------------------------------------------------------------------------------------
// Real processes, the real pipeline (the built-in demo model, 64x64, 2 frames)

/** Waits until the API node answers and sees `n` workers. */
async function ready(api: Node, workers: Node[], n = workers.length): Promise<void> {
  await waitFor(
    `the API node to see ${n} workers`,
    async () => {
      const h = await call(`${api.base}/healthz`, {}, 5000);
      return h.status === 200 && (h.body.workers as Json[]).length === n ? h : null;
    },
    120_000,
    () => [api, ...workers].map((p) => p.log()).join("\n---\n"),
  );
}

const logs = (nodes: Node[]) => () => nodes.map((p, i) => `--- node ${i} (pid ${p.pid})\n${p.log()}`).join("\n");

/** How many times the worker logs say the job succeeded. */
function successes(workers: Node[], id: string): number {
  return workers.reduce((n, w) => n + w.log().split(`job ${id}: succeeded`).length - 1, 0);
}

/** Exactly one worker says it ran the job to success (its line may trail the state change: waits a little). */
async function succeededOnce(workers: Node[], id: string, what = id): Promise<void> {
  await waitFor(
    `${what}: a worker's success line`,
    () => Promise.resolve(successes(workers, id) || null),
    10_000,
    () => linesAbout(workers, id),
  );
  assertEquals(successes(workers, id), 1, `${what}: succeeded lines\n${linesAbout(workers, id)}`);
}

/** Every worker log line about a job (for failure messages). */
function linesAbout(workers: Node[], id: string): string {
  return workers.map((w, i) => w.log().split("\n").filter((l) => l.includes(id)).map((l) => `worker ${i}: ${l}`))
    .flat().join("\n");
}

Deno.test({
  name: "redis (GPU): one API node, two workers: 12 jobs of mixed modes, SSE from a worker, cancel, kill -9",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using redis = await startRedis();
    const api = startNode(["--queue", redis.url, "--role", "api"]);
    const workers = [0, 1].map(() =>
      startNode(["--queue", redis.url, "--role", "worker", "--stall-seconds", "12"], { http: false })
    );
    const all = [api, ...workers];
    const ctx = logs(all);
    try {
      await ready(api, workers);
      // The API node opened no GPU; each worker announced its own.
      const health = (await call(`${api.base}/healthz`)).body;
      assert(/^none/.test(health.adapter as string), `API node adapter: ${health.adapter}`);
      assert(!/GPU: llvmpipe|GPU: [^n]/.test(api.log()), api.log());
      for (const w of health.workers as Json[]) assert(typeof w.adapter === "string" && w.adapter !== "", "no adapter");
      const clip = await Deno.readFile(CLIP);
      const SMALL = { videoLength: "2", resolution: "64", steps: "1", seed: "3" };
      // The API node plans with the GPUs its workers announce: a run that fits none of them is refused at once,
      // for text and for a probed video alike, and nothing is queued.
      const refused = [
        await postJson(api.base, { ...T2V, width: 1024, height: 1024, maxGpuMb: 16 }),
        await postForm(
          api.base,
          { mode: "canny", prompt: "a deer", ...SMALL, resolution: "1024", maxGpuMb: "16" },
          clip,
        ),
      ];
      for (const r of refused) {
        assertEquals([r.status, r.body.field], [400, "maxGpuMb"], JSON.stringify(r.body));
        assert(/cannot run on this GPU/.test(r.body.error as string), JSON.stringify(r.body));
      }
      assertEquals(((await call(`${api.base}/v1/jobs`)).body.jobs as Json[]).length, 0, "a refused request was queued");
      const kinds: [string, () => ReturnType<typeof postJson>][] = [
        ["text2video mp4", () => postJson(api.base, { ...T2V, format: "mp4" })],
        ["pix2pix webm", () => postForm(api.base, { mode: "pix2pix", prompt: "blue", ...SMALL, format: "webm" }, clip)],
        ["canny mp4", () => postForm(api.base, { mode: "canny", prompt: "a deer", ...SMALL }, clip)],
        ["pose gif", () => postForm(api.base, { mode: "pose", prompt: "a dancer", ...SMALL, format: "gif" }, clip)],
      ];
      const t0 = Date.now();
      const jobs: [string, string][] = [];
      for (let i = 0; i < 12; i++) {
        const [what, post] = kinds[i % kinds.length];
        const r = await post();
        assertEquals(r.status, 202, `${what}: ${JSON.stringify(r.body)}`);
        jobs.push([what, r.body.id as string]);
      }
      // The last job waits behind eleven: its stream starts while it is queued and must show every stage.
      const watched = jobs[11][1];
      const events = await readEvents(api.base, watched, 300_000);
      for (const [what, id] of jobs) {
        const job = await waitJob(api.base, id, 300_000, ctx);
        assertEquals(job.status, "succeeded", `${what}: ${job.error}`);
        const res = await fetch(`${api.base}/v1/jobs/${id}/result`);
        assertEquals(res.status, 200);
        const format = what.split(" ")[1];
        assertEquals(
          res.headers.get("content-type"),
          { mp4: "video/mp4", webm: "video/webm", gif: "image/gif" }[format],
        );
        const info = await probeVideo(new Uint8Array(await res.arrayBuffer()), what);
        assertEquals([what, info.frames, info.width, info.height], [what, 2, 64, 64]);
        await succeededOnce(workers, id, `${what} ${id}`);
      }
      const secs = (Date.now() - t0) / 1000;
      const perWorker = workers.map((w) => w.log().split(": succeeded in").length - 1);
      console.log(`  12 jobs on 2 workers: ${secs.toFixed(1)} s (${perWorker.join(" + ")})`);
      assert(perWorker.every((n) => n >= 1), `a worker ran nothing: ${perWorker}`);

      const names = events.map((e) => e.event);
      assertEquals(names[0], "queued", names.join(","));
      assert(names.includes("started"), names.join(","));
      assertEquals(names[names.length - 1], "done");
      assertEquals(names.filter((n) => ["done", "failed", "cancelled"].includes(n)).length, 1);
      const stages = [...new Set(events.filter((e) => e.event === "progress").map((e) => e.data.stage))];
      const watchedJob = (await call(`${api.base}/v1/jobs/${watched}`)).body;
      // Every phase the worker timed is a stage the stream showed, in order.
      const phases = Object.keys(watchedJob.timings as Json).filter((k) => k !== "total" && k !== "resolve");
      assertEquals(stages.filter((s) => phases.includes(s as string)), phases, `stages ${stages} vs ${phases}`);
      const denoise = events.filter((e) => e.event === "progress" && e.data.stage === "denoise");
      assertEquals(denoise.map((e) => e.data.step), [1], "the denoise steps of a 1-step pose job");

      // Cancel a queued job and a running one through the API node; the workers go on.
      const long = () => postJson(api.base, { ...T2V, steps: 150 });
      const l1 = (await long()).body.id as string, l2 = (await long()).body.id as string;
      const q = (await postJson(api.base, T2V)).body.id as string;
      await waitFor(
        "both long jobs running",
        async () => {
          const s = await Promise.all([l1, l2].map(async (id) => (await call(`${api.base}/v1/jobs/${id}`)).body));
          return s.every((j) => j.status === "running" && (j.progress as Json | null)?.stage === "denoise") ? s : null;
        },
        120_000,
        ctx,
      );
      const cq = await call(`${api.base}/v1/jobs/${q}`, { method: "DELETE" });
      assertEquals([cq.status, cq.body.status], [200, "cancelled"]);
      const runningEvents = readEvents(api.base, l1, 60_000);
      runningEvents.catch(() => {}); // awaited below; a failure is reported there
      const c1 = await call(`${api.base}/v1/jobs/${l1}`, { method: "DELETE" });
      assertEquals(c1.status, 202, JSON.stringify(c1.body));
      const e1 = await runningEvents;
      assertEquals(e1[e1.length - 1].event, "cancelled");
      const j1 = await waitJob(api.base, l1, 60_000, ctx);
      assertEquals(j1.status, "cancelled");
      const p = j1.progress as { step: number; total: number };
      assert(p.step < p.total, `ran to the end: ${JSON.stringify(p)}`);
      assertEquals((await call(`${api.base}/v1/jobs/${l2}`, { method: "DELETE" })).status, 202);
      assertEquals((await waitJob(api.base, l2, 60_000, ctx)).status, "cancelled");
      const after = (await postJson(api.base, T2V)).body.id as string;
      assertEquals((await waitJob(api.base, after, 120_000, ctx)).status, "succeeded");

      // kill -9 the worker running a job: another worker takes it up; every job ends succeeded, once.
      const batch: string[] = [];
      for (let i = 0; i < 4; i++) {
        batch.push((await postJson(api.base, { ...T2V, steps: 8, seed: i })).body.id as string);
      }
      const victim = await waitFor(
        "a worker running a batch job in its denoise loop",
        async () => {
          const h = (await call(`${api.base}/healthz`)).body;
          for (const w of h.workers as Json[]) {
            if (!batch.includes(w.running as string)) continue;
            const j = (await call(`${api.base}/v1/jobs/${w.running}`)).body;
            if ((j.progress as Json | null)?.stage === "denoise") {
              return { pid: w.pid as number, job: w.running as string };
            }
          }
          return null;
        },
        120_000,
        ctx,
      );
      const dead = workers.find((w) => w.pid === victim.pid)!;
      assert(dead, `no worker process with pid ${victim.pid}`);
      const victimEvents = readEvents(api.base, victim.job, 180_000);
      victimEvents.catch(() => {}); // awaited below; a failure is reported there
      await dead.kill();
      const t1 = Date.now();
      for (const id of batch) {
        const job = await waitJob(api.base, id, 180_000, ctx);
        assertEquals(job.status, "succeeded", `${id}: ${job.error}`);
        await succeededOnce(workers, id, `${id} (victim ${victim.job})`);
        if (id === victim.job) assert((job.attempts as number) >= 2, `attempts ${job.attempts}`);
        const res = await fetch(`${api.base}/v1/jobs/${id}/result`);
        assertEquals((await probeVideo(new Uint8Array(await res.arrayBuffer()))).frames, 2);
      }
      console.log(`  killed worker's job taken over and finished ${((Date.now() - t1) / 1000).toFixed(1)} s later`);
      const ve = (await victimEvents).map((e) => e.event);
      assertEquals(ve.filter((n) => ["done", "failed", "cancelled"].includes(n)), ["done"], ve.join(","));
      assert(ve.filter((n) => n === "started").length >= 1, ve.join(","));
      assertEquals(((await call(`${api.base}/v1/jobs?limit=200`)).body.jobs as Json[]).length, 12 + 4 + 4);
    } catch (e) {
      console.error(ctx());
      throw e;
    } finally {
      await Promise.all(all.map((p) => p.stop()));
    }
  },
});

Deno.test({
  name: "redis (GPU): Redis lost mid-run -> 503 with a clear message; back -> nodes recover, queued jobs kept",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using redis = await startRedis({ persist: true });
    const api = startNode(["--queue", redis.url, "--role", "api"]);
    const worker = startNode(["--queue", redis.url, "--role", "worker", "--stall-seconds", "8"], { http: false });
    const all = [api, worker];
    const ctx = logs(all);
    try {
      await ready(api, [worker]);
      const long = (await postJson(api.base, { ...T2V, steps: 12 })).body.id as string;
      const queued = [
        (await postJson(api.base, { ...T2V, seed: 2 })).body.id as string,
        (await postJson(api.base, { ...T2V, seed: 3 })).body.id as string,
      ];
      await waitFor(
        "the long job running",
        async () => {
          const j = (await call(`${api.base}/v1/jobs/${long}`)).body;
          return j.status === "running" ? j : null;
        },
        120_000,
        ctx,
      );
      const stream = readEvents(api.base, queued[1], 240_000);
      stream.catch(() => {}); // awaited below; a failure is reported there
      await sleep(300); // the stream is subscribed

      await redis.kill();
      const down = await waitFor(
        "healthz 503",
        async () => {
          const h = await call(`${api.base}/healthz`, {}, 5000);
          return h.status === 503 ? h : null;
        },
        30_000,
        ctx,
      );
      assert(
        /Redis at redis:\/\/127\.0\.0\.1:\d+ cannot be reached/.test(down.body.error as string),
        String(down.body.error),
      );
      const get = await call(`${api.base}/v1/jobs/${queued[0]}`, {}, 5000);
      assertEquals(get.status, 503);
      assert(/the job queue is unavailable/.test(get.body.error as string), JSON.stringify(get.body));
      assert(Number(get.headers.get("retry-after")) >= 1);
      assertEquals((await postJson(api.base, T2V)).status, 503);
      await sleep(1000);

      await redis.start();
      await waitFor(
        "healthz 200 again",
        async () => {
          const h = await call(`${api.base}/healthz`, {}, 5000);
          return h.status === 200 && (h.body.workers as Json[]).length === 1 ? h : null;
        },
        60_000,
        ctx,
      );
      for (const id of queued) assertEquals((await call(`${api.base}/v1/jobs/${id}`)).status, 200);
      for (const id of [long, ...queued]) {
        const job = await waitJob(api.base, id, 240_000, ctx);
        assertEquals(job.status, "succeeded", `${id}: ${job.error}`);
        await succeededOnce([worker], id);
      }
      const names = (await stream).map((e) => e.event);
      assertEquals(names[names.length - 1], "done", names.join(","));
      assertEquals((await postJson(api.base, T2V)).status, 202);
      for (const p of all) assert(await Promise.race([p.exited.then(() => false), sleep(10).then(() => true)]));
    } catch (e) {
      console.error(ctx());
      throw e;
    } finally {
      await Promise.all(all.map((p) => p.stop()));
    }
  },
});
