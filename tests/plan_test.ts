// The run planner (pipeline/job/plan.ts): chunk sizes within the adapter's limits and a memory cap, refusals that
// name the limit and the largest size that fits, its memory model against the buffer pool's measured peak, and
// whole runs on the tiny models with the limits the planner and the ops see forced small: the same frames.
import { assert, assertEquals, assertThrows } from "../fixtures/asserts.ts";
import { RequestError } from "../pipeline/errors.ts";
import { empty, withTensorScope } from "../pipeline/gpu/tensor.ts";
import {
  demoPlanModels,
  folderPlanModels,
  largestFitting,
  memoryCap,
  type PlanLimits,
  type PlanModels,
  type PlanRequest,
  planRun,
  unetPerFrame,
  vaePerFrame,
} from "../pipeline/job/plan.ts";
import { runJob } from "../pipeline/job/run.ts";
import type { JobRequest } from "../pipeline/job/types.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import { openServer } from "../routes/server.ts";
import { probeVideo } from "../pipeline/media/probe.ts";
import { ModelCache } from "../pipeline/model_cache.ts";
import { loadDemoSD } from "../pipeline/models/demo.ts";
import { StableDiffusion } from "../pipeline/models/sd.ts";
import { GOLDEN_MODELS, MEDIA_DIR } from "../fixtures/paths.ts";
import { VAE, type VAEConfig } from "../pipeline/models/vae.ts";
import { SD15_UNET } from "../pipeline/models/unet.ts";
import { vaeShapes } from "../pipeline/models/shapes.ts";
import { randomSource } from "../pipeline/weights/random.ts";
import { assertClose, gpuTest, testDevice } from "./util.ts";

const MiB = 2 ** 20;
const DEMO: PlanModels = demoPlanModels("f32");
const BIG: PlanLimits = { maxBinding: 128 * MiB, maxBuffer: 2 ** 31 - 1 };
const T2V: PlanRequest = { mode: "text2video", width: 128, height: 128, frames: 8, chunkSize: 8 };

Deno.test("plan: the request's chunk size when everything fits; an upper bound otherwise", () => {
  assertEquals(planRun(DEMO, BIG, T2V).chunkSize, 8);
  assertEquals(planRun(DEMO, BIG, { ...T2V, chunkSize: 3 }).chunkSize, 3);
  assert(planRun(DEMO, BIG, T2V).summary.includes("all 8 frames in one UNet call"));
  // A buffer that holds the largest UNet tensor of exactly 5 frames (2 guidance groups each; one VAE frame needs 4):
  // the anchor, then 5 frames per call; one byte less: 4 per call.
  const largest = unetPerFrame(DEMO.unet, 16, 16).largest * 4 * 2;
  const r16 = { ...T2V, frames: 16, chunkSize: 16 };
  const five = planRun(DEMO, { ...BIG, maxBuffer: 5 * largest }, r16);
  assertEquals(five.chunkSize, 6);
  assert(five.summary.includes("5 frames per UNet call after the anchor (chunk size 6) (limited by maxBufferSize"));
  assertEquals(planRun(DEMO, { ...BIG, maxBuffer: 5 * largest - 1 }, r16).chunkSize, 5);
  // Never above the request's.
  assertEquals(planRun(DEMO, { ...BIG, maxBuffer: 5 * largest }, { ...r16, chunkSize: 3 }).chunkSize, 3);
});

Deno.test("plan: a memory cap lowers the chunk size; more memory, larger chunks", () => {
  // The demo model's weights are 11 MiB; one 128x128 frame's decode (with 24 frames' latents) needs 22 MiB in all.
  const caps = [23, 26, 32, 64], r24 = { ...T2V, frames: 24, chunkSize: 24 };
  const sizes = caps.map((mb) => planRun(DEMO, { ...BIG, maxBytes: mb * MiB }, r24));
  for (let i = 1; i < sizes.length; i++) assert(sizes[i].chunkSize > sizes[i - 1].chunkSize);
  assert(sizes[0].chunkSize < 24 && sizes[3].chunkSize === 24, sizes.map((s) => s.chunkSize).join());
  for (const [i, mb] of caps.entries()) assert(sizes[i].peakBytes <= mb * MiB, sizes[i].summary);
  assert(sizes[0].summary.includes("limited by --max-gpu-mb 23"), sizes[0].summary);
  assertEquals(memoryCap(undefined, undefined), undefined);
  assertEquals(memoryCap(100 * MiB, undefined), 100 * MiB);
  assertEquals(memoryCap(100 * MiB, 50), 50 * MiB);
  assertEquals(memoryCap(100 * MiB, 500), 100 * MiB);
});

