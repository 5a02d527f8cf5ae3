// A cancelled run must give back every pooled GPU buffer it took.
import { Device } from "../pipeline/gpu/device.ts";
import { loadControlNet, StableDiffusion } from "../pipeline/models/sd.ts";
import { controlVideo } from "../pipeline/modes/controlnet_video.ts";
import { pix2pix } from "../pipeline/modes/pix2pix.ts";
import { Cancelled, SeededNoise, type StepInfo } from "../pipeline/modes/common.ts";
import { text2video } from "../pipeline/modes/text2video.ts";
import { gpuTest, randu } from "./util.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";

const TINY = GOLDEN_MODELS + "/tiny-sd";

gpuTest("modes: a cancel mid-run releases all pooled tensors", async (dev) => {
  const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
  try {
    const p = {
      prompt: "x",
      videoLength: 3,
      width: 64,
      height: 64,
      steps: 6,
      guidanceScale: 7.5,
      motionX: 12,
      motionY: 12,
    };
    await text2video(sd, p, new SeededNoise(1)); // warm the pool
    const before = dev.pool.inUse;
    const ac = new AbortController();
    let steps = 0;
    const run = text2video(sd, { ...p, chunkSize: 2 }, new SeededNoise(1), {
      signal: ac.signal,
      onProgress: (s) => {
        if (s.stage === "denoise" && ++steps === 1) ac.abort();
      },
    });
    let cancelled = false;
    try {
      await run;
    } catch (e) {
      cancelled = e instanceof Cancelled;
      if (!cancelled) throw e;
    }
    if (!cancelled) throw new Error("the run was not cancelled");
    if (dev.pool.inUse !== before) {
      throw new Error(`pool in use ${dev.pool.inUse} bytes after cancel, ${before} before`);
    }
  } finally {
    sd.dispose();
  }
});

gpuTest(
  "modes: each text-to-video denoising step is recorded into one command buffer, chunked or not",
  async (dev) => {
    const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
    try {
      const p = {
        prompt: "x",
        videoLength: 5,
        width: 64,
        height: 64,
        steps: 6,
        guidanceScale: 7.5,
        motionX: 12,
        motionY: 12,
      };
      for (const chunkSize of [undefined, 2, 3]) {
        const seen: number[] = [];
        let last = -1;
        await text2video(sd, { ...p, chunkSize }, new SeededNoise(3), {
          onProgress: (s) => {
            if (s.stage === "denoise") {
              if (last >= 0) seen.push(dev.submits - last);
              last = dev.submits;
            }
          },
        });
        if (!seen.length || seen.some((n) => n !== 1)) {
          throw new Error(`chunkSize ${chunkSize}: command buffers per denoising step ${seen.join(", ")}`);
        }
      }
    } finally {
      sd.dispose();
    }
  },
);

Deno.test({
  name: "modes: a lost device ends a run with a clear error instead of a hang",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dev = await Device.open();
    const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
    const p = {
      prompt: "x",
      videoLength: 2,
      width: 64,
      height: 64,
      steps: 6,
      guidanceScale: 7.5,
      motionX: 12,
      motionY: 12,
    };
    let steps = 0;
    const run = text2video(sd, p, new SeededNoise(1), {
      onProgress: () => {
        if (++steps === 2) dev.gpu.destroy();
      },
    });
    const timeout = new Promise<string>((r) => setTimeout(() => r("timeout"), 60_000));
    const outcome = await Promise.race([run.then(() => "finished", (e) => `error: ${(e as Error).message}`), timeout]);
    if (!/^error: .*(lost|destroy)/i.test(outcome)) throw new Error(`expected a device-lost error, got ${outcome}`);
  },
});

Deno.test({
  name: "modes: text-to-video compiles every pipeline before its first step (nothing compiles in the loop)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dev = await Device.open(); // fresh: no pipelines cached yet
    const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
    try {
      const p = {
        prompt: "x",
        videoLength: 4,
        width: 64,
        height: 56,
        steps: 5,
        guidanceScale: 7.5,
        motionX: 12,
        motionY: 12,
      };
      let early = -1;
      await text2video(sd, { ...p, chunkSize: 3 }, new SeededNoise(2), {
        onProgress: () => {
          if (early < 0) early = dev.lateCompiles;
        },
      });
      if (early !== 0 || dev.lateCompiles !== 0) {
        throw new Error(`pipelines compiled after precompile: ${early} by the first step, ${dev.lateCompiles} in all`);
      }
    } finally {
      sd.dispose();
      dev.destroy();
    }
  },
});

Deno.test({
  name: "modes: ControlNet video and pix2pix precompile everything and record one command buffer per step",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const models = GOLDEN_MODELS + "/";
    const F = 3, H = 48, W = 64;
    const video = { data: randu(F * 3 * H * W, 5, 0, 1), frames: F, height: H, width: W };
    const check = async (name: string, run: (dev: Device, onProgress: (s: StepInfo) => void) => Promise<unknown>) => {
      const dev = await Device.open();
      try {
        const perStep: number[] = [];
        let last = -1, early = -1;
        await run(dev, (s) => {
          if (early < 0) early = dev.lateCompiles;
          if (s.stage !== "denoise") return;
          if (last >= 0) perStep.push(dev.submits - last);
          last = dev.submits;
        });
        if (early !== 0 || dev.lateCompiles !== 0) {
          throw new Error(`${name}: ${dev.lateCompiles} late pipeline compiles`);
        }
        if (!perStep.length || perStep.some((n) => n !== 1)) throw new Error(`${name}: submits per step ${perStep}`);
      } finally {
        dev.destroy();
      }
    };
    await check("controlVideo", async (dev, onProgress) => {
      const sd = await StableDiffusion.load(dev, `${models}tiny-sd`, { dtype: "f32" });
      const cn = await loadControlNet(dev, `${models}tiny-controlnet`, "f32");
      const p = { prompt: "x", steps: 4, guidanceScale: 9, controlScale: 1, chunkSize: 2 };
      await controlVideo(sd, cn, video, p, new SeededNoise(4), { onProgress });
    });
    await check("pix2pix", async (dev, onProgress) => {
      const sd = await StableDiffusion.load(dev, `${models}tiny-pix2pix`, { dtype: "f32" });
      const p = { prompt: "x", steps: 4, guidanceScale: 7.5, imageGuidanceScale: 1.5, chunkSize: 2 };
      await pix2pix(sd, video, p, new SeededNoise(4), { onProgress });
    });
  },
});
