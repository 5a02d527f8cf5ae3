// The job queue on its own, with fake runners (no GPU): order, events, cancel, failures, persistence across a
// graceful restart and across a killed process, retention.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { join } from "node:path";
import { type QueueOptions, SqliteQueue, writeAtomic } from "../routes/queue/sqlite.ts";
import { type Job, QueueFullError, type ResultLookup, type Runner } from "../routes/queue/types.ts";
import type { JobRequest, JobResult } from "../pipeline/job/types.ts";

const REPO = new URL("..", import.meta.url).pathname;

function fakeResult(req: JobRequest, bytes = new Uint8Array([1, 2, 3, 4])): JobResult {
  return {
    bytes,
    format: "mp4",
    contentType: "video/mp4",
    params: { ...req, video: undefined, seed: req.seed ?? 7 },
    frames: 2,
    width: 64,
    height: 64,
    fps: 4,
    timings: { total: 0.01 },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A runner that reports `steps` steps `ms` apart and stops (throwing AbortError) when its signal aborts. */
function stepRunner(steps = 3, ms = 5, log: string[] = []): Runner {
  return async (req, { onProgress, signal }) => {
    log.push(req.prompt);
    for (let i = 1; i <= steps; i++) {
      await sleep(ms);
      if (signal?.aborted) throw new DOMException("stopped", "AbortError");
      onProgress?.({ stage: "denoise", step: i, total: steps });
    }
    if (req.prompt.startsWith("fail")) throw new Error(`runner broke on ${req.prompt}`);
    return fakeResult(req);
  };
}

const req = (prompt: string, extra: Partial<JobRequest> = {}): JobRequest => ({ mode: "text2video", prompt, ...extra });
const quiet = () => {};

/** Opens a queue over `dataDir` and makes this process its worker. */
async function open(o: QueueOptions & { runner: Runner }): Promise<SqliteQueue> {
  const { runner, ...opts } = o;
  const q = await SqliteQueue.open(opts);
  q.startWorker(runner);
  return q;
}

/** The bytes of a result (and its type), or why there is none. */
async function resultBytes(r: ResultLookup): Promise<{ bytes: Uint8Array; type: string } | string> {
  return "missing" in r ? r.missing : { bytes: await r.read(0, r.size), type: r.info.contentType };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-queue-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("queue: runs jobs one at a time in order, stores results as files, reports events", () =>
  withDir(async (dir) => {
    const ran: string[] = [];
    let running = 0, maxRunning = 0;
    const inner = stepRunner(3, 5, ran);
    const q = await open({
      dataDir: dir,
      log: quiet,
      runner: async (r, h) => {
        maxRunning = Math.max(maxRunning, ++running);
        try {
          return await inner(r, h);
        } finally {
          running--;
        }
      },
    });
    try {
      const events: string[] = [];
      const jobs: Job[] = [];
      for (const p of ["a", "b", "c"]) jobs.push(await q.submit(req(p)));
      await q.subscribe(jobs[2].id, (ev) => events.push(ev.type === "queued" ? `queued ${ev.position}` : ev.type));
      await q.idle();
      assertEquals(ran, ["a", "b", "c"]);
      assertEquals(maxRunning, 1);
      for (const j of jobs) {
        const got = (await q.get(j.id))!;
        assertEquals(got.status, "succeeded");
        assertEquals(got.progress, { stage: "denoise", step: 3, total: 3 });
        assertEquals(await resultBytes(await q.openResult(j.id)), {
          bytes: new Uint8Array([1, 2, 3, 4]),
          type: "video/mp4",
        });
        // Any byte range of it (what HTTP Range asks for).
        const f = await q.openResult(j.id);
        assert(!("missing" in f));
        assertEquals([f.size, await f.read(1, 3)], [4, new Uint8Array([2, 3])]);
      }
      // c waited behind b (position 2 while a ran, if a had not started before we listened), then 1, then ran.
      const waits = events.filter((e) => e.startsWith("queued"));
      assertEquals(waits[waits.length - 1], "queued 1");
      assertEquals(events.slice(waits.length), ["started", "progress", "progress", "progress", "done"]);
      assertEquals((await q.list(10)).map((j) => j.request.prompt), ["c", "b", "a"]);
      // No temp files are left behind.
      const files = (await Array.fromAsync(Deno.readDir(join(dir, "results")))).map((e) => e.name);
      assertEquals(files.filter((f) => f.endsWith(".tmp")), []);
      assertEquals(files.length, 3);
    } finally {
      await q.close();
    }
  }));

Deno.test("queue: a failing job is marked failed with the reason and the next job runs", () =>
  withDir(async (dir) => {
    const q = await open({ dataDir: dir, log: quiet, runner: stepRunner(1, 1) });
    try {
      const bad = await q.submit(req("fail-1"));
      const good = await q.submit(req("ok"));
      await q.idle();
      const b = (await q.get(bad.id))!;
      assertEquals(b.status, "failed");
      assertEquals(b.error, "runner broke on fail-1");
      assertEquals(await q.openResult(bad.id), { missing: "not-ready" });
      assertEquals((await q.get(good.id))!.status, "succeeded");
    } finally {
      await q.close();
    }
  }));

Deno.test("queue: cancel a queued job, stop a running one at its next step, delete a finished one", () =>
  withDir(async (dir) => {
    let started!: () => void;
    const isRunning = new Promise<void>((r) => started = r);
    // The long job's last finished step, that step when the queue fired its signal, and the step that saw it: the
    // queue must abort at once (within cancel()) and the job end at its next step, however many 5 ms steps a loaded
    // machine runs between starting and cancelling.
    let step = 0, stepAtAbort = -1, abortedAtStep = -1;
    const runner: Runner = async (r, { onProgress, signal }) => {
      if (r.prompt !== "long") return fakeResult(r);
      signal?.addEventListener("abort", () => stepAtAbort = step);
      for (let i = 1; i <= 1000; i++) {
        await sleep(5);
        if (signal?.aborted) {
          abortedAtStep = i;
          throw new DOMException("stopped", "AbortError");
        }
        onProgress?.({ stage: "denoise", step: i, total: 1000 });
        step = i;
        if (i === 3) started();
      }
      return fakeResult(r);
    };
    const q = await open({ dataDir: dir, log: quiet, runner });
    try {
      const long = await q.submit(req("long"));
      const queued = await q.submit(req("queued", { video: new Uint8Array([9, 9, 9]) }));
      const after = await q.submit(req("after"));
      await isRunning;
      assertEquals((await q.get(queued.id))!.status, "queued");
      assertEquals(await Deno.readFile(join(dir, "uploads", queued.id)), new Uint8Array([9, 9, 9]));
      const evs: string[] = [];
      await q.subscribe(queued.id, (e) => evs.push(e.type));
      assertEquals(await q.cancel(queued.id), "cancelled");
      assertEquals((await q.get(queued.id))!.status, "cancelled");
      assertEquals(evs, ["cancelled"]);
      // Its upload is gone.
      assertEquals(await Deno.stat(join(dir, "uploads", queued.id)).catch(() => null), null);

      const stepAtCancel = step;
      assertEquals(await q.cancel(long.id), "cancelling");
      assertEquals(stepAtAbort, stepAtCancel, "the signal fired within cancel()");
      assert((await q.get(long.id))!.cancelRequested);
      await q.idle();
      assertEquals((await q.get(long.id))!.status, "cancelled");
      assert(stepAtAbort >= 3, `aborted after step ${stepAtAbort}`);
      assertEquals(abortedAtStep, stepAtAbort + 1, "the job stopped at its next step");
      assertEquals((await q.get(after.id))!.status, "succeeded");

      assertEquals(await q.cancel(after.id), "deleted");
      assertEquals(await q.get(after.id), null);
      assertEquals(await Deno.stat(join(dir, "results", `${after.id}.mp4`)).catch(() => null), null);
      assertEquals(await q.cancel("no-such-id"), null);
    } finally {
      await q.close();
    }
  }));

Deno.test("queue: full queue refuses with a retry time; submits racing for the last place cannot overfill", () =>
  withDir(async (dir) => {
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    const q = await open({
      dataDir: dir,
      log: quiet,
      maxQueued: 3,
      runner: async (r) => {
        await gate;
        return fakeResult(r);
      },
    });
    try {
      const first = await q.submit(req("running"));
      while (q.runningId !== first.id) await sleep(1);
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => q.submit(req(`q${i}`, { video: new Uint8Array(1000) }))),
      );
      const ok = results.filter((r) => r.status === "fulfilled");
      const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
      assertEquals(ok.length, 3);
      assertEquals(refused.length, 7);
      for (const e of refused) {
        assert(e instanceof QueueFullError);
        assert(e.retryAfter >= 1);
      }
      // Refused uploads leave no file behind.
      assertEquals((await Array.fromAsync(Deno.readDir(join(dir, "uploads")))).length, 3);
      release();
      await q.idle();
      assertEquals((await q.list(100)).filter((j) => j.status === "succeeded").length, 4);
    } finally {
      release();
      await q.close();
    }
  }));

Deno.test("queue: a graceful restart keeps queued jobs (the running one goes back first) and finished results", () =>
  withDir(async (dir) => {
    const hang: Runner = (r, { signal }) =>
      r.prompt === "quick" ? Promise.resolve(fakeResult(r)) : new Promise((_, reject) => {
        signal?.addEventListener("abort", () => reject(new DOMException("stopped", "AbortError")));
      });
    const q1 = await open({ dataDir: dir, log: quiet, runner: hang });
    const done = await q1.submit(req("quick"));
    while ((await q1.get(done.id))!.status !== "succeeded") await sleep(2);
    const a = await q1.submit(req("a", { video: new Uint8Array([1, 2]) }));
    const b = await q1.submit(req("b", { video: new Uint8Array([3, 4]) }));
    while (q1.runningId !== a.id) await sleep(2);
    await q1.close();

    const ran: string[] = [];
    const q2 = await SqliteQueue.open({ dataDir: dir, log: quiet });
    try {
      assertEquals((await q2.get(a.id))!.status, "queued");
      assertEquals((await q2.get(a.id))!.attempts, 0); // a graceful stop does not count as an attempt
      assertEquals(await q2.position(a.id), 1);
      assertEquals(await q2.position(b.id), 2);
      assertEquals(await resultBytes(await q2.openResult(done.id)), {
        bytes: new Uint8Array([1, 2, 3, 4]),
        type: "video/mp4",
      });
      q2.startWorker(stepRunner(1, 1, ran));
      await q2.idle();
      assertEquals(ran, ["a", "b"]);
      assertEquals((await q2.get(a.id))!.status, "succeeded");
      assertEquals((await q2.get(b.id))!.status, "succeeded");
      assertEquals((await Array.fromAsync(Deno.readDir(join(dir, "uploads")))).length, 0);
    } finally {
      await q2.close();
    }
  }));

// A child process that runs a queue whose jobs hang (except "quick"), prints READY once `wait` is running, and is
// then killed with SIGKILL: the crash the on-disk state must survive.
const CHILD = `
import { SqliteQueue } from ${JSON.stringify(new URL("../routes/queue/sqlite.ts", import.meta.url).href)};
const [dir, wait, ...prompts] = Deno.args;
const q = await SqliteQueue.open({ dataDir: dir, log: () => {} });
q.startWorker((r, { onProgress }) => {
    if (r.prompt === "quick") {
      return Promise.resolve({ bytes: new Uint8Array([7, 7]), format: "gif", contentType: "image/gif", params: {},
        frames: 1, width: 8, height: 8, fps: 1, timings: {} });
    }
    onProgress?.({ stage: "denoise", step: 1, total: 9 });
    return new Promise(() => {});
});
for (const p of prompts) {
  const j = await q.submit({ mode: "text2video", prompt: p });
  console.log("JOB " + p + " " + j.id);
}
for (;;) {
  const running = q.runningId && await q.get(q.runningId);
  if (running && running.request.prompt === wait) break;
  await new Promise((r) => setTimeout(r, 5));
}
console.log("READY");
await new Promise(() => {});
`;

async function runAndKill(script: string, args: string[]): Promise<Record<string, string>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", join(REPO, "deno.json"), script, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const ids: Record<string, string> = {};
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the child exited before READY");
      buf += value;
      for (const m of buf.matchAll(/^JOB (\S+) (\S+)$/gm)) ids[m[1]] = m[2];
      if (/^READY$/m.test(buf)) break;
    }
  } finally {
    clearTimeout(timer);
    child.kill("SIGKILL");
    await reader.cancel().catch(() => {});
    await child.status;
  }
  return ids;
}