Deno.test("plan: a request that cannot fit names the limit and the largest size that does", () => {
  const lim = { maxBinding: 4 * MiB, maxBuffer: 64 * MiB };
  const req = { ...T2V, width: 1024, height: 768 };
  const e = assertThrows(() => planRun(DEMO, lim, req), RequestError) as RequestError;
  assertEquals(e.field, "width");
  assert(e.message.includes("maxStorageBufferBindingSize (4194304 bytes)"), e.message);
  const fit = largestFitting(DEMO, lim, req)!;
  assert(e.message.includes(`the largest size that fits is ${fit.width}x${fit.height}`), e.message);
  // It does fit, at the request's aspect ratio; 8 more pixels on the long side do not.
  assert(Math.abs(fit.width / fit.height - 4 / 3) < 0.05, `${fit.width}x${fit.height}`);
  planRun(DEMO, lim, { ...req, ...fit });
  assertThrows(() => planRun(DEMO, lim, { ...req, width: fit.width + 8, height: fit.height + 6 }), RequestError);
  // Too many frames for the latents' one binding: the frame count is the field to change.
  const long = assertThrows(
    () => planRun(DEMO, { maxBinding: 256 * 1024, maxBuffer: 64 * MiB }, { ...T2V, frames: 100 }),
    RequestError,
  ) as RequestError;
  assertEquals(long.field, "videoLength");
  assert(long.message.includes("at most 64 frames fit at 128x128"), long.message);
  // A memory cap below one frame's whole decode: decoded in bands of rows. Below even that: refused.
  const bands = planRun(DEMO, { ...BIG, maxBytes: 20 * MiB }, T2V);
  assert(bands.decodeBandBytes! > 0 && bands.summary.includes("in bands of rows"), bands.summary);
  assertEquals(planRun(DEMO, { ...BIG, maxBytes: 40 * MiB }, T2V).decodeBandBytes, undefined);
  const cap = assertThrows(() => planRun(DEMO, { ...BIG, maxBytes: 12 * MiB }, T2V), RequestError) as RequestError;
  assertEquals(cap.field, "maxGpuMb");
  assert(/even in bands, above --max-gpu-mb 12/.test(cap.message), cap.message);
});

Deno.test("plan: SD 1.5 f32 at 736x736 with 256 MiB buffers: the VAE encodes and decodes in bands", () => {
  const vae: VAEConfig = {
    in_channels: 3,
    out_channels: 3,
    block_out_channels: [128, 256, 512, 512],
    layers_per_block: 2,
    latent_channels: 4,
    norm_num_groups: 32,
    scaling_factor: 0.18215,
  };
  // WebGPU's default maxBufferSize: one 128-channel 736x736 f32 map (265 MiB) does not fit one buffer.
  const lim = { maxBinding: 128 * MiB, maxBuffer: 256 * MiB };
  const m: PlanModels = { unet: { ...SD15_UNET, in_channels: 8 }, vae, dtype: "f32", weightBytes: 4.2 * 2 ** 30 };
  const req: PlanRequest = { mode: "pix2pix", width: 736, height: 736, frames: 8 };
  const p = planRun(m, lim, req);
  assert(p.encodeBandBytes! > 0 && p.decodeBandBytes! > 0, p.summary);
  assert(p.encodeBandBytes! <= 128 * MiB && p.summary.includes("VAE encode in bands"), p.summary);
  // f16 at 512x512 fits whole; text-to-video never encodes.
  const small = planRun({ ...m, dtype: "f16" }, lim, { ...req, width: 512, height: 512 });
  assertEquals([small.encodeBandBytes, small.decodeBandBytes], [undefined, undefined], small.summary);
  const t2v = planRun({ ...m, unet: SD15_UNET }, lim, { ...req, mode: "text2video" });
  assertEquals(t2v.encodeBandBytes, undefined);
  assert(t2v.decodeBandBytes! > 0, t2v.summary);
});

