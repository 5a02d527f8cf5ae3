// Live previews during a run: made on the GPU every N steps, read back only on those steps (counted at the
// buffer-mapping level), same result and same command buffers per step as a run without previews.
import { join } from "node:path";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";
import type { Device } from "../pipeline/gpu/device.ts";
import { loadControlNet, StableDiffusion } from "../pipeline/models/sd.ts";
import { type Preview, previewEvery, type RunHooks, SeededNoise } from "../pipeline/modes/common.ts";
import { controlVideo } from "../pipeline/modes/controlnet_video.ts";
import { pix2pix } from "../pipeline/modes/pix2pix.ts";
import { text2video } from "../pipeline/modes/text2video.ts";
import { gpuTest, randu } from "./util.ts";

/** Runs `fn` counting buffer maps (every readback maps a buffer) and command buffers. */
async function counted<T>(dev: Device, fn: () => Promise<T>): Promise<{ out: T; maps: number; submits: number }> {
  const proto = GPUBuffer.prototype;
  const orig = proto.mapAsync;
  let maps = 0;
  proto.mapAsync = function (this: GPUBuffer, ...args: Parameters<GPUBuffer["mapAsync"]>) {
    maps++;
    return orig.apply(this, args);
  };
  const submits = dev.submits;
  try {
    const out = await fn();
    return { out, maps, submits: dev.submits - submits };
  } finally {
    proto.mapAsync = orig;
  }
}

async function compare(
  dev: Device,
  run: (hooks: RunHooks) => Promise<{ frames: Float32Array }>,
  every: number,
  frames: number,
): Promise<Preview[]> {
  const plain = await counted(dev, () => run({}));
  const previews: Preview[] = [];
  const shown = await counted(dev, () => run({ preview: { every, onPreview: (p) => previews.push(p) } }));
  assert(previews.length > 0, "no previews");
  assertEquals(shown.maps - plain.maps, previews.length, "readbacks beyond one per preview");
  assertEquals(shown.submits, plain.submits, "previews changed the command buffers per step");
  assert(shown.out.frames.every((v, i) => v === plain.out.frames[i]), "previews changed the result");
  for (const p of previews) {
    assertEquals(p.rgba.length, p.frames * p.width * p.height * 4);
    assert(p.step % every === 0 || p.step === p.total, `preview at step ${p.step}`);
  }
  assertEquals(previews[previews.length - 1].frames, frames);
  return previews;
}

gpuTest("previews: text2video every step (anchor alone, then all frames), every 2 steps", async (dev) => {
  const sd = await StableDiffusion.load(dev, join(GOLDEN_MODELS, "tiny-sd"), { dtype: "f32" });
  try {
    const p = {
      prompt: "a cat",
      videoLength: 3,
      width: 64,
      height: 64,
      steps: 6,
      guidanceScale: 7.5,
      motionX: 2,
      motionY: 2,
    };
    const run = (hooks: RunHooks) => text2video(sd, p, new SeededNoise(3), hooks);
    const every2 = await compare(dev, run, 2, 3);
    const total = every2[0].total;
    const want = Array.from({ length: total }, (_, i) => i + 1).filter((s) => s % 2 === 0 || s === total);
    assertEquals(every2.map((q) => q.step), want);
    const previews = await compare(dev, run, 1, 3);
    assertEquals(previews.length, total);
    assertEquals(previews[0].frames, 1); // the anchor runs alone first
    assertEquals([previews.at(-1)!.width, previews.at(-1)!.height], [8, 8]);
    // The strip is not flat: the preview shows image content.
    const px = previews.at(-1)!.rgba;
    assert(new Set(Array.from(px.filter((_, i) => i % 4 === 0))).size > 4, "flat preview");
  } finally {
    sd.dispose();
  }
});

gpuTest("previews: pix2pix and ControlNet modes", async (dev) => {
  const F = 2, H = 64, W = 64;
  const video = { data: randu(F * 3 * H * W, 4, 0, 1), frames: F, height: H, width: W };
  const p2p = await StableDiffusion.load(dev, join(GOLDEN_MODELS, "tiny-pix2pix"), { dtype: "f32" });
  try {
    const p = { prompt: "snow", steps: 3, guidanceScale: 7.5, imageGuidanceScale: 1.5 };
    const previews = await compare(dev, (hooks) => pix2pix(p2p, video, p, new SeededNoise(5), hooks), 1, F);
    assertEquals(previews.map((q) => q.step), [1, 2, 3]);
  } finally {
    p2p.dispose();
  }
  const sd = await StableDiffusion.load(dev, join(GOLDEN_MODELS, "tiny-sd"), { dtype: "f32" });
  const cn = await loadControlNet(dev, join(GOLDEN_MODELS, "tiny-controlnet"), "f32");
  try {
    const p = { prompt: "a dog", steps: 5, guidanceScale: 7.5, controlScale: 1 };
    const previews = await compare(dev, (hooks) => controlVideo(sd, cn, video, p, new SeededNoise(6), hooks), 2, F);
    assertEquals(previews.map((q) => q.step), [2, 4, 5]);
  } finally {
    sd.dispose();
    cn.dispose();
  }
});

Deno.test("previewEvery: about 10 previews by default", () => {
  assertEquals([previewEvery(50), previewEvery(20), previewEvery(4), previewEvery(50, 3)], [5, 2, 1, 3]);
});

Deno.test("bench --parts previews: one row per precision with runs, previews and the overhead", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tools/bench.ts", "--parts", "previews", "--quick", "--precision", "f32", "--frames", "2"],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith("dtype  steps  previews"));
  assert(at >= 0, text);
  const [dtype, steps, previews, runs, plain, withPreviews, overhead] = lines[at + 2].trim().split(/\s+/);
  assertEquals([dtype, steps, runs], ["f32", "4", "1"]);
  assert(Number(previews) >= 2 && Number(plain) > 0 && Number(withPreviews) > 0, lines[at + 2]);
  assert(/^-?\d+\.\d%$/.test(overhead), overhead);
});
