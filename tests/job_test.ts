// The job runner: request validation and defaults, the model cache, hub resolution (mock hub), chunking
// invariance and frame 0 = plain text-to-image through runJob, progress, timings and cancellation.
import { assert, assertEquals, assertRejects, assertThrows } from "../fixtures/asserts.ts";
import { join } from "node:path";
import { runJob } from "../pipeline/job/run.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import type { JobProgress, JobRequest } from "../pipeline/job/types.ts";
import { RequestError } from "../pipeline/errors.ts";
import { defaultT0T1 } from "../pipeline/modes/text2video.ts";
import { controlNetKey, ModelCache, sdKey } from "../pipeline/model_cache.ts";
import { Cancelled, SeededNoise } from "../pipeline/modes/common.ts";
import { text2image } from "../pipeline/modes/text2image.ts";
import { probeVideo } from "../pipeline/media/probe.ts";
import { filesFromDir, startMockHub } from "../fixtures/mock_hub.ts";
import { DEMO_MODEL } from "../pipeline/models/demo.ts";
import { assertClose, gpuTest, testDevice } from "./util.ts";
import { GOLDEN_MODELS, MEDIA_DIR } from "../fixtures/paths.ts";

const GOLDEN = GOLDEN_MODELS + "/";
const TINY_SD = join(GOLDEN, "tiny-sd");
const TINY_P2P = join(GOLDEN, "tiny-pix2pix");
const TINY_CN = join(GOLDEN, "tiny-controlnet");
const MEDIA = MEDIA_DIR + "/";

/** RequestError with this field, whose message contains `text`. */
function assertRequestError(fn: () => unknown, field: string, text?: string): void {
  const e = assertThrows(fn, RequestError) as RequestError;
  assertEquals(e.field, field, e.message);
  if (text) assert(e.message.includes(text), `"${e.message}" should mention "${text}"`);
}

const VIDEO = new Uint8Array([1, 2, 3]); // validation never decodes it

// ---------------------------------------------------------------------------------------------------------------
// validateRequest

Deno.test("validateRequest: text2video defaults (METHOD §1.9)", () => {
  const r = validateRequest({ mode: "text2video", prompt: "a cat", model: "m" });
  assertEquals(
    [r.steps, r.guidanceScale, r.t0, r.t1, r.motionX, r.motionY, r.videoLength],
    [50, 7.5, 44, 47, 12, 12, 8],
  );
  assertEquals([r.width, r.height, r.fps, r.format, r.negativePrompt], [512, 512, 4, "mp4", ""]);
  assert(Number.isInteger(r.seed) && r.seed! >= 0 && r.seed! <= 0xffffffff);
  assertEquals(r.precision, "f32"); // no device: f32
  assertEquals(validateRequest({ mode: "text2video", prompt: "" }, { f16: true }).precision, "f16");
  assertEquals(validateRequest({ mode: "text2video", prompt: "", precision: "f32" }, { f16: true }).precision, "f32");
  assertEquals(validateRequest({ mode: "text2video", prompt: "", seed: 7 }).seed, 7);
  // A server's limits narrow the ranges and bring the defaults inside them.
  const small = { maxResolution: 300, maxFrames: 4, maxSteps: 30 };
  const fit = validateRequest({ mode: "text2video", prompt: "", model: "m" }, undefined, small);
  assertEquals([fit.width, fit.height, fit.videoLength, fit.steps, fit.t0, fit.t1], [296, 296, 4, 30, 26, 28]);
  assertRequestError(
    () => validateRequest({ mode: "text2video", prompt: "", steps: 31 }, undefined, small),
    "steps",
    "[2, 30]",
  );
});

