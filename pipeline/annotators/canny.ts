// Canny edge maps for the canny ControlNet (METHOD §3): cv2.Canny(frame, low, high) with OpenCV's defaults
// (3x3 Sobel, L1 magnitude), on the GPU in four kernels (shaders/canny_*.wgsl), plus a plain TypeScript
// transcription of OpenCV's algorithm as the reference.
//
// Colour: Text2Video-Zero calls cv2.Canny on the uint8 RGB frame itself. OpenCV does not convert a colour
// image to grey there: it runs Sobel per channel and keeps, per pixel, the channel with the largest magnitude.
// That is the default here; `{ gray: true }` converts to grey first (cv2.cvtColor RGB2GRAY, fixed point) instead.
import sobelSrc from "../../shaders/canny_sobel.wgsl" with { type: "text" };
import nmsSrc from "../../shaders/canny_nms.wgsl" with { type: "text" };
import thresholdSrc from "../../shaders/canny_threshold.wgsl" with { type: "text" };
import hysteresisSrc from "../../shaders/canny_hysteresis.wgsl" with { type: "text" };
import { type Binding, type Device, Params } from "../gpu/device.ts";
import { grid1d } from "../ops/launch.ts";
import { checkFrames, type Frames } from "../media/frames.ts";

export interface CannyOptions {
  /** Convert to grey first (cv2.cvtColor RGB2GRAY) instead of OpenCV's per-channel colour gradient. */
  gray?: boolean;
}

/** OpenCV's threshold handling: swapped when low > high, then floored (the magnitudes are integers). */
export function cannyThresholds(low: number, high: number): { low: number; high: number } {
  if (!Number.isFinite(low) || !Number.isFinite(high)) {
    throw new Error(`canny: thresholds must be finite (${low}, ${high})`);
  }
  if (low > high) [low, high] = [high, low];
  return { low: Math.floor(low), high: Math.floor(high) };
}

/** cv2.cvtColor(RGB2GRAY) on 8-bit data: Y = (4899 R + 9617 G + 1868 B + 2^13) >> 14. */
export function rgbToGray(rgb: Uint8Array, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) {
    out[i] = (rgb[3 * i] * 4899 + rgb[3 * i + 1] * 9617 + rgb[3 * i + 2] * 1868 + 8192) >> 14;
  }
  return out;
}

/**
 * cv2.Canny(img, low, high) (apertureSize 3, L2gradient false) on an 8-bit image with `channels` interleaved
 * channels; returns 0/255 like OpenCV. A transcription of modules/imgproc/src/canny.cpp: Sobel with replicated
 * borders, per-pixel channel of largest |dx|+|dy|, non-maximum suppression in the tan(22.5°) sectors with
 * OpenCV's asymmetric comparisons, then hysteresis with a stack from every pixel above `high`.
 */
export function cannyReference(
  img: Uint8Array,
  w: number,
  h: number,
  low: number,
  high: number,
  channels = 1,
): Uint8Array {
  if (img.length < w * h * channels) throw new Error(`cannyReference: ${img.length} bytes for ${w}x${h}x${channels}`);
  const t = cannyThresholds(low, high);
  const cn = channels;
  const at = (x: number, y: number, c: number) =>
    img[((Math.min(Math.max(y, 0), h - 1)) * w + Math.min(Math.max(x, 0), w - 1)) * cn + c];
  // Magnitudes with a zero border, as OpenCV's ring buffer (mag[-1] = mag[cols] = 0, zero rows outside).
  const mw = w + 2;
  const mag = new Int32Array(mw * (h + 2));
  const gx = new Int32Array(w * h), gy = new Int32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let best = -1, bdx = 0, bdy = 0;
      for (let c = 0; c < cn; c++) {
        const dx = at(x + 1, y - 1, c) + 2 * at(x + 1, y, c) + at(x + 1, y + 1, c) -
          (at(x - 1, y - 1, c) + 2 * at(x - 1, y, c) + at(x - 1, y + 1, c));
        const dy = at(x - 1, y + 1, c) + 2 * at(x, y + 1, c) + at(x + 1, y + 1, c) -
          (at(x - 1, y - 1, c) + 2 * at(x, y - 1, c) + at(x + 1, y - 1, c));
        const m = Math.abs(dx) + Math.abs(dy);
        if (m > best) best = m, bdx = dx, bdy = dy;
      }
      mag[(y + 1) * mw + x + 1] = best;
      gx[y * w + x] = bdx;
      gy[y * w + x] = bdy;
    }
  }
  // map: 0 = may be an edge, 1 = cannot be, 2 = edge; one-pixel border of 1s.
  const map = new Uint8Array(mw * (h + 2)).fill(1);
  const stack: number[] = [];
  const TG22 = Math.trunc(0.4142135623730950488016887242097 * (1 << 15) + 0.5);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const j = (y + 1) * mw + x + 1;
      const m = mag[j];
      let push = false;
      if (m > t.low) {
        const xs = gx[y * w + x], ys = gy[y * w + x];
        const ax = Math.abs(xs), ay = Math.abs(ys) * 32768;
        const tg22x = ax * TG22;
        if (ay < tg22x) push = m > mag[j - 1] && m >= mag[j + 1];
        else {
          const tg67x = tg22x + ax * 65536;
          if (ay > tg67x) push = m > mag[j - mw] && m >= mag[j + mw];
          else {
            const s = (xs ^ ys) < 0 ? -1 : 1;
            push = m > mag[j - mw - s] && m > mag[j + mw + s];
          }
        }
      }
      if (!push) map[j] = 1;
      else if (m > t.high) map[j] = 2, stack.push(j);
      else map[j] = 0;
    }
  }
  const nb = [-1, 1, -mw - 1, -mw, -mw + 1, mw - 1, mw, mw + 1];
  while (stack.length) {
    const j = stack.pop()!;
    for (const d of nb) {
      if (map[j + d] === 0) map[j + d] = 2, stack.push(j + d);
    }
  }
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) out[y * w + x] = map[(y + 1) * mw + x + 1] === 2 ? 255 : 0;
  }
  return out;
}

