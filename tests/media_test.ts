// Video in/out through ffmpeg.wasm: the shared test clips decode to the sizes and counts their README states,
// frame sampling matches Text2Video-Zero's prepare_video (indices computed with numpy), synthetic clips survive
// an mp4/gif/webm round trip, and bad input fails with a clear message.
import assert from "node:assert/strict";
import { decodeVideo, sampleIndices } from "../pipeline/media/decode.ts";
import { encodeVideo, type VideoFormat } from "../pipeline/media/encode.ts";
import { newFFmpeg } from "../pipeline/media/ffmpeg.ts";
import {
  fitSize,
  floatToFrames,
  type Frames,
  framesToFloat,
  padToEven,
  resizeFrames,
  resizeRGB,
} from "../pipeline/media/frames.ts";
import { probeFile, probeVideo } from "../pipeline/media/probe.ts";
import { MEDIA_DIR } from "../fixtures/paths.ts";
import { RequestError } from "../pipeline/errors.ts";

const MEDIA = MEDIA_DIR + "/";
const read = (f: string) => Deno.readFile(MEDIA + f);

/** The README's clip table: "- `file` — codec..., WxH, N fps, M frames." */
async function readmeClips() {
  const text = await Deno.readTextFile(MEDIA + "README.md");
  const re = /^- `([^`]+)` — (.+?), (\d+)x(\d+), (\d+) fps, (\d+) frames/gm;
  return [...text.matchAll(re)].map((m) => ({
    file: m[1],
    codec: m[2].toLowerCase().replace(/[^a-z0-9]/g, ""),
    width: Number(m[3]),
    height: Number(m[4]),
    fps: Number(m[5]),
    frames: Number(m[6]),
  }));
}

function psnr(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s === 0 ? Infinity : 10 * Math.log10((255 * 255) / (s / a.length));
}

/** Frame i of f as its own buffer. */
const frameOf = (f: Frames, i: number) => f.data.subarray(i * f.height * f.width * 3, (i + 1) * f.height * f.width * 3);

/** A diagonal gradient that moves each frame, with a bright square that moves the other way. */
function movingGradient(count: number, height: number, width: number, fps: number): Frames {
  const data = new Uint8Array(count * height * width * 3);
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const p = ((i * height + y) * width + x) * 3;
        const sq = Math.abs(x - (width - 1 - 6 * i) + 0) < 12 && Math.abs(y - height / 2) < 12;
        data[p] = sq ? 250 : (x * 200 / width + 6 * i) & 255;
        data[p + 1] = sq ? 240 : 30 + y * 180 / height;
        data[p + 2] = sq ? 40 : ((x + y) * 120 / (width + height) + 10 * i) & 255;
      }
    }
  }
  return { width, height, fps, count, data };
}

Deno.test("README clips decode to their stated size and frame count; probe agrees", async () => {
  const clips = await readmeClips();
  assert.equal(clips.length, 4, "README table parsed");
  for (const c of clips) {
    const bytes = await read(c.file);
    const info = await probeVideo(bytes, c.file);
    assert.deepEqual([info.width, info.height, info.frames, info.fps], [c.width, c.height, c.frames, c.fps], c.file);
    assert.ok(c.codec.includes(info.codec), `${c.file}: codec ${info.codec} vs README ${c.codec}`);
    const f = await decodeVideo(bytes, {}, c.file);
    assert.deepEqual([f.width, f.height, f.count, f.fps], [c.width, c.height, c.frames, c.fps], c.file);
    assert.equal(f.data.length, c.frames * c.height * c.width * 3);
    // Real pictures, not a flat colour (the bars clip is static, so motion is checked in the round trip).
    assert.ok(new Set(frameOf(f, 0)).size > 1, `${c.file}: first frame is flat`);
  }
});

Deno.test("sampleIndices reproduces prepare_video's numpy indices", () => {
  // Expected values from numpy 2.4 running the reference's formula.
  const cases: [number, number, { start?: number; end?: number; fps?: number }, number, number[]][] = [
    [25, 25, { start: 0.2, end: 0.6, fps: 10 }, 10, [5, 8, 11]], // (0.6-0.2)*10 = 3.9999999999999996 -> 3
    [16, 8, { fps: 3 }, 3, [0, 2, 5, 8, 10, 13]],
    [16, 8, { start: 0.5, end: -1, fps: -1 }, 8, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]],
    [15, 10, { end: 0.95, fps: 7 }, 7, [0, 1, 3, 4, 6, 7]],
    [12, 6, { start: 0.3, end: 1.7, fps: 4 }, 4, [1, 2, 4, 6, 8]],
    [25, 25, { fps: 50 }, 50, Array.from({ length: 50 }, (_, i) => i >> 1)],
  ];
  for (const [len, fps, opts, outFps, want] of cases) {
    assert.deepEqual(sampleIndices(len, fps, opts), { indices: want, fps: outFps }, JSON.stringify([len, fps, opts]));
  }
  // NTSC: -1 means int(29.97) = 29 fps, so one frame in 30 is dropped, exactly as the reference does.
  const ntsc = sampleIndices(300, 30000 / 1001, { fps: -1 });
  assert.equal(ntsc.fps, 29);
  assert.equal(ntsc.indices.length, 290);
  assert.deepEqual([ntsc.indices[28], ntsc.indices[29], ntsc.indices.at(-1)], [28, 30, 298]);
  // No options: every frame at the exact source rate.
  assert.deepEqual(sampleIndices(5, 29.97), { indices: [0, 1, 2, 3, 4], fps: 29.97 });
  assert.throws(() => sampleIndices(25, 25, { start: 2 }), /start: must be before the end \(1s/);
  assert.throws(() => sampleIndices(25, 25, { start: 0.5, end: 0.51, fps: 1 }), /selects no frames/);
});

Deno.test("fitSize: longer side = resolution, sides rounded to multiples of 64 with numpy's half-to-even", () => {
  assert.deepEqual(fitSize(120, 160, 512), { height: 384, width: 512 });
  assert.deepEqual(fitSize(96, 128, 128), { height: 128, width: 128 }); // 1.5 -> 2
  assert.deepEqual(fitSize(320, 1024, 512), { height: 128, width: 512 }); // 2.5 -> 2
  assert.deepEqual(fitSize(448, 1024, 512), { height: 256, width: 512 }); // 3.5 -> 4
  assert.deepEqual(fitSize(1080, 1920, 512), { height: 256, width: 512 }); // 4.5 -> 4
  assert.throws(() => fitSize(10, 1000, 512), /too small/);
});

Deno.test("resizeRGB matches PyTorch's antialiased bilinear weights", () => {
  const row = (vals: number[]) => new Uint8Array(vals.flatMap((v) => [v, v, v]));
  const px = (img: Uint8Array) => [...img].filter((_, i) => i % 3 === 0);
  // Downscale x2: taps (1,3,3,1)/8 inside, renormalised at the borders (values worked out from the kernel).
  assert.deepEqual(px(resizeRGB(row([0, 10, 20, 30, 40, 50, 60, 70]), 1, 8, 1, 4)), [7, 25, 45, 63]);
  // Upscale x2: plain bilinear with half-pixel centres.
  assert.deepEqual(px(resizeRGB(row([0, 100]), 1, 2, 1, 4)), [0, 25, 75, 100]);
  // Separable: a vertical ramp resized in both directions keeps constant rows.
  const img = new Uint8Array(6 * 4 * 3).map((_, i) => Math.floor(i / 12) * 40);
  const out = resizeRGB(img, 6, 4, 3, 5);
  for (let y = 0; y < 3; y++) assert.equal(new Set(out.subarray(y * 15, y * 15 + 15)).size, 1);
  assert.deepEqual([out[0], out[15], out[30]], [29, 100, 171]);
});

Deno.test("framesToFloat / floatToFrames / padToEven", () => {
  const f = movingGradient(2, 5, 7, 4);
  const x = framesToFloat(f);
  assert.equal(x.length, 2 * 5 * 7 * 3);
  assert.ok(x.every((v) => v >= 0 && v <= 1));
  assert.deepEqual(floatToFrames(x, 2, 5, 7, 4), f);
  const clamped = floatToFrames(new Float32Array([-0.5, 1.5, 0.5, NaN, 0.001, 0.999]), 1, 1, 2, 1);
  assert.deepEqual([...clamped.data], [0, 255, 128, 0, 0, 255]);
  assert.throws(() => floatToFrames(x, 3, 5, 7, 4), /expected/);
  const p = padToEven(f);
  assert.deepEqual([p.width, p.height], [8, 6]);
  for (let i = 0; i < 2; i++) {
    for (let y = 0; y < 6; y++) {
      for (let xx = 0; xx < 8; xx++) {
        const s = ((i * 5 + Math.min(y, 4)) * 7 + Math.min(xx, 6)) * 3, d = ((i * 6 + y) * 8 + xx) * 3;
        assert.deepEqual([...p.data.subarray(d, d + 3)], [...f.data.subarray(s, s + 3)]);
      }
    }
  }
});

Deno.test("decode options: start/end/fps pick the reference's frames, resolution/size resize, maxFrames caps", async () => {
  const name = "clip_bars_audio_160x120_25fps.mp4";
  const bytes = await read(name);
  const all = await decodeVideo(bytes, {}, name);
  // Frame k of `got` must be exactly frame idx[k] of the full decode.
  const same = (got: Frames, idx: number[]) =>
    idx.forEach((i, k) => assert.deepEqual(frameOf(got, k), frameOf(all, i)));

  const a = await decodeVideo(bytes, { start: 0.2, end: 0.6, fps: 10 }, name);
  assert.deepEqual([a.count, a.fps, a.width, a.height], [3, 10, 160, 120]);
  same(a, [5, 8, 11]);

  const up = await decodeVideo(bytes, { fps: 50, maxFrames: 7 }, name); // repeats frames, then caps
  assert.deepEqual([up.count, up.fps], [7, 50]);
  same(up, [0, 0, 1, 1, 2, 2, 3]);

  const r = await decodeVideo(bytes, { resolution: 512, start: 0.5 }, name);
  assert.deepEqual([r.count, r.fps, r.width, r.height], [12, 25, 512, 384]);
  const idx = sampleIndices(25, 25, { start: 0.5 }).indices; // [12, 13, 14, ..., 23]: 13 frames span, 12 taken
  assert.deepEqual([idx[0], idx[1], idx.at(-1)], [12, 13, 23]);
  const picked = new Uint8Array(idx.flatMap((i) => [...frameOf(all, i)]));
  assert.deepEqual(r.data, resizeFrames({ ...all, count: 12, data: picked }, 384, 512).data);

  const s = await decodeVideo(bytes, { width: 64, height: 48, end: 0.2 }, name);
  assert.deepEqual([s.count, s.width, s.height], [5, 64, 48]);
  const w = await decodeVideo(bytes, { width: 80, maxFrames: 2 }, name);
  assert.deepEqual([w.count, w.width, w.height], [2, 80, 60]);

  // GIF and VP9 webm through the same path.
  const g = await decodeVideo(await read("clip_life_64_6fps.gif"), { fps: 3, resolution: 128 });
  assert.deepEqual([g.count, g.fps, g.width, g.height], [6, 3, 128, 128]);
  const v = await decodeVideo(await read("clip_mandelbrot_96_10fps.webm"), { start: 1, fps: 4 });
  assert.deepEqual([v.count, v.width, v.height], [2, 96, 96]);

  await assert.rejects(
    decodeVideo(bytes, { start: 1.5 }, name),
    (e) => e instanceof RequestError && e.field === "start" && /must be before the end/.test(e.message),
  );
  await assert.rejects(decodeVideo(bytes, { resolution: 0 }, name), /resolution must be a positive integer/);
});

Deno.test("rotated mp4: frames come out turned as the player would show them", async () => {
  const src = await read("clip_testsrc_128x96_8fps.mp4");
  const job = await newFFmpeg();
  job.fs.writeFile("/in.mp4", src);
  assert.equal(job.exec(["-i", "/in.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90", "/rot.mp4"]), 0);
  const rot = job.fs.readFile("/rot.mp4");
  const info = await probeVideo(rot);
  assert.deepEqual([info.width, info.height, info.frames], [96, 128, 16]);
  const [a, b] = [await decodeVideo(src), await decodeVideo(rot)];
  assert.deepEqual([b.width, b.height, b.count], [96, 128, 16]);
  // Display-matrix rotation +90 is counterclockwise (FFmpeg's convention; decord applies the same matrix):
  // out(y, x) = in(x, W-1-y).
  const turned = new Uint8Array(a.data.length);
  for (let i = 0; i < 16; i++) {
    for (let y = 0; y < 128; y++) {
      for (let x = 0; x < 96; x++) {
        const s = ((i * 96 + x) * 128 + (127 - y)) * 3, d = ((i * 128 + y) * 96 + x) * 3;
        turned.set(a.data.subarray(s, s + 3), d);
      }
    }
  }
  assert.ok(psnr(b.data, turned) > 40, `rotation PSNR ${psnr(b.data, turned)}`);
});

Deno.test("avi (MPEG-4 Part 2) and mov containers decode", async () => {
  const src = await read("clip_testsrc_128x96_8fps.mp4");
  const ref = await decodeVideo(src);
  for (
    const [name, codec, args] of [["out.avi", "mpeg4", ["-c:v", "mpeg4", "-q:v", "2"]], ["out.mov", "h264", [
      "-c",
      "copy",
    ]]] as const
  ) {
    const job = await newFFmpeg(); // one exec per instance: a reused instance can corrupt its memory
    job.fs.writeFile("/in.mp4", src);
    assert.equal(job.exec(["-i", "/in.mp4", ...args, "/" + name]), 0);
    const bytes = job.fs.readFile("/" + name);
    const info = await probeVideo(bytes, name);
    assert.deepEqual([info.width, info.height, info.frames, info.fps, info.codec], [128, 96, 16, 8, codec], name);
    const f = await decodeVideo(bytes, {}, name);
    assert.equal(f.count, 16);
    assert.ok(psnr(f.data, ref.data) > 30, `${name}: PSNR ${psnr(f.data, ref.data)}`);
  }
});

Deno.test("round trip: mp4, gif and webm keep size, count, fps and content", async () => {
  const src = movingGradient(16, 192, 256, 8);
  const min: Record<VideoFormat, number> = { mp4: 33, webm: 32, gif: 26 };
  for (const fmt of ["mp4", "gif", "webm"] as const) {
    const progress: number[] = [];
    const bytes = await encodeVideo(src, fmt, { onProgress: (p) => progress.push(p) });
    assert.ok(progress.length > 0 && progress.at(-1) === 1, `${fmt}: progress ${progress}`);
    assert.ok(progress.every((p, i) => p >= 0 && p <= 1 && (i === 0 || p >= progress[i - 1])), `${fmt} progress`);
    const info = await probeVideo(bytes, `x.${fmt}`);
    assert.deepEqual([info.width, info.height, info.frames], [256, 192, 16], fmt);
    assert.ok(Math.abs(info.fps - 8) < 0.2, `${fmt}: fps ${info.fps}`); // GIF delays are whole 1/100 s
    assert.equal(info.codec, { mp4: "h264", gif: "gif", webm: "vp8" }[fmt]);
    const back = await decodeVideo(bytes, {}, `x.${fmt}`);
    assert.deepEqual([back.width, back.height, back.count], [256, 192, 16]);
    const q = psnr(back.data, src.data);
    // A control: the same clip two frames later must score far lower, so the threshold proves alignment.
    const shifted = psnr(back.data.subarray(2 * 192 * 256 * 3), src.data.subarray(0, 14 * 192 * 256 * 3));
    assert.ok(q >= min[fmt], `${fmt}: PSNR ${q.toFixed(2)} dB < ${min[fmt]}`);
    assert.ok(shifted < min[fmt] - 3, `${fmt}: shifted PSNR ${shifted.toFixed(2)} dB is too close`);
  }
});

Deno.test("mp4 with odd size is padded to even; other formats keep it", async () => {
  const src = movingGradient(4, 33, 47, 5);
  const mp4 = await probeVideo(await encodeVideo(src, "mp4"));
  assert.deepEqual([mp4.width, mp4.height, mp4.frames], [48, 34, 4]);
  const webm = await probeVideo(await encodeVideo(src, "webm"));
  assert.deepEqual([webm.width, webm.height, webm.frames], [47, 33, 4]);
});

Deno.test("bad input gives a clear error", async () => {
  const noise = new Uint8Array(4096);
  let s = 12345;
  for (let i = 0; i < noise.length; i++) noise[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  await assert.rejects(decodeVideo(noise, {}, "noise.bin"), /"noise.bin": not a recognized video file/);
  await assert.rejects(probeVideo(new TextEncoder().encode("just some text\n"), "a.mp4"), /not a recognized video/);
  await assert.rejects(decodeVideo(new Uint8Array(0), {}, "empty.mp4"), /"empty.mp4": empty file/);

  const mp4 = await read("clip_testsrc_128x96_8fps.mp4"); // index at the end: a cut file has none
  await assert.rejects(decodeVideo(mp4.slice(0, mp4.length >> 1), {}, "cut.mp4"), /truncated .*moov/);
  const fast = await encodeVideo(movingGradient(8, 64, 64, 8), "mp4"); // +faststart: index first, data cut
  await assert.rejects(decodeVideo(fast.slice(0, (fast.length * 0.6) | 0), {}, "cut2.mp4"), /truncated/);
  await assert.rejects(decodeVideo(fast.slice(0, fast.length - 1), {}, "cut3.mp4"), /truncated/);
  const gif = await read("clip_life_64_6fps.gif");
  await assert.rejects(decodeVideo(gif.slice(0, gif.length - 1500), {}, "cut.gif"), /truncated/);
  const webm = await read("clip_mandelbrot_96_10fps.webm");
  await assert.rejects(probeVideo(webm.slice(0, webm.length >> 1), "cut.webm"), /truncated/);

  // A valid media file without video: 0.1 s of 8 kHz 16-bit mono WAV.
  const wav = new Uint8Array(44 + 1600);
  const dv = new DataView(wav.buffer);
  new TextEncoder().encodeInto("RIFF\0\0\0\0WAVEfmt ", wav);
  dv.setUint32(4, wav.length - 8, true);
  dv.setUint32(16, 16, true);
  dv.setUint16(20, 1, true);
  dv.setUint16(22, 1, true);
  dv.setUint32(24, 8000, true);
  dv.setUint32(28, 16000, true);
  dv.setUint16(32, 2, true);
  dv.setUint16(34, 16, true);
  new TextEncoder().encodeInto("data", wav.subarray(36));
  dv.setUint32(40, 1600, true);
  await assert.rejects(decodeVideo(wav, {}, "tone.wav"), /"tone.wav": no video stream/);

  const f = movingGradient(2, 16, 16, 4);
  await assert.rejects(encodeVideo(f, "avi" as VideoFormat), /unsupported output format "avi"/);
  await assert.rejects(encodeVideo({ ...f, count: 3 }, "mp4"), /expected/);
});

Deno.test("probeFile (an upload on disk, read where FFmpeg seeks) says exactly what probeVideo says of the bytes", async () => {
  const noise = new Uint8Array(64 * 1024);
  let s = 777;
  for (let i = 0; i < noise.length; i++) noise[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  const mp4 = await read("clip_testsrc_128x96_8fps.mp4"); // index at the end: the demuxer seeks back and forth
  const fast = await encodeVideo(movingGradient(8, 64, 64, 8), "mp4"); // index first
  const gif = await read("clip_life_64_6fps.gif");
  const webm = await read("clip_mandelbrot_96_10fps.webm");
  const cases: [string, Uint8Array][] = [
    ...(await readmeClips()).map((c) => [c.file, null] as unknown as [string, Uint8Array]),
    ["fast.mp4", fast],
    ["cut.mp4", mp4.slice(0, mp4.length >> 1)],
    ["cut2.mp4", fast.slice(0, (fast.length * 0.6) | 0)],
    ["cut.gif", gif.slice(0, gif.length - 1500)],
    ["cut.webm", webm.slice(0, webm.length >> 1)],
    ["noise.bin", noise],
    ["a.mp4", new TextEncoder().encode("just some text\n")],
  ];
  const dir = await Deno.makeTempDir({ prefix: "zerovid-probe-" });
  try {
    let ok = 0;
    for (const [name, given] of cases) {
      const bytes = given ?? await read(name);
      const path = `${dir}/upload`;
      await Deno.writeFile(path, bytes);
      const [a, b] = await Promise.allSettled([probeVideo(bytes, name), probeFile(path, name)]);
      if (a.status === "fulfilled") {
        assert.equal(b.status, "fulfilled", `${name}: ${b.status === "rejected" ? b.reason : ""}`);
        assert.deepEqual((b as PromiseFulfilledResult<unknown>).value, a.value, name);
        ok++;
      } else {
        assert.equal(b.status, "rejected", `${name}: probeVideo failed (${a.reason}) but probeFile did not`);
        assert.equal(String((b as PromiseRejectedResult).reason), String(a.reason), name);
      }
    }
    assert.equal(ok, 5, "the four clips and the faststart mp4 probe");
    await Deno.writeFile(`${dir}/empty`, new Uint8Array(0));
    await assert.rejects(probeFile(`${dir}/empty`, "empty.mp4"), /"empty.mp4": empty file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