Deno.test("validateRequest: defaults of the video modes (METHOD §2, §3)", () => {
  const p = validateRequest({ mode: "pix2pix", prompt: "x", video: VIDEO, model: "m" });
  assertEquals([p.steps, p.guidanceScale, p.imageGuidanceScale, p.resolution], [50, 7.5, 1.0, 512]);
  assertEquals([p.start, p.end, p.fps, p.videoName], [0, -1, undefined, "video"]);
  const c = validateRequest({ mode: "canny", prompt: "x", video: VIDEO, model: "m" });
  assertEquals([c.steps, c.guidanceScale, c.controlScale, c.lowThreshold, c.highThreshold], [20, 9, 1, 100, 200]);
  assertEquals([c.fps, c.start, c.end, c.controlnet], [
    undefined,
    undefined,
    undefined,
    "lllyasviel/sd-controlnet-canny",
  ]);
  const pose = validateRequest({ mode: "pose", prompt: "x", video: VIDEO, model: "m" });
  assertEquals([pose.fps, pose.format, pose.controlnet], [4, "gif", "lllyasviel/sd-controlnet-openpose"]);
  const d = validateRequest({ mode: "depth", prompt: "x", video: VIDEO, model: "m", depthModel: "d.onnx" });
  assertEquals(d.controlnet, "lllyasviel/sd-controlnet-depth");
});

Deno.test("validateRequest: t0/t1 default to 44/47 of 50, scaled and kept in 0 <= t0 < t1 < steps", () => {
  assertEquals(defaultT0T1(50), { t0: 44, t1: 47 });
  assertEquals(defaultT0T1(20), { t0: 18, t1: 19 });
  assertEquals(defaultT0T1(10), { t0: 8, t1: 9 });
  assertEquals(defaultT0T1(4), { t0: 2, t1: 3 });
  assertEquals(defaultT0T1(2), { t0: 0, t1: 1 });
  for (let n = 2; n <= 100; n++) {
    const { t0, t1 } = defaultT0T1(n);
    assert(0 <= t0 && t0 < t1 && t1 < n, `steps ${n}: t0 ${t0} t1 ${t1}`);
    const r = validateRequest({ mode: "text2video", prompt: "", steps: n });
    assertEquals([r.t0, r.t1], [t0, t1]);
  }
  // One given, the other fits around it.
  assertEquals(validateRequest({ mode: "text2video", prompt: "", steps: 10, t0: 9 - 1 }).t1, 9);
  assertEquals(validateRequest({ mode: "text2video", prompt: "", steps: 10, t1: 5 }).t0, 4);
});

