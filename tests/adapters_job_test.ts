// LoRA, embeddings, previews and PNG frames through the job runner (every mode) and the command line: the request
// fields, the errors that name them, and what lands on disk.
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../fixtures/asserts.ts";
import { GOLDEN_MODELS, MEDIA_DIR } from "../fixtures/paths.ts";
import { encodeSafetensors, f32 } from "../fixtures/safetensors_writer.ts";
import { RequestError } from "../pipeline/errors.ts";
import type { Device } from "../pipeline/gpu/device.ts";
import { type JobPreview, runJob } from "../pipeline/job/run.ts";
import type { JobRequest } from "../pipeline/job/types.ts";
import { decodeVideo } from "../pipeline/media/decode.ts";
import { zipEntries } from "../pipeline/media/zip.ts";
import { ModelCache } from "../pipeline/model_cache.ts";
import { kohyaFile, makePairs, peftFile, TINY } from "./lora_files.ts";
import { diff, gpuTest, randn } from "./util.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "zerovid-adapters-" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

const KOHYA = join(tmp, "style.safetensors"), PEFT = join(tmp, "peft.safetensors");
const EMB = join(tmp, "mystyle.safetensors"), WIDE = join(tmp, "wide.safetensors"), SD2 = join(tmp, "sd2.safetensors");
await Deno.writeFile(KOHYA, kohyaFile(await makePairs(400, 4, 4)));
await Deno.writeFile(PEFT, peftFile(await makePairs(500, 2)));
await Deno.writeFile(EMB, encodeSafetensors({ emb_params: f32(randn(2 * 32, 9, 0.5), [2, 32]) }));
await Deno.writeFile(WIDE, encodeSafetensors({ emb_params: f32(randn(768, 9), [1, 768]) }));
const K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
await Deno.writeFile(
  SD2,
  encodeSafetensors({
    [`${K}.lora_down.weight`]: f32(randn(4 * 1024, 1), [4, 1024]),
    [`${K}.lora_up.weight`]: f32(randn(32 * 4, 2), [32, 4]),
  }),
);

const video = await Deno.readFile(join(
  MEDIA_DIR,
  (await Array.fromAsync(Deno.readDir(MEDIA_DIR)))
    .map((e) => e.name).filter((n) => n.endsWith(".mp4")).sort()[0],
));

const BASE: Record<string, Partial<JobRequest>> = {
  text2video: { model: TINY, videoLength: 2, width: 64, height: 64, steps: 3 },
  pix2pix: { model: join(GOLDEN_MODELS, "tiny-pix2pix"), video, videoLength: 2, resolution: 64, steps: 2 },
  canny: { model: TINY, controlnet: join(GOLDEN_MODELS, "tiny-controlnet"), video, videoLength: 2, resolution: 64 },
};

async function job(dev: Device, models: ModelCache, mode: string, extra: Partial<JobRequest> = {}) {
  const frames: Float32Array[] = [], previews: JobPreview[] = [];
  const req = { mode, prompt: "a mystyle cat", seed: 3, steps: 2, precision: "f32", ...BASE[mode], ...extra };
  const r = await runJob({ dev, models }, req as JobRequest, {
    onFrames: (f) => frames.push(f.slice()),
    onPreview: extra.previewEvery ? (p) => previews.push(p) : undefined,
  });
  return { r, frames: frames[0], previews };
}