Deno.test("plan: validation refuses a demo-model request that cannot fit, before any GPU work", () => {
  const req: JobRequest = {
    mode: "text2video",
    model: "demo",
    prompt: "x",
    width: 1024,
    height: 1024,
    precision: "f32",
  };
  const device = { f16: false, maxBinding: 4 * MiB, maxBuffer: 256 * MiB };
  const e = assertThrows(() => validateRequest(req, device), RequestError) as RequestError;
  assertEquals(e.field, "width");
  assert(/largest size that fits is \d+x\d+/.test(e.message), e.message);
  // The same request with the adapter's real limits, or without limits (the CLI's first pass), is valid.
  validateRequest(req, { ...device, maxBinding: 128 * MiB });
  validateRequest(req);
  // A memory cap (the server's or the request's).
  const capped = assertThrows(() =>
    validateRequest({ ...req, width: 256, height: 256, maxGpuMb: 64 }, {
      ...device,
      maxBinding: 128 * MiB,
      maxGpuBytes: 4 * MiB,
    }), RequestError) as RequestError;
  assertEquals(capped.field, "maxGpuMb");
});

gpuTest("plan: the memory model bounds the pool's measured peak (UNet call, VAE decode), within 2x", async (dev) => {
  const sd = await loadDemoSD(dev, "sd", "f32");
  try {
    for (const [size, frames] of [[128, 3], [192, 2]]) {
      const h = size / 8;
      await withTensorScope(dev, async () => {
        const context = empty(dev, [2, 77, 32], "f32"), x = empty(dev, [2 * frames, 4, h, h], "f32");
        await dev.sync();
        let base = dev.pool.inUse;
        dev.pool.peakInUse = base;
        sd.unet.forward({ sample: x, timesteps: [500], context, attn: { crossFrame: { groups: 2 } } }).release();
        await dev.sync();
        const unet = dev.pool.peakInUse - base, est = 1.25 * 4 * 2 * frames * unetPerFrame(sd.unet.cfg, h, h).live;
        assert(unet <= est && est <= 2 * unet, `UNet ${size}: measured ${unet}, estimated ${est}`);
        base = dev.pool.inUse;
        dev.pool.peakInUse = base;
        const lat = empty(dev, [1, 4, h, h], "f32");
        const sample = sd.vae.decode(lat);
        VAE.toImage(sample, "nhwc").release();
        sample.release();
        await dev.sync();
        const vae = dev.pool.peakInUse - base, vest = 1.25 * 4 * vaePerFrame(sd.vae.cfg, h, h).live;
        assert(vae <= vest && vest <= 2 * vae, `VAE ${size}: measured ${vae}, estimated ${vest}`);
      });
    }
  } finally {
    sd.dispose();
  }
});

gpuTest(
  "plan: an SD 1.5-sized VAE records a 512x512 f32 decode within the adapter's real binding limit",
  async (dev) => {
    // Recording validates every binding (Device.dispatch, createBindGroup) without running the decoder, which would
    // take minutes on a CPU adapter; the op tables check that the split computes what the unsplit ops do.
    const cfg: VAEConfig = {
      in_channels: 3,
      out_channels: 3,
      block_out_channels: [128, 256, 512, 512],
      layers_per_block: 2,
      latent_channels: 4,
      norm_num_groups: 32,
      scaling_factor: 0.18215,
    };
    const largest = vaePerFrame(cfg, 64, 64).largest * 4;
    assert(largest > dev.adapterLimits.maxBinding, `a ${largest}-byte feature map should exceed one binding`);
    const vae = await VAE.load(dev, randomSource(vaeShapes(cfg), 9), cfg, "f32", true);
    try {
      dev.gpu.pushErrorScope("validation");
      const n0 = dev.dispatches;
      dev.precompile(() => VAE.toImage(vae.decode(empty(dev, [1, 4, 64, 64], "f32")), "nhwc"));
      const err = await dev.gpu.popErrorScope();
      assert(!err, err?.message);
      assert(dev.dispatches - n0 > 100, `${dev.dispatches - n0} dispatches recorded`);
    } finally {
      vae.dispose();
      dev.pool.trim();
    }
  },
);