Deno.test("validateRequest: errors name the field and what was expected", () => {
  const t2v = (extra: Partial<JobRequest>) => () =>
    validateRequest({ mode: "text2video", prompt: "x", model: "m", ...extra });
  assertRequestError(() => validateRequest({ mode: "bogus" } as unknown as JobRequest), "mode", "text2video");
  assertRequestError(() => validateRequest({ mode: "text2video" } as JobRequest), "prompt", "required");
  assertRequestError(t2v({ width: 500 }), "width", "multiple of 8");
  assertRequestError(t2v({ height: 8 }), "height", "[64, 2048]");
  assertRequestError(t2v({ steps: 1 }), "steps", "[2, 1000]");
  assertRequestError(t2v({ steps: 2.5 }), "steps", "integer");
  assertRequestError(t2v({ t0: 47, t1: 44 }), "t0", "t0 < t1 < steps");
  assertRequestError(t2v({ steps: 20, t1: 20 }), "t1", "t0 < t1 < steps (20)");
  assertRequestError(t2v({ t1: 0 }), "t1", "[1, 999]");
  assertRequestError(t2v({ guidanceScale: NaN }), "guidanceScale", "number");
  assertRequestError(t2v({ seed: -1 }), "seed", "[0, 4294967295]");
  assertRequestError(t2v({ seed: "12" as unknown as number }), "seed", "integer");
  assertRequestError(t2v({ chunkSize: 1 }), "chunkSize", "[2, 1024]");
  assertRequestError(t2v({ format: "avi" as "mp4" }), "format", "mp4, gif, webm");
  assertRequestError(t2v({ precision: "f64" as "f32" }), "precision", "f32, f16");
  assertRequestError(t2v({ video: VIDEO }), "video", "does not apply to mode text2video");
  assertRequestError(t2v({ controlScale: 1 }), "controlScale", "pose, canny, depth");
  assertRequestError(t2v({ smoothBackground: true }), "saliencyModel", ".onnx");
  assertRequestError(t2v({ smoothStrength: 0.5 }), "smoothStrength", "only applies with smoothBackground");
  assertRequestError(
    t2v({ smoothBackground: true, saliencyModel: "s.onnx", smoothStrength: 2 }),
    "smoothStrength",
    "[0, 1]",
  );
  assertEquals(
    validateRequest({ mode: "text2video", prompt: "", smoothBackground: true, saliencyModel: "s" }).smoothStrength,
    0.4,
  );
  assertRequestError(t2v({ colour: 1 } as Partial<JobRequest>), "colour", "unknown field");
  assertRequestError(t2v({ model: DEMO_MODEL, config: "c" }), "config", "demo");
  assertRequestError(() => validateRequest({ mode: "pix2pix", prompt: "x" }), "video", "needs an input video");
  assertRequestError(() => validateRequest({ mode: "canny", prompt: "x", video: new Uint8Array() }), "video", "empty");
  const vid = (mode: JobRequest["mode"], extra: Partial<JobRequest>) => () =>
    validateRequest({ mode, prompt: "x", video: VIDEO, ...extra });
  assertRequestError(vid("canny", { width: 64 }), "height", "both width and height");
  assertRequestError(vid("canny", { start: 2, end: 1 }), "end", "after start");
  assertRequestError(vid("canny", { lowThreshold: 150, highThreshold: 100 }), "lowThreshold", "highThreshold");
  assertRequestError(vid("canny", { highThreshold: 300 }), "highThreshold", "[0, 255]");
  assertRequestError(vid("pix2pix", { t0: 3 }), "t0", "only text2video");
  assertRequestError(vid("pose", { fps: 0 }), "fps", "-1");
  assertRequestError(t2v({ fps: -1 }), "fps", "got -1");
  assertEquals(vid("pose", { fps: -1 })().fps, -1, "-1 = the source's fps");
  assertRequestError(vid("depth", {}), "depthModel", ".onnx");
  assertRequestError(vid("pix2pix", { resolution: 32 }), "resolution", "[64, 2048]");
  // Valid edge values pass.
  validateRequest({ mode: "canny", prompt: "x", video: VIDEO, width: 64, height: 72, end: -1, lowThreshold: 0 });
});

