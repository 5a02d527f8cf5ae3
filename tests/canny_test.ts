// Canny on the GPU (shaders/canny_*.wgsl) against the TypeScript transcription of OpenCV's cv::Canny, which was
// checked pixel for pixel against OpenCV.js 4.5 (cv.Canny, colour and grey, 336 cases incl. the clip below).
// Edges are binary: the GPU must match exactly.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { cannyEdges, cannyReference, cannyStats, cannyVideo, rgbToGray } from "../pipeline/annotators/canny.ts";
import type { Frames } from "../pipeline/media/frames.ts";
import { resizeRGB } from "../pipeline/media/frames.ts";
import { decodeVideo } from "../pipeline/media/decode.ts";
import { gpuTest, rng } from "./util.ts";
import { MEDIA_DIR } from "../fixtures/paths.ts";

const MEDIA = MEDIA_DIR + "/";

/** Shapes, gradients and noise (never flat): a disc, a bar, a diagonal band over a colour ramp. */
function synthFrames(w: number, h: number, count: number, seed: number, noise = 40): Frames {
  const r = rng(seed);
  const data = new Uint8Array(count * w * h * 3);
  for (let f = 0; f < count; f++) {
    const cx = w * r(), cy = h * r(), rad = Math.min(w, h) * (0.15 + 0.3 * r()), band = r() * (w + h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) {
          let v = 30 + 120 * ((x / w + c * 0.37 + f * 0.05) % 1) + 40 * (y / h);
          if ((x - cx) ** 2 + (y - cy) ** 2 < rad * rad) v = 210 - 70 * c;
          if (x > w * 0.6 && y > h * 0.3 && y < h * 0.7) v = 25 + 90 * c;
          if (Math.abs(x + y - band) < 3) v = 250 - v * 0.5;
          v += (r() - 0.5) * noise;
          data[((f * h + y) * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
  }
  return { width: w, height: h, fps: 8, count, data };
}

function frameOf(v: Frames, f: number): Uint8Array {
  const n = v.width * v.height * 3;
  return v.data.subarray(f * n, (f + 1) * n);
}

async function compare(
  dev: Parameters<typeof cannyEdges>[0],
  v: Frames,
  low: number,
  high: number,
  gray: boolean,
  label: string,
): Promise<number> {
  const got = await cannyEdges(dev, v, low, high, { gray });
  const px = v.width * v.height;
  let edges = 0;
  for (let f = 0; f < v.count; f++) {
    const img = gray ? rgbToGray(frameOf(v, f), v.width, v.height) : frameOf(v, f);
    const want = cannyReference(img, v.width, v.height, low, high, gray ? 1 : 3);
    const g = got.subarray(f * px, (f + 1) * px);
    let diff = 0, first = -1;
    for (let i = 0; i < px; i++) {
      if (g[i] !== want[i]) diff++, first = first < 0 ? i : first;
      if (want[i]) edges++;
    }
    if (diff) {
      throw new Error(
        `${label} frame ${f}: ${diff} pixels differ, first at (${first % v.width}, ${Math.floor(first / v.width)})`,
      );
    }
  }
  return edges;
}

const clip = decodeVideo(await Deno.readFile(`${MEDIA}clip_testsrc_128x96_8fps.mp4`), {}, "testsrc");

gpuTest("canny: clip_testsrc 128x96 (16 frames), colour and grey, several thresholds == reference", async (dev) => {
  const v = await clip;
  assertEquals([v.width, v.height, v.count], [128, 96, 16]);
  for (const [lo, hi] of [[100, 200], [50, 150], [20, 60], [180, 90], [10.7, 40.2]]) {
    for (const gray of [false, true]) {
      const edges = await compare(dev, v, lo, hi, gray, `clip ${lo}/${hi} gray=${gray}`);
      assert(edges > 500, `clip ${lo}/${hi}: too few edges to be a meaningful test`);
    }
  }
});

gpuTest("canny: odd sizes and noisy synthetic frames == reference", async (dev) => {
  for (
    const [w, h, n, seed] of [[37, 23, 3, 1], [101, 77, 2, 2], [1, 9, 2, 3], [9, 1, 1, 4], [2, 3, 2, 5], [17, 16, 1, 6]]
  ) {
    const v = synthFrames(w, h, n, seed);
    for (const [lo, hi] of [[100, 200], [30, 90], [0, 40]]) {
      for (const gray of [false, true]) await compare(dev, v, lo, hi, gray, `${w}x${h} ${lo}/${hi} gray=${gray}`);
    }
  }
});

gpuTest("canny: resized clip frame at an odd size (antialiased resize, 131x67)", async (dev) => {
  const v = await clip;
  const w = 131, h = 67;
  const data = new Uint8Array(4 * w * h * 3);
  for (let f = 0; f < 4; f++) resizeRGB(frameOf(v, f * 5), v.height, v.width, h, w, data.subarray(f * w * h * 3));
  const r = { width: w, height: h, fps: 8, count: 4, data };
  for (const gray of [false, true]) assert(await compare(dev, r, 100, 200, gray, "resized") > 100);
});

gpuTest("canny: a long winding weak contour needs many hysteresis passes", async (dev) => {
  // A snake of 4-px bars (contrast 30: weak) seeded only at its start (a ramp up to 255: strong). Its whole
  // outline (~2900 px, across every 16x16 tile) is an edge only through hysteresis.
  const w = 150, h = 130;
  const data = new Uint8Array(w * h * 3).fill(60);
  const set = (x: number, y: number, v: number) => data.fill(v, (y * w + x) * 3, (y * w + x) * 3 + 3);
  const K = 10;
  for (let k = 0; k < K; k++) {
    const y0 = 6 + k * 12;
    for (let y = y0; y < y0 + 4; y++) {
      for (let x = 6; x < w - 6; x++) set(x, y, k === 0 ? Math.round(90 + 165 * Math.max(0, 1 - (x - 6) / 20)) : 90);
    }
    const xs = k % 2 === 0 ? w - 10 : 6;
    for (let y = y0; k + 1 < K && y < y0 + 16; y++) for (let x = xs; x < xs + 4; x++) set(x, y, 90);
  }
  const v = { width: w, height: h, fps: 1, count: 1, data };
  const edges = await compare(dev, v, 40, 200, false, "snake");
  assert(edges > 2500, `snake: ${edges} edges`);
  assert(cannyStats.passes > 4, `snake: converged in ${cannyStats.passes} passes; expected more than one batch`);
  // Without hysteresis (low = high) only the seed is an edge: the propagation really happened.
  const strongOnly = cannyReference(data, w, h, 200, 200, 3).filter((x) => x).length;
  assert(strongOnly < 100, `snake: ${strongOnly} strong pixels`);
});

gpuTest("canny: colour differs from grey, and cannyVideo lays out [F,3,H,W] in {0,1}", async (dev) => {
  const v = await clip;
  const sub: Frames = { ...v, count: 3, data: v.data.subarray(0, 3 * v.width * v.height * 3) };
  const out = await cannyVideo(dev, sub);
  const px = v.width * v.height;
  assertEquals(out.length, 3 * 3 * px);
  const colour = await cannyEdges(dev, sub, 100, 200);
  const grey = await cannyEdges(dev, sub, 100, 200, { gray: true });
  assert(colour.join() !== grey.join(), "colour and grey Canny should differ on testsrc");
  for (let f = 0; f < 3; f++) {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < px; i++) {
        const want = colour[f * px + i] / 255;
        if (out[(f * 3 + c) * px + i] !== want) throw new Error(`cannyVideo layout wrong at f${f} c${c} i${i}`);
      }
    }
  }
  assert(out.some((x) => x === 1) && out.some((x) => x === 0));
});

gpuTest("canny: rejects inconsistent frames and non-finite thresholds", async (dev) => {
  const bad = { width: 4, height: 4, fps: 1, count: 1, data: new Uint8Array(10) };
  let msg = "";
  await cannyVideo(dev, bad).catch((e) => msg = String(e));
  assert(msg.includes("data has 10 bytes"), msg);
  const ok = synthFrames(8, 8, 1, 9);
  msg = "";
  await cannyVideo(dev, ok, NaN, 5).catch((e) => msg = String(e));
  assert(msg.includes("finite"), msg);
});