// Whole runs: 128x128, 8 frames, 2 steps, f32, the demo model.
const RUN: JobRequest = {
  mode: "text2video",
  model: "demo",
  prompt: "a panda",
  width: 128,
  height: 128,
  videoLength: 8,
  steps: 2,
  seed: 7,
  precision: "f32",
};

async function run(
  limits: { maxBinding?: number; maxBuffer?: number },
  extra: Partial<JobRequest> = {},
  want = { frames: 8, size: 128 },
) {
  const dev = await testDevice();
  const models = new ModelCache(dev);
  const restore = dev.lowerLimits(limits);
  let frames: Float32Array | null = null, summary = "", chunk = 0;
  try {
    dev.pool.peakInUse = dev.pool.inUse;
    const base = dev.pool.inUse;
    const r = await runJob({ dev, models }, { ...RUN, ...extra }, {
      onFrames: (f) => frames = f,
      onPlan: (p) => (summary = p.summary, chunk = p.chunkSize),
    });
    const info = await probeVideo(r.bytes);
    assertEquals([info.frames, info.width, info.height], [want.frames, want.size, want.size], "a playable video");
    return { frames: frames!, summary, chunk, peak: dev.pool.peakInUse - base, weights: models.bytes };
  } finally {
    restore();
    models.dispose();
  }
}

gpuTest("plan: forced small limits (ops split, fewer frames per call) give the same frames", async () => {
  const whole = await run({});
  assert(whole.summary.includes("all 8 frames in one UNet call"), whole.summary);
  // Bindings of 2 MiB: the UNet's feed-forward of 16 samples splits; every op is computed as before.
  const split = await run({ maxBinding: 2 * MiB, maxBuffer: 4 * MiB });
  assert(split.summary.includes("all 8 frames in one UNet call") && split.summary.includes("ops split"), split.summary);
  assertEquals(split.frames, whole.frames);
  // Buffers of 2 MiB: 4 frames per call after the anchor; bindings of 1 MiB: one VAE frame's convolutions split
  // their channels (partial sums: float rounding only).
  const small = await run({ maxBinding: 1 * MiB, maxBuffer: 2 * MiB });
  assertEquals(small.chunk, 5, small.summary);
  assertClose(small.frames, whole.frames, { maxAbs: 2e-4, relL2: 1e-5 }, "1 MiB bindings, chunk 5");
});

gpuTest("plan: a run under --max-gpu-mb holds no more than that; decoded in bands, the same frames", async () => {
  const capped = await run({}, { maxGpuMb: 22 });
  assert(capped.chunk < 8 && !capped.summary.includes("bands"), capped.summary);
  assert(capped.peak + capped.weights <= 22 * MiB, `peak ${capped.peak} + weights ${capped.weights}`);
  // 18 MiB: one frame's whole decode does not fit; it is decoded in bands of rows, exactly.
  const banded = await run({}, { maxGpuMb: 18 });
  assert(banded.summary.includes("in bands of rows"), banded.summary);
  assert(banded.peak + banded.weights <= 18 * MiB, `peak ${banded.peak} + weights ${banded.weights}`);
  assertClose(banded.frames, capped.frames, { maxAbs: 1e-5, relL2: 2e-6 }, "banded decode, 18 MiB");
  // An adapter whose largest buffer is 1 MiB: a frame's decode needs 2 MiB tensors whole, so it goes in bands.
  const small = await run({ maxBinding: 1 * MiB, maxBuffer: 1 * MiB });
  assert(small.summary.includes("in bands of rows"), small.summary);
  assertClose(small.frames, capped.frames, { maxAbs: 2e-4, relL2: 1e-5 }, "1 MiB buffers");
});