Deno.test("queue: after a crash (SIGKILL) the running job is re-queued once, queued jobs and results survive", () =>
  withDir(async (dir) => {
    const script = join(dir, "child.ts");
    await Deno.writeTextFile(script, CHILD);
    const data = join(dir, "data");
    const ids = await runAndKill(script, [data, "slow", "quick", "slow", "next"]);

    // First restart: "slow" was running -> re-queued at the head; "quick"'s result is kept.
    const q = await SqliteQueue.open({ dataDir: data, log: quiet });
    try {
      assertEquals((await q.get(ids.quick))!.status, "succeeded");
      assertEquals(await resultBytes(await q.openResult(ids.quick)), {
        bytes: new Uint8Array([7, 7]),
        type: "image/gif",
      });
      assertEquals((await q.get(ids.slow))!.status, "queued");
      assertEquals((await q.get(ids.slow))!.attempts, 1);
      assertEquals(await q.position(ids.slow), 1);
      assertEquals(await q.position(ids.next), 2);
    } finally {
      await q.close();
    }

    // A second crash while the same job runs again: it is marked failed, and the next job still runs.
    await runAndKill(script, [data, "slow"]);
    const ran: string[] = [];
    const q2 = await open({ dataDir: data, log: quiet, runner: stepRunner(1, 1, ran) });
    try {
      await q2.idle();
      const slow = (await q2.get(ids.slow))!;
      assertEquals(slow.status, "failed");
      assert(/interrupted twice/.test(slow.error!), slow.error!);
      assertEquals(ran, ["next"]);
      assertEquals((await q2.get(ids.next))!.status, "succeeded");
    } finally {
      await q2.close();
    }
  }));