Deno.test("validateRequest: model defaults follow ZEROVID_MODEL, else the demo model", () => {
  const saved = { m: Deno.env.get("ZEROVID_MODEL"), p: Deno.env.get("ZEROVID_PIX2PIX_MODEL") };
  try {
    Deno.env.delete("ZEROVID_MODEL");
    Deno.env.delete("ZEROVID_PIX2PIX_MODEL");
    const demo = validateRequest({ mode: "text2video", prompt: "" });
    assertEquals([demo.model, demo.width, demo.height, demo.steps, demo.t0, demo.t1], [DEMO_MODEL, 64, 64, 10, 8, 9]);
    const demo2 = validateRequest({ mode: "text2video", prompt: "", width: 128, steps: 50 });
    assertEquals([demo2.width, demo2.height, demo2.steps], [128, 64, 50], "given values win over the demo's");
    const c = validateRequest({ mode: "canny", prompt: "", video: VIDEO });
    assertEquals([c.model, c.controlnet, c.resolution, c.steps], [DEMO_MODEL, DEMO_MODEL, 64, 10]);
    assertEquals(validateRequest({ mode: "pix2pix", prompt: "", video: VIDEO }).model, DEMO_MODEL);
    Deno.env.set("ZEROVID_MODEL", "org/sd");
    const real = validateRequest({ mode: "text2video", prompt: "" });
    assertEquals([real.model, real.width, real.steps], ["org/sd", 512, 50]);
    assertEquals(validateRequest({ mode: "pix2pix", prompt: "", video: VIDEO }).model, "timbrooks/instruct-pix2pix");
    Deno.env.set("ZEROVID_PIX2PIX_MODEL", "org/p2p");
    assertEquals(validateRequest({ mode: "pix2pix", prompt: "", video: VIDEO }).model, "org/p2p");
    assertEquals(
      validateRequest({ mode: "pose", prompt: "", video: VIDEO }).controlnet,
      "lllyasviel/sd-controlnet-openpose",
    );
  } finally {
    for (const [k, v] of [["ZEROVID_MODEL", saved.m], ["ZEROVID_PIX2PIX_MODEL", saved.p]] as const) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------
// ModelCache

gpuTest(
  "ModelCache: one load per (model, dtype), shared by concurrent requests; LRU eviction by bytes",
  async (dev) => {
    const cache = new ModelCache(dev);
    const spec = { kind: "diffusers", dir: TINY_SD } as const;
    const [a, b] = await Promise.all([cache.stableDiffusion(spec, "f32"), cache.stableDiffusion(spec, "f32")]);
    assert(a.model === b.model, "concurrent requests share one model");
    const c = await cache.stableDiffusion({ kind: "diffusers", dir: TINY_SD + "/." }, "f32");
    assert(c.model === a.model, "the same folder spelled differently is the same model");
    assertEquals(cache.loads, 1);
    const h = await cache.stableDiffusion(spec, "f16");
    assert(h.model !== a.model && h.model.dtype === "f16", "another dtype is another model");
    assertEquals(cache.loads, 2);
    const sdBytes = a.model.bytes;
    assert(sdBytes > 0 && cache.bytes === sdBytes + h.model.bytes);
    [h, a, b, c].forEach((l) => l.release()); // the f16 model is now the least recently used
    a.release(); // idempotent

    // Budget for one f32 SD and a ControlNet: loading the pix2pix model evicts the least recently used idle one.
    const cn = await cache.controlNet({ kind: "dir", dir: TINY_CN }, "f32");
    cache.maxBytes = sdBytes + cn.model.params.bytes + 1;
    cache.evict();
    assert(!cache.has(sdKey(spec, "f16")), "f16 SD (oldest idle) evicted");
    assert(cache.has(sdKey(spec, "f32")));
    const sd = await cache.stableDiffusion(spec, "f32"); // in use: must survive
    cn.release();
    const p2p = await cache.stableDiffusion({ kind: "diffusers", dir: TINY_P2P }, "f32");
    assert(cache.has(sdKey(spec, "f32")), "a model in use is never evicted");
    assert(!cache.has(controlNetKey({ kind: "dir", dir: TINY_CN }, "f32")), "the idle ControlNet went instead");
    assert(cache.bytes > cache.maxBytes, "over budget only while models are in use");
    // Still usable after everything above.
    const ids = sd.model.tokenizer.encode("a cat");
    assertEquals(ids.length, 77);
    sd.release(); // now idle and over budget: evicted
    assert(!cache.has(sdKey(spec, "f32")));
    p2p.release();
    assert(cache.bytes <= cache.maxBytes);
    const loadsBefore = cache.loads;
    (await cache.stableDiffusion({ kind: "diffusers", dir: TINY_P2P }, "f32")).release();
    assertEquals(cache.loads, loadsBefore, "the most recent model stayed cached");
    cache.dispose();
    await assertRejects(() => cache.stableDiffusion(spec, "f32"), Error, "after dispose");
  },
);

gpuTest("ModelCache: a failed load is not cached", async (dev) => {
  const cache = new ModelCache(dev);
  await assertRejects(() => cache.stableDiffusion({ kind: "diffusers", dir: "/nonexistent" }, "f32"));
  await assertRejects(() => cache.stableDiffusion({ kind: "diffusers", dir: "/nonexistent" }, "f32"));
  assertEquals(cache.loads, 2);
  assertEquals(cache.info().length, 0);
  cache.dispose();
});

// ---------------------------------------------------------------------------------------------------------------
// runJob

let sharedCache: ModelCache | null = null;
async function env() {
  const dev = await testDevice();
  sharedCache ??= new ModelCache(dev);
  return { dev, models: sharedCache };
}

const T2V: JobRequest = {
  mode: "text2video",
  model: TINY_SD,
  prompt: "a panda playing guitar",
  negativePrompt: "blurry",
  videoLength: 4,
  width: 64,
  height: 64,
  steps: 2,
  guidanceScale: 7.5,
  seed: 1234,
  precision: "f32",
  fps: 5,
};

const runs = new Map<string, { frames: Float32Array; progress: JobProgress[]; timings: Record<string, number> }>();

async function t2vFrames(chunkSize: number | undefined) {
  const key = String(chunkSize);
  if (!runs.has(key)) {
    const progress: JobProgress[] = [];
    let frames: Float32Array | null = null;
    const r = await runJob(await env(), { ...T2V, chunkSize }, {
      onProgress: (p) => progress.push(p),
      onFrames: (f, info) => {
        assertEquals(info, { count: 4, width: 64, height: 64, fps: 5 });
        frames = f;
      },
    });
    const info = await probeVideo(r.bytes);
    assertEquals([info.frames, info.width, info.height, info.fps], [4, 64, 64, 5]);
    assertEquals([r.frames, r.width, r.height, r.fps, r.format, r.contentType], [4, 64, 64, 5, "mp4", "video/mp4"]);
    assertEquals(r.params.seed, 1234);
    assertEquals([r.params.t0, r.params.t1], [0, 1]);
    runs.set(key, { frames: frames!, progress, timings: r.timings });
  }
  return runs.get(key)!;
}

gpuTest("runJob text2video: chunk sizes 2 and 3 give the unchunked frames", async () => {
  const whole = await t2vFrames(undefined); // default chunk 8 >= 4 frames: one call
  for (const chunk of [2, 3]) {
    const part = await t2vFrames(chunk);
    assertClose(part.frames, whole.frames, { maxAbs: 2e-4, relL2: 1e-5 }, `chunk ${chunk}`);
  }
  // Not trivially equal: the frames differ from each other (motion) and are not constant.
  const per = 64 * 64 * 3, f = whole.frames;
  let d = 0;
  for (let i = 0; i < per; i++) d += Math.abs(f[i] - f[per + i]);
  assert(d / per > 1e-3, `frames 0 and 1 should differ (mean |diff| ${d / per})`);
});

gpuTest("runJob text2video: frame 0 is the plain DDIM text-to-image of the same seed", async () => {
  const whole = await t2vFrames(undefined);
  const { models, dev } = await env();
  const lease = await models.stableDiffusion({ kind: "diffusers", dir: TINY_SD }, "f32");
  try {
    const img = await text2image(lease.model, {
      prompt: T2V.prompt,
      negativePrompt: T2V.negativePrompt,
      width: 64,
      height: 64,
      steps: 2,
      guidanceScale: 7.5,
    }, new SeededNoise(1234));
    assertClose(whole.frames.subarray(0, 64 * 64 * 3), img.frames, { maxAbs: 2e-4, relL2: 1e-5 }, "frame 0");
    // A different seed gives a different image (the comparison can fail).
    const other = await text2image(lease.model, {
      prompt: T2V.prompt,
      negativePrompt: T2V.negativePrompt,
      width: 64,
      height: 64,
      steps: 2,
      guidanceScale: 7.5,
    }, new SeededNoise(99));
    let d = 0;
    for (let i = 0; i < other.frames.length; i++) d = Math.max(d, Math.abs(other.frames[i] - img.frames[i]));
    assert(d > 1e-2, `seed 99 should differ from seed 1234 (max |diff| ${d})`);
  } finally {
    lease.release();
  }
  assert(dev.f16 !== undefined);
});

gpuTest("runJob: progress in order, timings per phase", async () => {
  const { progress, timings } = await t2vFrames(undefined);
  const stages = [...new Set(progress.map((p) => p.stage))];
  assertEquals(stages, ["load", "anchor", "denoise", "decode", "encode_video"]);
  const steps = progress.filter((p) => p.stage === "anchor" || p.stage === "denoise");
  assertEquals(steps.map((p) => p.step), [1, 2, 3]); // 1 anchor step to T0, then 2 steps from T1
  assert(steps.every((p) => p.total === 3));
  for (const k of ["load", "anchor", "denoise", "decode", "encode_video", "total"]) {
    assert(timings[k] >= 0, `timing ${k}`);
  }
  assert(timings.total >= timings.denoise + timings.decode);
});

gpuTest("runJob: cancelling stops the job and hands the model back", async () => {
  const e = await env();
  const ac = new AbortController();
  await assertRejects(
    () =>
      runJob(e, { ...T2V, videoLength: 2 }, {
        signal: ac.signal,
        onProgress: (p) => {
          if (p.stage === "anchor") ac.abort();
        },
      }),
    Cancelled,
  );
  assert(e.models.info().every((i) => i.inUse === 0), "no model left lent out");
});

gpuTest("runJob: a file that is not a video is a RequestError on 'video'", async () => {
  const e = await env();
  const err = await assertRejects(
    () =>
      runJob(e, {
        mode: "canny",
        prompt: "x",
        video: new TextEncoder().encode("not a video at all"),
        videoName: "notes.txt",
        model: TINY_SD,
        controlnet: TINY_CN,
      }),
    RequestError,
  );
  assertEquals((err as RequestError).field, "video");
  assert((err as RequestError).message.includes("notes.txt"));
});

gpuTest("runJob: a missing model is a RequestError on 'model'", async () => {
  const e = await env();
  const err = await assertRejects(
    () => runJob(e, { ...T2V, model: "/no/such/model" }),
    RequestError,
  );
  assertEquals((err as RequestError).field, "model");
});

gpuTest("runJob: hub ids resolve through the hub cache (mock hub), then offline from the cache", async (dev) => {
  const hub = startMockHub({
    repos: {
      "tiny/sd": { files: await filesFromDir(TINY_SD) },
      "tiny/controlnet": { files: await filesFromDir(TINY_CN) },
    },
  });
  const cacheDir = await Deno.makeTempDir({ prefix: "zerovid-hub-" });
  const models = new ModelCache(dev);
  try {
    const loaded = async (offline: boolean) => {
      const ac = new AbortController();
      const stages = new Set<string>();
      // Stop right after the models are loaded: resolution and loading are what is tested here.
      await assertRejects(
        () =>
          runJob({ dev, models, hub: { endpoint: hub.url, cacheDir, token: null, offline } }, {
            mode: "canny",
            prompt: "x",
            video: Deno.readFileSync(join(MEDIA, "clip_life_64_6fps.gif")),
            model: "tiny/sd",
            controlnet: "tiny/controlnet",
            precision: "f32",
            resolution: 64,
          }, {
            signal: ac.signal,
            onProgress: (p) => {
              stages.add(p.stage);
              if (p.stage === "load" && p.step === 1) ac.abort();
            },
          }),
        Cancelled,
      );
      return stages;
    };
    const first = await loaded(false);
    assert(first.has("download"), "the first run downloads");
    const gets = hub.requests.filter((r) => r.method === "GET").length;
    assert(gets > 0);
    const keys = models.info().map((i) => i.key);
    assertEquals(keys.length, 2);
    assert(keys.every((k) => k.includes(cacheDir)), `models load from the hub cache: ${keys}`);
    // Offline and with a fresh model cache: everything comes from the hub cache folder.
    models.dispose();
    const again = new ModelCache(dev);
    const before = hub.requests.length;
    const second = await (async () => {
      const ac = new AbortController();
      await assertRejects(
        () =>
          runJob({ dev, models: again, hub: { endpoint: hub.url, cacheDir, token: null, offline: true } }, {
            mode: "text2video",
            prompt: "x",
            model: "tiny/sd",
            precision: "f32",
          }, { signal: ac.signal, onProgress: (p) => p.stage === "load" && p.step === 1 && ac.abort() }),
        Cancelled,
      );
      return again.info().length;
    })();
    assertEquals(second, 1);
    assertEquals(hub.requests.length, before, "no request in offline mode");
    again.dispose();
    // An unknown repository is a RequestError naming the field.
    const err = await assertRejects(
      () =>
        runJob({ dev, models: new ModelCache(dev), hub: { endpoint: hub.url, cacheDir, token: null } }, {
          ...T2V,
          model: "tiny/nothing",
        }),
      RequestError,
    );
    assertEquals((err as RequestError).field, "model");
  } finally {
    await hub.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

gpuTest("runJob: a model of the wrong kind for the mode is a RequestError on 'model'", async () => {
  const e = await env();
  const t2v = await assertRejects(() => runJob(e, { ...T2V, model: TINY_P2P }), RequestError, "Instruct-Pix2Pix");
  assertEquals(t2v.field, "model");
  const p2p = await assertRejects(
    () =>
      runJob(e, {
        mode: "pix2pix",
        prompt: "x",
        model: TINY_SD,
        video: Deno.readFileSync(join(MEDIA, "clip_life_64_6fps.gif")),
        resolution: 64,
        videoLength: 1,
        precision: "f32",
      }),
    RequestError,
    "Instruct-Pix2Pix",
  );
  assertEquals(p2p.field, "model");
  assert(e.models.info().every((i) => i.inUse === 0), "no model left lent out");
});

gpuTest("runJob: a single-file checkpoint loads with --config (the configs and tokenizer of a folder)", async () => {
  const e = await env();
  const ac = new AbortController();
  const single = join(GOLDEN, "tiny-sd-original.safetensors");
  await assertRejects(
    () =>
      runJob(e, { ...T2V, model: single, config: TINY_SD }, {
        signal: ac.signal,
        onProgress: (p) => p.stage === "load" && p.step === 1 && ac.abort(),
      }),
    Cancelled,
  );
  assert(e.models.info().some((i) => i.key.startsWith(`single_file:${single}|${TINY_SD}|`)), "loaded as a single file");
  const err = await assertRejects(() => runJob(e, { ...T2V, config: TINY_SD }), RequestError, "single-file");
  assertEquals(err.field, "config");
});

// ---------------------------------------------------------------------------------------------------------------
// A truncated or corrupt .safetensors is the user's error on the field that named it (exit 2, HTTP 400), never ours.

/** Copies of the golden single-file checkpoint: cut in its tensor data, cut in its header, and not safetensors. */
async function brokenCheckpoints(dir: string): Promise<Record<string, string>> {
  const whole = await Deno.readFile(join(GOLDEN, "tiny-sd-original.safetensors"));
  const files: Record<string, Uint8Array> = {
    "cut-data.safetensors": whole.subarray(0, whole.length >> 1),
    "cut-header.safetensors": whole.subarray(0, 20),
    "not-safetensors.safetensors": new TextEncoder().encode("a text file with the wrong name ".repeat(4)),
  };
  const out: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(files)) {
    out[name] = join(dir, name);
    await Deno.writeFile(out[name], bytes);
  }
  return out;
}

gpuTest("runJob: a truncated or corrupt .safetensors model is a RequestError on 'model'", async () => {
  const e = await env();
  const dir = await Deno.makeTempDir({ prefix: "zerovid-broken-" });
  try {
    for (const [name, path] of Object.entries(await brokenCheckpoints(dir))) {
      const err = await assertRejects(() => runJob(e, { ...T2V, model: path, config: TINY_SD }), RequestError);
      assertEquals(err.field, "model", `${name}: ${err.message}`);
      assert(err.message.includes(path), `${name}: the message names the file: ${err.message}`);
    }
    // A diffusers folder whose UNet weights are cut short: the same.
    const folder = join(dir, "tiny-sd-cut");
    await Deno.mkdir(folder);
    for await (const entry of Deno.readDir(TINY_SD)) {
      await new Deno.Command("cp", { args: ["-r", join(TINY_SD, entry.name), folder] }).output();
    }
    const unet = join(folder, "unet", "diffusion_pytorch_model.safetensors");
    const bytes = await Deno.readFile(unet);
    await Deno.writeFile(unet, bytes.subarray(0, bytes.length - 100));
    const err = await assertRejects(() => runJob(e, { ...T2V, model: folder }), RequestError, "truncated");
    assertEquals(err.field, "model");
    assert(e.models.info().every((i) => i.inUse === 0), "no model left lent out");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: a truncated or corrupt .safetensors under the model root is refused with 400 on 'model'", async () => {
  const root = await Deno.makeTempDir({ prefix: "zerovid-broken-root-" });
  const data = await Deno.makeTempDir({ prefix: "zerovid-broken-data-" });
  const { openServer } = await import("../routes/server.ts");
  const srv = await openServer({
    runner: () => Promise.reject(new Error("no job should run")),
    dataDir: data,
    modelRoots: [root, GOLDEN_MODELS],
    validate: (r, limits, video) => validateRequest(r, { f16: false }, limits, video),
    autostart: false,
    log: () => {},
  });
  try {
    for (const name of Object.keys(await brokenCheckpoints(root))) {
      const res = await srv.app.fetch(
        new Request("http://localhost/v1/jobs", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ mode: "text2video", prompt: "x", model: name, config: "tiny-sd" }),
        }),
      );
      const body = await res.json();
      assertEquals([name, res.status, body.field], [name, 400, "model"], JSON.stringify(body));
      assert(!String(body.error).includes(root), `no server path in the answer: ${body.error}`);
    }
    assertEquals((await srv.queue.list(10)).length, 0, "nothing was queued");
  } finally {
    await srv.close();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

gpuTest(
  "runJob: odd sizes (72x136: 9x17 latents) run to playable files in f32 and f16, text and video modes",
  async () => {
    const clip = Deno.readFileSync(join(MEDIA, "clip_testsrc_128x96_8fps.mp4"));
    for (const precision of ["f32", "f16"] as const) {
      const cases: [string, JobRequest, number, number][] = [
        ["text2video", { ...T2V, width: 72, height: 136, videoLength: 3, precision }, 72, 136],
        [
          "canny",
          {
            mode: "canny",
            model: DEMO_MODEL,
            prompt: "x",
            video: clip,
            width: 136,
            height: 72,
            videoLength: 3,
            steps: 2,
            seed: 5,
            precision,
          },
          136,
          72,
        ],
      ];
      for (const [what, req, w, h] of cases) {
        let frames: Float32Array | null = null;
        const r = await runJob(await env(), req, { onFrames: (f) => frames = f });
        const info = await probeVideo(r.bytes, `${what}.mp4`);
        assertEquals([info.frames, info.width, info.height], [3, w, h], `${what} ${precision}: a playable file`);
        const f = frames!, per = w * h * 3;
        assert(f.length === 3 * per && f.every(Number.isFinite), `${what} ${precision}: finite frames`);
        // A picture, not a flat fill (a size mix-up shows as garbage or constant rows).
        let mean = 0, sq = 0;
        for (let i = 0; i < per; i++) (mean += f[i]), (sq += f[i] * f[i]);
        mean /= per;
        assert(sq / per - mean * mean > 1e-4, `${what} ${precision}: frame 0 is flat`);
      }
    }
  },
);