gpuTest(
  "plan: pix2pix with buffers too small for one frame's whole encode and decode: bands, the same frames",
  async () => {
    const p2p: Partial<JobRequest> = {
      mode: "pix2pix",
      model: "demo",
      video: Deno.readFileSync(`${MEDIA_DIR}/clip_life_64_6fps.gif`),
      width: 64,
      height: 64,
      videoLength: 3,
      steps: 2,
    };
    const want = { frames: 3, size: 64 };
    const whole = await run({}, p2p, want);
    assert(!whole.summary.includes("bands"), whole.summary);
    // The demo VAE at 64x64 (f32): its encode needs a 256 KiB tensor, its decode 512 KiB; one UNet frame fits.
    const banded = await run({ maxBuffer: 240 * 1024 }, p2p, want);
    assert(
      banded.summary.includes("VAE encode in bands") && banded.summary.includes("decode 1 frame at a time in bands"),
      banded.summary,
    );
    assertClose(banded.frames, whole.frames, { maxAbs: 2e-4, relL2: 1e-5 }, "pix2pix in bands");
  },
);

Deno.test("plan: the server refuses a request that cannot fit with 400 at submission; nothing is queued", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-plan-" });
  const ran: JobRequest[] = [];
  // What serve() gives validation on a GPU with 4 MiB bindings (lavapipe's is 128 MiB; this one is small).
  const device = { f16: false, maxBinding: 4 * MiB, maxBuffer: 256 * MiB };
  const srv = await openServer({
    dataDir: dir,
    modelRoots: [],
    validate: (r, limits, video) => validateRequest(r, device, limits, video),
    runner: (req) => {
      ran.push(req);
      return Promise.reject(new Error("the runner must not be reached"));
    },
    log: () => {},
    autostart: false,
  });
  try {
    const post = (body: unknown) =>
      srv.app.request("http://localhost/v1/jobs", {
        method: "POST",
        headers: { "content-type": "application/json", host: "localhost" },
        body: JSON.stringify(body),
      });
    const res = await post({ mode: "text2video", prompt: "x", width: 1024, height: 1024, precision: "f32" });
    const body = await res.json();
    assertEquals([res.status, body.field], [400, "width"], JSON.stringify(body));
    assert(/4194304 bytes.*largest size that fits is \d+x\d+/.test(body.error), body.error);
    assertEquals((await srv.queue.counts()).queued, 0);
    // A size that fits is accepted (and queued: no worker runs here).
    const ok = await post({ mode: "text2video", prompt: "x", width: 256, height: 256, precision: "f32" });
    assertEquals(ok.status, 202, await ok.text());
    assertEquals([(await srv.queue.counts()).queued, ran.length], [1, 0]);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "plan: a local diffusers folder is planned from its configs; its weights as the loader holds them",
  async (dev) => {
    const dir = `${GOLDEN_MODELS}/tiny-sd`;
    for (const dtype of ["f32", "f16"] as const) {
      const m = folderPlanModels(dir, dtype);
      assert(m, "tiny-sd's configs are all there");
      const sd = await StableDiffusion.load(dev, dir, { dtype });
      try {
        assertEquals(m.weightBytes, sd.bytes, `${dtype}: planned weight bytes`);
        assertEquals(m.unet.block_out_channels, sd.unet.cfg.block_out_channels);
      } finally {
        sd.dispose();
      }
    }
    // Not a pipeline folder (a single file, a missing or broken config): planned when loaded instead.
    assertEquals(folderPlanModels(`${GOLDEN_MODELS}/tiny-sd-original.safetensors`, "f32"), undefined);
    assertEquals(folderPlanModels(`${GOLDEN_MODELS}/tiny-controlnet`, "f32"), undefined);
    const broken = await Deno.makeTempDir({ prefix: "zerovid-plan-" });
    try {
      for (const c of ["unet", "vae", "text_encoder"]) {
        await Deno.mkdir(`${broken}/${c}`);
        await Deno.copyFile(`${dir}/${c}/config.json`, `${broken}/${c}/config.json`);
      }
      assert(folderPlanModels(broken, "f32"));
      await Deno.writeTextFile(`${broken}/vae/config.json`, "{ not json");
      assertEquals(folderPlanModels(broken, "f32"), undefined, "a config edited on disk is read again");
    } finally {
      await Deno.remove(broken, { recursive: true });
    }
  },
);

Deno.test("plan: the server refuses a request for a local model folder that cannot fit, at submission", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-plan-" });
  const root = await Deno.makeTempDir({ prefix: "zerovid-models-" });
  await Deno.symlink(`${GOLDEN_MODELS}/tiny-sd`, `${root}/tiny-sd`);
  const device = { f16: false, maxBinding: 4 * MiB, maxBuffer: 256 * MiB };
  const srv = await openServer({
    dataDir: dir,
    modelRoots: [root],
    validate: (r, limits, video) => validateRequest(r, device, limits, video),
    runner: () => Promise.reject(new Error("the runner must not be reached")),
    log: () => {},
    autostart: false,
  });
  try {
    const post = (body: unknown) =>
      srv.app.request("http://localhost/v1/jobs", {
        method: "POST",
        headers: { "content-type": "application/json", host: "localhost" },
        body: JSON.stringify(body),
      });
    const base = { mode: "text2video", model: "tiny-sd", prompt: "x", precision: "f32" };
    const res = await post({ ...base, width: 1024, height: 1024 });
    const body = await res.json();
    assertEquals([res.status, body.field], [400, "width"], JSON.stringify(body));
    assert(/4194304 bytes.*largest size that fits is \d+x\d+/.test(body.error), body.error);
    // A memory cap below the folder's weights and one frame's activations: refused on maxGpuMb.
    const capped = await post({ ...base, width: 128, height: 128, maxGpuMb: 1 });
    const cb = await capped.json();
    assertEquals([capped.status, cb.field], [400, "maxGpuMb"], JSON.stringify(cb));
    assertEquals((await srv.queue.counts()).queued, 0);
    const ok = await post({ ...base, width: 256, height: 256 });
    assertEquals(ok.status, 202, await ok.text());
    assertEquals((await srv.queue.counts()).queued, 1);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("plan: a video request is planned at submission from its probed input; one that cannot fit gets 400", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-plan-" });
  const device = { f16: false, maxBinding: 4 * MiB, maxBuffer: 256 * MiB };
  const srv = await openServer({
    dataDir: dir,
    modelRoots: [],
    validate: (r, limits, video) => validateRequest(r, device, limits, video),
    runner: () => Promise.reject(new Error("the runner must not be reached")),
    log: () => {},
    autostart: false,
  });
  try {
    const clip = await Deno.readFile(`${MEDIA_DIR}/clip_testsrc_128x96_8fps.mp4`); // 128x96, 16 frames
    const post = async (fields: Record<string, string>) => {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      form.set("video", new File([clip], "clip.mp4"));
      const res = await srv.app.request("http://localhost/v1/jobs", {
        method: "POST",
        headers: { host: "localhost" },
        body: form,
      });
      return { status: res.status, body: await res.json() };
    };
    for (const [i, mode] of ["canny", "pix2pix"].entries()) {
      const base = { mode, prompt: "x", precision: "f32" };
      // resolution 1024 makes 1024x768 frames: too large for 4 MiB bindings; resolution is blamed, with the size
      // that would fit.
      const big = await post({ ...base, resolution: "1024" });
      assertEquals([big.status, big.body.field], [400, "resolution"], JSON.stringify(big.body));
      assert(/1024x768, 16 frames cannot run.*largest size that fits is \d+x\d+/.test(big.body.error), big.body.error);
      const exact = await post({ ...base, width: "1024", height: "768" });
      assertEquals([exact.status, exact.body.field], [400, "width"], JSON.stringify(exact.body));
      assertEquals((await srv.queue.counts()).queued, i, `${mode}: a refused request was queued`);
      const ok = await post({ ...base, resolution: "256" });
      assertEquals(ok.status, 202, JSON.stringify(ok.body));
    }
    assertEquals((await srv.queue.counts()).queued, 2);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});