/** Hysteresis statistics of the last cannyEdges call (for tests and the bench). */
export const cannyStats = { passes: 0, checks: 0 };

/** Edge maps [F, H, W], 255 on edges, 0 elsewhere (cv2.Canny's output for every frame). */
export async function cannyEdges(
  dev: Device,
  frames: Frames,
  low = 100,
  high = 200,
  opts: CannyOptions = {},
): Promise<Uint8Array> {
  checkFrames(frames, "cannyEdges");
  const t = cannyThresholds(low, high);
  const { width: w, height: h, count } = frames;
  const px = w * h;
  const gray = !!opts.gray;
  const kSobel = dev.kernel("canny_sobel", sobelSrc, { GRAY: gray });
  const kNms = dev.kernel("canny_nms", nmsSrc);
  const kThr = dev.kernel("canny_threshold", thresholdSrc);
  const kHys = dev.kernel("canny_hysteresis", hysteresisSrc);
  // Frames per chunk: every buffer stays under the binding limit (and 64 MiB, to bound memory).
  const cap = Math.min(dev.maxBinding, 64 << 20);
  const per = Math.max(1, Math.floor(cap / (px * 4)));
  if (px * 4 > dev.maxBinding) throw new Error(`cannyEdges: a ${w}x${h} frame exceeds this GPU's binding limit`);
  const chunk = Math.min(count, per, dev.gpu.limits.maxComputeWorkgroupsPerDimension);
  const out = new Uint8Array(count * px);
  const buf = (bytes: number): Binding => ({
    buffer: dev.pool.acquire(bytes),
    offset: 0,
    size: Math.ceil(bytes / 4) * 4,
  });
  const src = buf(chunk * px * 3), grad = buf(chunk * px * 4), nms = buf(chunk * px * 4), state = buf(chunk * px * 4);
  const flag = buf(4), zero = buf(4);
  dev.write(zero.buffer, 0, new Uint32Array([0]));
  const pWH = new Params().u(w, h);
  const tiles: [number, number, number] = [Math.ceil(w / 16), Math.ceil(h / 16), 0];
  cannyStats.passes = 0, cannyStats.checks = 0;
  try {
    for (let f0 = 0; f0 < count; f0 += chunk) {
      const nf = Math.min(chunk, count - f0);
      const n = nf * px;
      dev.write(src.buffer, 0, frames.data.subarray(f0 * px * 3, (f0 + nf) * px * 3));
      const sz = (b: Binding, bytes: number): Binding => ({ ...b, size: Math.ceil(bytes / 4) * 4 });
      const srcB = sz(src, n * 3), gradB = sz(grad, n * 4), nmsB = sz(nms, n * 4), stateB = sz(state, n * 4);
      const groups: [number, number, number] = [tiles[0], tiles[1], nf];
      dev.dispatch(kSobel, pWH, [srcB, gradB], groups);
      dev.dispatch(kNms, pWH, [gradB, nmsB], groups);
      const g = grid1d(n, 256);
      dev.dispatch(kThr, new Params().u(n, g.row).i(t.low, t.high), [nmsB, stateB], g.groups);
      // Hysteresis: batches of passes; the flag is cleared before each batch's last pass, so a zero flag means
      // that pass changed nothing (the state is final). Batches grow to keep read-backs few on long edges.
      for (let batch = 4;; batch = Math.min(batch * 2, 32)) {
        for (let k = 0; k < batch; k++) {
          if (k === batch - 1) dev.copy(zero, flag);
          dev.dispatch(kHys, pWH, [stateB, flag], groups);
        }
        cannyStats.passes += batch, cannyStats.checks++;
        const changed = new Uint32Array(await dev.read(flag))[0];
        if (!changed) break;
        if (cannyStats.passes > w * h + 64) throw new Error("cannyEdges: hysteresis did not converge (GPU error?)");
      }
      const st = new Uint32Array(await dev.read(stateB), 0, n);
      for (let i = 0; i < n; i++) out[f0 * px + i] = st[i] === 2 ? 255 : 0;
    }
  } finally {
    dev.flush();
    for (const b of [src, grad, nms, state, flag, zero]) dev.pool.release(b.buffer);
  }
  return out;
}

/**
 * Control images for the canny ControlNet: [F, 3, H, W] float32, 1 on edges and 0 elsewhere (cv2.Canny, HWC3,
 * divided by 255, as Text2Video-Zero's pre_process_canny).
 */
export async function cannyVideo(
  dev: Device,
  frames: Frames,
  low = 100,
  high = 200,
  opts: CannyOptions = {},
): Promise<Float32Array> {
  const edges = await cannyEdges(dev, frames, low, high, opts);
  const px = frames.width * frames.height;
  const out = new Float32Array(frames.count * 3 * px);
  for (let f = 0; f < frames.count; f++) {
    for (let i = 0; i < px; i++) {
      if (edges[f * px + i]) {
        const o = f * 3 * px + i;
        out[o] = out[o + px] = out[o + 2 * px] = 1;
      }
    }
  }
  return out;
}
