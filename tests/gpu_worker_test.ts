// The GPU worker (routes/gpu_worker/): jobs run in a Worker thread with the real pipeline and the real adapter; a
// cancel stops a job within a step; a worker that exits, crashes, freezes or overruns the job time limit fails its
// job with a clear error and is replaced, and the next job runs.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { RequestError } from "../pipeline/errors.ts";
import type { JobProgress, JobRequest } from "../pipeline/job/types.ts";
import { probeVideo } from "../pipeline/media/probe.ts";
import { GpuWorker, type GpuWorkerOptions, WorkerError } from "../routes/gpu_worker/host.ts";
import { JobKilledError } from "../routes/queue/types.ts";

const FAULTY = new URL("./faulty_gpu_worker.ts", import.meta.url);
const quiet = () => {};

const t2v = (o: Partial<JobRequest> = {}): JobRequest => ({
  mode: "text2video",
  prompt: "a cat",
  videoLength: 2,
  steps: 2,
  precision: "f32",
  ...o,
});

/** Rejects after `ms` with what was seen, so a test that waits never hangs. */
function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) =>
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)
    ),
  ]).finally(() => clearTimeout(timer));
}

async function withWorker(opts: GpuWorkerOptions, fn: (g: GpuWorker) => Promise<void>): Promise<void> {
  const g = await deadline(GpuWorker.start({ log: quiet, ...opts }), 60_000, "worker start");
  try {
    await fn(g);
  } finally {
    await g.close({ graceMs: 1000 });
  }
}

Deno.test("gpu worker: reports the device, runs a job to a playable video with progress", async () => {
  await withWorker({}, async (g) => {
    assert(g.facts.adapter.length > 0 && g.facts.maxBinding > 0, `facts: ${JSON.stringify(g.facts)}`);
    assertEquals(g.health().ok, true);
    const stages = new Set<string>();
    const r = await deadline(g.run(t2v(), { onProgress: (p) => stages.add(p.stage) }), 120_000, "job");
    for (const s of ["load", "denoise", "decode", "encode_video"]) assert(stages.has(s), `no ${s} progress`);
    const info = await probeVideo(r.bytes);
    assertEquals([info.frames, info.width, info.height], [2, 64, 64]);
    assertEquals(r.params.prompt, "a cat");
  });
});

Deno.test("gpu worker: a request error keeps its field across the thread boundary", async () => {
  await withWorker({}, async (g) => {
    const err = await deadline(g.run(t2v({ steps: 1 }), {}), 60_000, "job").then(() => null, (e) => e);
    assert(err instanceof RequestError, `expected a RequestError, got ${err}`);
    assertEquals(err.field, "steps");
    assert(/^steps: expected an integer in \[2, /.test(err.message), err.message);
  });
});

Deno.test("gpu worker: a cancel stops the job within a step", async () => {
  await withWorker({}, async (g) => {
    const ac = new AbortController();
    const steps: JobProgress[] = [];
    let at = -1;
    const job = g.run(t2v({ steps: 40, videoLength: 2 }), {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.stage !== "denoise" && p.stage !== "anchor") return;
        steps.push(p);
        if (steps.length === 3) {
          at = steps.length;
          ac.abort("cancelled by request");
        }
      },
    });
    const err = await deadline(job.then(() => null, (e) => e), 120_000, "cancelled job");
    assert(err && (err.name === "Cancelled" || err.name === "AbortError"), `expected a cancel, got ${err}`);
    // Two steps may be in flight when the cancel arrives (the pacer keeps one queued behind the running one).
    assert(steps.length - at <= 2, `${steps.length - at} steps reported after the cancel`);
    // The worker is still good for the next job.
    const r = await deadline(g.run(t2v(), {}), 120_000, "next job");
    assert(r.bytes.length > 0);
    assertEquals(g.restarts, 0);
  });
});

Deno.test("gpu worker: a worker that exits, crashes or freezes fails its job clearly and is replaced", async () => {
  // The stall limit must exceed a real step's silence (the thread blocks while the GPU works: ~2 s here).
  await withWorker({ entry: FAULTY, heartbeatMs: 100, stallMs: 10_000 }, async (g) => {
    const cases: [string, RegExp, number][] = [
      ["exit", /GPU worker exited/, 5000],
      ["crash", /GPU worker crashed: .*simulated driver crash/, 5000],
      ["freeze", /stopped responding \(no sign of life for 1\d s\)/, 20_000],
    ];
    for (const [i, [prompt, want, within]] of cases.entries()) {
      const t0 = performance.now();
      const err = await deadline(g.run(t2v({ prompt }), {}).then(() => null, (e) => e), 30_000, prompt);
      assert(err instanceof WorkerError, `${prompt}: expected a WorkerError, got ${err}`);
      assert(want.test(err.message), `${prompt}: ${err.message}`);
      assert(/the job was stopped and the GPU worker restarted/.test(err.message), err.message);
      assert(performance.now() - t0 < within, `${prompt}: took ${performance.now() - t0} ms`);
      assertEquals(g.restarts, i + 1);
      // The replacement opens the GPU again and runs the next job.
      const r = await deadline(g.run(t2v(), {}), 120_000, `job after ${prompt}`);
      assertEquals((await probeVideo(r.bytes)).frames, 2);
      assertEquals(g.health().ok, true);
    }
  });
});

Deno.test("gpu worker: a job over the time limit fails naming --job-timeout; the worker is replaced", async () => {
  await withWorker({ entry: FAULTY, jobTimeoutMs: 2000 }, async (g) => {
    const t0 = performance.now();
    const err = await deadline(g.run(t2v({ prompt: "stall" }), {}).then(() => null, (e) => e), 30_000, "stall");
    assert(err instanceof WorkerError, `expected a WorkerError, got ${err}`);
    assert(/ran longer than the time limit \(--job-timeout 2\.0 s\)/.test(err.message), err.message);
    const took = performance.now() - t0;
    assert(took >= 2000 && took < 6000, `failed after ${took} ms`);
    assertEquals(g.restarts, 1);
    // The replacement comes up on its own (health turns ok again).
    const until = performance.now() + 60_000;
    while (!g.health().ok && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
    assertEquals(g.health(), { adapter: g.facts.adapter, ok: true });
  });
});

Deno.test("gpu worker: close() ends a job that ignores its cancel within the grace time", async () => {
  const g = await deadline(GpuWorker.start({ entry: FAULTY, log: quiet }), 60_000, "worker start");
  const job = g.run(t2v({ prompt: "stall" }), {}).then(() => null, (e) => e);
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  const clean = await g.close({ graceMs: 500 });
  const err = await deadline(job, 5000, "job after close");
  assertEquals(clean, false);
  assert(performance.now() - t0 < 3000, `close took ${performance.now() - t0} ms`);
  assert(err instanceof JobKilledError && /not run again/.test(err.message), `got ${err}`);
  assertEquals(g.health().ok, false);
});
