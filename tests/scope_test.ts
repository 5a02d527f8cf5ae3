// A cancelled run must give back every pooled GPU buffer it took.
import { Device } from "../pipeline/gpu/device.ts";
import { StableDiffusion } from "../pipeline/models/sd.ts";
import { Cancelled, SeededNoise } from "../pipeline/modes/common.ts";
import { text2video } from "../pipeline/modes/text2video.ts";
import { gpuTest } from "./util.ts";

const TINY = new URL("../../shared/golden/models/tiny-sd", import.meta.url).pathname;

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