gpuTest(
  "runJob: LoRAs and embeddings in every kind of mode, previews, PNG frames; the base is unchanged",
  async (dev) => {
    const models = new ModelCache(dev);
    try {
      for (const mode of Object.keys(BASE)) {
        const base = await job(dev, models, mode);
        const styled = await job(dev, models, mode, {
          loras: [{ name: KOHYA, scale: 0.7 }, { name: PEFT }],
          embeddings: [EMB],
          format: "png",
          previewEvery: 1,
        });
        assert(diff(styled.frames, base.frames).maxAbs > 0.02, `${mode}: LoRA and embedding changed nothing`);
        const again = await job(dev, models, mode);
        assert(again.frames.every((v, i) => v === base.frames[i]), `${mode}: the base model changed after a LoRA job`);
        assertEquals(styled.r.params.loras, [{ name: KOHYA, scale: 0.7 }, { name: PEFT, scale: 1 }]);

        // PNG frames: the zip holds exactly the frames, each the job's frame losslessly.
        const { r } = styled;
        assertEquals([r.format, r.contentType], ["png", "application/zip"]);
        const entries = zipEntries(r.bytes);
        assertEquals(entries.map((e) => e.name), r.images!.map((e) => e.name));
        assertEquals(entries.map((e) => e.name), Array.from({ length: r.frames }, (_, i) => `frame_000${i + 1}.png`));
        const first = await decodeVideo(entries[0].data, {}, "frame.png");
        const want = styled.frames.subarray(0, r.width * r.height * 3);
        assert(first.data.every((v, i) => v === Math.min(255, Math.max(0, Math.round(want[i] * 255)))), "lossy PNG");

        // Previews: one per step, a strip of all frames at the end.
        assert(styled.previews.length >= 2, `${mode}: ${styled.previews.length} previews`);
        const last = styled.previews.at(-1)!;
        assertEquals([last.step, last.frames], [last.total, r.frames]);
        assert(last.image.startsWith("data:image/png;base64,"));
        const strip = await decodeVideo(last.png, {}, "preview.png");
        assertEquals([strip.width, strip.height], [last.frames * last.width, last.height]);
        assertEquals(base.previews.length, 0);
      }
      assertEquals(models.loads, 3); // tiny-sd, tiny-pix2pix, tiny-controlnet: LoRAs never reload a model

      // Files that do not fit: refused naming the field and an example key or the width.
      const e1 = await assertRejects(() => job(dev, models, "text2video", { loras: [{ name: SD2 }] }), RequestError, K);
      assertEquals(e1.field, "loras");
      const e2 = await assertRejects(() => job(dev, models, "text2video", { embeddings: [WIDE] }), RequestError, "768");
      assertEquals(e2.field, "embeddings");
      const e3 = await assertRejects(() => job(dev, models, "text2video", { loras: [{ name: EMB }] }), RequestError);
      assertEquals(e3.field, "loras");
    } finally {
      models.dispose();
    }
  },
);

async function cli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("CLI: --lora PATH:SCALE (repeated), --embedding, --out DIR/ writes PNG frames, --preview FILE.png", async () => {
  const dir = join(tmp, "frames") + "/", preview = join(tmp, "preview.png");
  const common = ["text2video", "--model", TINY, "--video-length", "3", "--width", "64", "--height", "64"];
  const r = await cli([
    ...common,
    ...["--steps", "3", "--prompt", "a mystyle cat", "--precision", "f32"],
    ...["--lora", `${KOHYA}:0.5`, "--lora", PEFT, "--embedding", EMB, "--out", dir, "--preview", preview],
  ]);
  assertEquals(r.code, 0, r.stderr);
  const files = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  assertEquals(files, ["frame_0001.png", "frame_0002.png", "frame_0003.png"]);
  const f = await decodeVideo(await Deno.readFile(join(dir, files[0])), {}, "f.png");
  assertEquals([f.width, f.height], [64, 64]);
  const p = await decodeVideo(await Deno.readFile(preview), {}, "p.png");
  assertEquals([p.width, p.height], [3 * 8, 8]);

  const bad = await cli([...common, "--prompt", "x", "--lora", SD2]);
  assertEquals(bad.code, 2, bad.stderr);
  assert(bad.stderr.includes("--lora:") && bad.stderr.includes(K), bad.stderr);
  const wide = await cli([...common, "--prompt", "x", "--embedding", WIDE]);
  assertEquals(wide.code, 2, wide.stderr);
  assert(wide.stderr.includes("--embedding:") && wide.stderr.includes("width 768"), wide.stderr);
  const scale = await cli([...common, "--prompt", "x", "--lora", `${KOHYA}:99`]);
  assertEquals(scale.code, 2, scale.stderr);
  assert(scale.stderr.includes("--lora:") && scale.stderr.includes("scale"), scale.stderr);
  const help = await cli(["text2video", "--help"]);
  for (const opt of ["--lora PATH[:SCALE]", "--embedding PATH", "--preview-every N", "--preview FILE.png"]) {
    assert(help.stdout.includes(opt), `--help lacks ${opt}`);
  }
});
