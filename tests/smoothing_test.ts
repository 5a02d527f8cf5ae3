// Background smoothing: mask preparation against a direct reference, the blend's fixed points, and an end-to-end
// run where frame 0 (the anchor) must not change.
import { blendBackground, latentMasks } from "../pipeline/modes/smoothing.ts";
import { upload } from "../pipeline/gpu/tensor.ts";
import { StableDiffusion } from "../pipeline/models/sd.ts";
import { SeededNoise } from "../pipeline/modes/common.ts";
import { text2video } from "../pipeline/modes/text2video.ts";
import { assertClose, gpuTest, randn, randu } from "./util.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";

const TINY = GOLDEN_MODELS + "/tiny-sd";

Deno.test("smoothing: latentMasks = nearest resize then 5x5 max", () => {
  const F = 2, H = 24, W = 16, h = 6, w = 4;
  const masks = randu(F * H * W, 3, 0, 1);
  const got = latentMasks(masks, F, H, W, h, w);
  for (let f = 0; f < F; f++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let m = 0;
        for (let yy = Math.max(0, y - 2); yy <= Math.min(h - 1, y + 2); yy++) {
          for (let xx = Math.max(0, x - 2); xx <= Math.min(w - 1, x + 2); xx++) {
            m = Math.max(m, masks[(f * H + yy * 4) * W + xx * 4]);
          }
        }
        if (got[(f * h + y) * w + x] !== m) {
          throw new Error(`mask (${f},${y},${x}): ${got[(f * h + y) * w + x]} != ${m}`);
        }
      }
    }
  }
});

gpuTest("smoothing: all-foreground masks leave the latents unchanged; strength 1 too", async (dev) => {
  const F = 3, C = 4, h = 5, w = 7;
  const x = randn(F * C * h * w, 9);
  const t = upload(dev, x, [F, C, h, w], "f32");
  const ones = new Float32Array(F * h * 8 * w * 8).fill(1);
  const a = await blendBackground(t, ones, [0, 1, 2], 12, 12, 0.4);
  assertClose(await a.read(), x, { maxAbs: 0 }, "foreground");
  const b = await blendBackground(t, randu(ones.length, 4, 0, 1), [0, 1, 2], 12, 12, 1);
  assertClose(await b.read(), x, { maxAbs: 1e-6 }, "strength 1");
  a.release(), b.release(), t.release();
});

gpuTest("smoothing: background pixels move toward the warped anchor background; frame 0 is kept", async (dev) => {
  const F = 2, C = 4, h = 8, w = 8;
  const x = randn(F * C * h * w, 5);
  const t = upload(dev, x, [F, C, h, w], "f32");
  // No salient object anywhere: B = 1, so x'_1 = a x_1 + (1 - a) W_1(x_0); with zero motion W is the identity
  // up to the half-pixel shift of the reference grid, which at 8x8 latents rounds to the same pixel.
  const zeros = new Float32Array(F * 64 * 64);
  const y = await (await blendBackground(t, zeros, [0, 1], 0, 0, 0.25)).read();
  const n = C * h * w;
  assertClose(y.subarray(0, n), x.subarray(0, n), { maxAbs: 0 }, "frame 0");
  const want = Float32Array.from({ length: n }, (_, i) => 0.25 * x[n + i] + 0.75 * x[i]);
  assertClose(y.subarray(n), want, { maxAbs: 1e-6 }, "frame 1");
  t.release();
});

gpuTest("smoothing: text2video end to end; the anchor frame is identical with and without it", async (dev) => {
  const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
  try {
    const p = {
      prompt: "a horse",
      videoLength: 3,
      width: 64,
      height: 64,
      steps: 4,
      guidanceScale: 7.5,
      motionX: 12,
      motionY: 12,
    };
    const plain = await text2video(sd, p, new SeededNoise(7));
    let calls = 0;
    const smooth = await text2video(sd, {
      ...p,
      smoothing: {
        strength: 0.4,
        saliency: (frames, count, H, W) => {
          calls++;
          if (frames.length !== count * H * W * 3) throw new Error("saliency got the wrong frame buffer");
          // A centred box is "salient".
          return Promise.resolve(Float32Array.from({ length: count * H * W }, (_, i) => {
            const y = Math.floor(i / W) % H, x = i % W;
            return Math.abs(y - H / 2) < H / 4 && Math.abs(x - W / 2) < W / 4 ? 1 : 0;
          }));
        },
      },
    }, new SeededNoise(7));
    if (calls !== 1) throw new Error(`saliency called ${calls} times`);
    const per = 64 * 64 * 3;
    assertClose(smooth.frames.subarray(0, per), plain.frames.subarray(0, per), { maxAbs: 1e-6 }, "frame 0");
    let diff = 0;
    for (let i = per; i < plain.frames.length; i++) diff = Math.max(diff, Math.abs(smooth.frames[i] - plain.frames[i]));
    if (!(diff > 1e-3)) throw new Error(`smoothing changed nothing in frames 1-2 (max diff ${diff})`);
  } finally {
    sd.dispose();
  }
});