Deno.test("queue: retention deletes results by age, then by total size (oldest first); stray files are swept", () =>
  withDir(async (dir) => {
    const big = new Uint8Array(1000);
    const q = await open({
      dataDir: dir,
      log: quiet,
      keepBytes: 2500,
      keepMs: 3600e3,
      runner: (r) => Promise.resolve(fakeResult(r, big)),
    });
    const ids: string[] = [];
    try {
      for (const p of ["1", "2", "3", "4"]) {
        ids.push((await q.submit(req(p))).id);
        await q.idle();
      }
      // 4000 bytes > 2500: the two oldest results went.
      const avail = async () => await Promise.all(ids.map(async (id) => !("missing" in await q.openResult(id))));
      assertEquals(await avail(), [false, false, true, true]);
      assertEquals(await q.openResult(ids[0]), { missing: "expired" });
      assertEquals((await q.get(ids[0]))!.result!.available, false);
      // Age: two hours later everything is past keepMs.
      await q.sweepResults(Date.now() + 2 * 3600e3);
      assertEquals(await avail(), [false, false, false, false]);
      assertEquals((await Array.fromAsync(Deno.readDir(join(dir, "results")))).length, 0);
    } finally {
      await q.close();
    }
    // Files no row points at (a crash between write and record) and temp files are removed at open.
    await writeAtomic(join(dir, "results", "orphan.mp4"), new Uint8Array(3));
    await Deno.writeFile(join(dir, "uploads", "x.tmp"), new Uint8Array(3));
    const q2 = await open({ dataDir: dir, log: quiet, runner: stepRunner() });
    await q2.close();
    assertEquals((await Array.fromAsync(Deno.readDir(join(dir, "results")))).length, 0);
    assertEquals((await Array.fromAsync(Deno.readDir(join(dir, "uploads")))).length, 0);
  }));
