// OpenPose skeleton control images from the OpenPose body model (body_pose_model: outputs PAFs [1, 38, h, w] and
// heatmaps [1, 19, h, w] at stride 8), following ControlNet's annotator/openpose (body.py, util.py):
//   BGR frame, resized by 0.5*368/H (bicubic), padded right/down to a multiple of 8 with 128, x/256 - 0.5;
//   outputs upsampled x8 (bicubic), padding cropped, resized to the frame (bicubic);
//   peaks: gaussian_filter(sigma 3) local maxima above 0.1; limbs: PAF line integral over 10 samples
//   (> 0.05 at more than 8, mean + distance prior > 0), greedy matching, people assembled from limbs, people
//   with < 4 parts or mean score < 0.4 dropped; drawn as draw_bodypose: radius-4 dots, then 17 limbs as
//   ellipses of half-width 4 blended 0.4/0.6 over the canvas.
// Checked against OpenCV.js 4.5 during development: the float bicubic resize matches cv2.resize to ~1e-6, the
// polygon fill matched cv2.fillConvexPoly on 300 random limb ellipses and the radius-4 dot cv2.circle exactly.
// Known difference: the 8-bit frame resize runs in float (OpenCV's uint8 path is fixed point): +-1 level on a
// few % of the network's input pixels. A model with a fixed input size gets the frame resized to exactly that
// size (no padding).
// Text2Video-Zero's pose mode itself takes already-rendered skeleton videos (METHOD §3); this is for raw videos.
import { checkFrames, type Frames } from "../media/frames.ts";
import { imageInputSize, loadOnnx, OnnxError, type OnnxModel, type OnnxOptions, type OnnxTensor } from "./onnx.ts";

/** 1-based keypoint pairs per limb (COCO-18 order: nose, neck, r-shoulder, r-elbow, r-wrist, l-shoulder, ...). */
export const LIMB_SEQ: readonly (readonly [number, number])[] = [
  [2, 3],
  [2, 6],
  [3, 4],
  [4, 5],
  [6, 7],
  [7, 8],
  [2, 9],
  [9, 10],
  [10, 11],
  [2, 12],
  [12, 13],
  [13, 14],
  [2, 1],
  [1, 15],
  [15, 17],
  [1, 16],
  [16, 18],
  [3, 17],
  [6, 18],
];
/** PAF channels per limb (x, y), numbered from 19 as in the reference (subtract 19 for the PAF tensor). */
export const MAP_IDX: readonly (readonly [number, number])[] = [
  [31, 32],
  [39, 40],
  [33, 34],
  [35, 36],
  [41, 42],
  [43, 44],
  [19, 20],
  [21, 22],
  [23, 24],
  [25, 26],
  [27, 28],
  [29, 30],
  [47, 48],
  [49, 50],
  [53, 54],
  [51, 52],
  [55, 56],
  [37, 38],
  [45, 46],
];
export const COLORS: readonly (readonly [number, number, number])[] = [
  [255, 0, 0],
  [255, 85, 0],
  [255, 170, 0],
  [255, 255, 0],
  [170, 255, 0],
  [85, 255, 0],
  [0, 255, 0],
  [0, 255, 85],
  [0, 255, 170],
  [0, 255, 255],
  [0, 170, 255],
  [0, 85, 255],
  [0, 0, 255],
  [85, 0, 255],
  [170, 0, 255],
  [255, 0, 255],
  [255, 0, 170],
  [255, 0, 85],
];

const BOXSIZE = 368, SCALE_SEARCH = 0.5, STRIDE = 8, PAD_VALUE = 128, THRE1 = 0.1, THRE2 = 0.05, MID_NUM = 10;

/** Python's round() / numpy's: halves to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** OpenCV's bicubic taps (A = -0.75, replicated border) for one axis: 4 source indices + weights per output. */
export function cubicAxis(srcSize: number, dstSize: number, scale = 1 / (dstSize / srcSize)) {
  const idx = new Int32Array(dstSize * 4), w = new Float32Array(dstSize * 4);
  const A = -0.75;
  for (let d = 0; d < dstSize; d++) {
    const f = Math.fround((d + 0.5) * scale - 0.5); // float in OpenCV's resizeGeneric
    const s = Math.floor(f);
    const x = Math.fround(f - s);
    const c0 = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    const c1 = ((A + 2) * x - (A + 3)) * x * x + 1;
    const c2 = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    const cs = [c0, c1, c2, 1 - c0 - c1 - c2];
    for (let k = 0; k < 4; k++) {
      idx[d * 4 + k] = Math.min(Math.max(s - 1 + k, 0), srcSize - 1);
      w[d * 4 + k] = cs[k];
    }
  }
  return { idx, w };
}

/** Separable bicubic resize of a [C, sh, sw] float32 image (horizontal pass first, float32 intermediate). */
export function resizeCubic(
  src: Float32Array,
  c: number,
  sh: number,
  sw: number,
  dh: number,
  dw: number,
  scaleY = 1 / (dh / sh),
  scaleX = 1 / (dw / sw),
): Float32Array {
  const ax = cubicAxis(sw, dw, scaleX), ay = cubicAxis(sh, dh, scaleY);
  const tmp = new Float32Array(c * sh * dw), out = new Float32Array(c * dh * dw);
  for (let k = 0; k < c; k++) {
    for (let y = 0; y < sh; y++) {
      const row = (k * sh + y) * sw, o = (k * sh + y) * dw;
      for (let x = 0; x < dw; x++) {
        const q = x * 4;
        tmp[o + x] = src[row + ax.idx[q]] * ax.w[q] + src[row + ax.idx[q + 1]] * ax.w[q + 1] +
          src[row + ax.idx[q + 2]] * ax.w[q + 2] + src[row + ax.idx[q + 3]] * ax.w[q + 3];
      }
    }
    for (let y = 0; y < dh; y++) {
      const q = y * 4, o = (k * dh + y) * dw, base = k * sh * dw;
      const r0 = base + ay.idx[q] * dw, r1 = base + ay.idx[q + 1] * dw;
      const r2 = base + ay.idx[q + 2] * dw, r3 = base + ay.idx[q + 3] * dw;
      const w0 = ay.w[q], w1 = ay.w[q + 1], w2 = ay.w[q + 2], w3 = ay.w[q + 3];
      for (let x = 0; x < dw; x++) {
        out[o + x] = tmp[r0 + x] * w0 + tmp[r1 + x] * w1 + tmp[r2 + x] * w2 + tmp[r3 + x] * w3;
      }
    }
  }
  return out;
}

/** The network input for one RGB24 frame and how to map its outputs back. */
export interface BodyInput {
  data: Float32Array;
  dims: [1, 3, number, number];
  /** Size of the resized image inside the padded input. */
  imgH: number;
  imgW: number;
}

/**
 * ControlNet's Body preprocessing: BGR, bicubic resize by scale = 0.5*368/H (output size rounded), padded
 * right/down to a multiple of 8 with 128, / 256 - 0.5, NCHW. With `fixed`, resized to exactly that size.
 */
export function bodyInput(rgb: Uint8Array, W: number, H: number, fixed: { h: number; w: number } | null): BodyInput {
  // BGR planes in float [3, H, W].
  const n = W * H;
  const planes = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) planes[c * n + i] = rgb[3 * i + 2 - c];
  }
  let ih: number, iw: number, scaled: Float32Array;
  if (fixed) {
    ih = fixed.h, iw = fixed.w;
    scaled = resizeCubic(planes, 3, H, W, ih, iw);
  } else {
    const scale = SCALE_SEARCH * BOXSIZE / H;
    ih = Math.max(1, roundHalfEven(H * scale)), iw = Math.max(1, roundHalfEven(W * scale));
    scaled = resizeCubic(planes, 3, H, W, ih, iw, 1 / scale, 1 / scale);
  }
  // uint8 result of the resize (saturate_cast rounds half to even).
  for (let i = 0; i < scaled.length; i++) scaled[i] = Math.min(255, Math.max(0, roundHalfEven(scaled[i])));
  const ph = fixed ? ih : Math.ceil(ih / STRIDE) * STRIDE, pw = fixed ? iw : Math.ceil(iw / STRIDE) * STRIDE;
  const data = new Float32Array(3 * ph * pw).fill(PAD_VALUE / 256 - 0.5);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < ih; y++) {
      for (let x = 0; x < iw; x++) data[(c * ph + y) * pw + x] = scaled[(c * ih + y) * iw + x] / 256 - 0.5;
    }
  }
  return { data, dims: [1, 3, ph, pw], imgH: ih, imgW: iw };
}

/**
 * A network output [1, C, h, w] brought to the frame: x8 bicubic, crop to the unpadded image, bicubic to H x W.
 * Returns [C, H, W].
 */
export function outputToFrame(t: OnnxTensor, inp: BodyInput, W: number, H: number): Float32Array {
  const [, c, h, w] = t.dims;
  const up = resizeCubic(t.data, c, h, w, h * STRIDE, w * STRIDE, 1 / STRIDE, 1 / STRIDE);
  const ch = Math.min(inp.imgH, h * STRIDE), cw = Math.min(inp.imgW, w * STRIDE);
  const crop = new Float32Array(c * ch * cw);
  for (let k = 0; k < c; k++) {
    for (let y = 0; y < ch; y++) {
      crop.set(
        up.subarray((k * h * STRIDE + y) * w * STRIDE, (k * h * STRIDE + y) * w * STRIDE + cw),
        (k * ch + y) * cw,
      );
    }
  }
  return resizeCubic(crop, c, ch, cw, H, W);
}

/** scipy.ndimage.gaussian_filter(x, sigma=3) on an [h, w] map: truncate 4, mode "reflect", float64. */
export function gaussianFilter(src: Float32Array | Float64Array, w: number, h: number, sigma = 3): Float64Array {
  const r = Math.trunc(4 * sigma + 0.5);
  const k = new Float64Array(2 * r + 1);
  let sum = 0;
  for (let i = -r; i <= r; i++) sum += k[i + r] = Math.exp(-0.5 * i * i / (sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  // scipy's "reflect" (d c b a | a b c d | d c b a), repeated for maps smaller than the kernel.
  const reflTable = (n: number) =>
    Int32Array.from({ length: n + 2 * r }, (_, j) => {
      const m = (((j - r) % (2 * n)) + 2 * n) % (2 * n);
      return m >= n ? 2 * n - 1 - m : m;
    });
  const ry = reflTable(h), rx = reflTable(w);
  // Axis 0 (rows) first, then axis 1, as scipy.
  const tmp = new Float64Array(w * h), out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    const o = y * w;
    for (let i = 0; i <= 2 * r; i++) {
      const kw = k[i], s = ry[y + i] * w;
      for (let x = 0; x < w; x++) tmp[o + x] += kw * src[s + x];
    }
  }
  for (let y = 0; y < h; y++) {
    const o = y * w;
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let i = 0; i <= 2 * r; i++) acc += k[i] * tmp[o + rx[x + i]];
      out[o + x] = acc;
    }
  }
  return out;
}

/** Decoded people: candidate rows [x, y, score, id]; subset rows of 20 (18 candidate ids or -1, score, count). */
export interface BodyPose {
  candidate: number[][];
  subset: number[][];
}

/**
 * Body.__call__ after the network: heat [>= 18, H, W] heatmaps and paf [38, H, W], both at the frame size.
 */
export function decodeBody(heat: Float32Array, paf: Float32Array, W: number, H: number): BodyPose {
  const n = W * H;
  const allPeaks: number[][][] = [];
  let counter = 0;
  for (let part = 0; part < 18; part++) {
    const ori = heat.subarray(part * n, (part + 1) * n);
    const peaks: number[][] = [];
    allPeaks.push(peaks);
    // The smoothed map never exceeds the map's maximum (positive weights summing to 1): skip empty maps.
    let max = -Infinity;
    for (const v of ori) if (v > max) max = v;
    if (!(max > THRE1)) continue;
    const g = gaussianFilter(ori, W, H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const v = g[y * W + x];
        if (!(v > THRE1)) continue;
        if (
          v >= (y > 0 ? g[(y - 1) * W + x] : 0) && v >= (y < H - 1 ? g[(y + 1) * W + x] : 0) &&
          v >= (x > 0 ? g[y * W + x - 1] : 0) && v >= (x < W - 1 ? g[y * W + x + 1] : 0)
        ) {
          peaks.push([x, y, ori[y * W + x], counter++]);
        }
      }
    }
  }

  const connectionAll: number[][][] = [];
  const specialK = new Set<number>();
  for (let k = 0; k < MAP_IDX.length; k++) {
    const [mx, my] = [MAP_IDX[k][0] - 19, MAP_IDX[k][1] - 19];
    const candA = allPeaks[LIMB_SEQ[k][0] - 1], candB = allPeaks[LIMB_SEQ[k][1] - 1];
    const nA = candA.length, nB = candB.length;
    if (nA === 0 || nB === 0) {
      specialK.add(k);
      connectionAll.push([]);
      continue;
    }
    const cands: number[][] = [];
    for (let i = 0; i < nA; i++) {
      for (let j = 0; j < nB; j++) {
        let vx = candB[j][0] - candA[i][0], vy = candB[j][1] - candA[i][1];
        const norm = Math.max(0.001, Math.sqrt(vx * vx + vy * vy));
        vx /= norm, vy /= norm;
        let sum = 0, above = 0;
        // np.linspace(a, b, 10): s * ((b - a) / 9) + a, the last sample exactly b.
        const stepX = (candB[j][0] - candA[i][0]) / (MID_NUM - 1), stepY = (candB[j][1] - candA[i][1]) / (MID_NUM - 1);
        for (let s = 0; s < MID_NUM; s++) {
          const last = s === MID_NUM - 1;
          const px = last ? candB[j][0] : s * stepX + candA[i][0], py = last ? candB[j][1] : s * stepY + candA[i][1];
          const q = roundHalfEven(py) * W + roundHalfEven(px);
          const sc = paf[mx * n + q] * vx + paf[my * n + q] * vy;
          sum += sc;
          if (sc > THRE2) above++;
        }
        const score = sum / MID_NUM + Math.min(0.5 * H / norm - 1, 0);
        if (above > 0.8 * MID_NUM && score > 0) cands.push([i, j, score, score + candA[i][2] + candB[j][2]]);
      }
    }
    cands.sort((a, b) => b[2] - a[2]); // stable, as Python's sorted
    const conn: number[][] = [];
    for (const [i, j, s] of cands) {
      if (!conn.some((c) => c[3] === i) && !conn.some((c) => c[4] === j)) {
        conn.push([candA[i][3], candB[j][3], s, i, j]);
        if (conn.length >= Math.min(nA, nB)) break;
      }
    }
    connectionAll.push(conn);
  }

  const candidate = allPeaks.flat();
  let subset: number[][] = [];
  for (let k = 0; k < MAP_IDX.length; k++) {
    if (specialK.has(k)) continue;
    const iA = LIMB_SEQ[k][0] - 1, iB = LIMB_SEQ[k][1] - 1;
    for (const c of connectionAll[k]) {
      const [pA, pB, s] = c;
      const found: number[] = [];
      for (let j = 0; j < subset.length; j++) {
        if (subset[j][iA] === pA || subset[j][iB] === pB) found.push(j);
      }
      if (found.length === 1) {
        const row = subset[found[0]];
        if (row[iB] !== pB) {
          row[iB] = pB;
          row[19] += 1;
          row[18] += candidate[pB][2] + s;
        }
      } else if (found.length >= 2) {
        // (The reference records at most two matches; a third would raise IndexError there.)
        const [j1, j2] = found;
        const a = subset[j1], b = subset[j2];
        let overlap = false;
        for (let q = 0; q < 18; q++) if (a[q] >= 0 && b[q] >= 0) overlap = true;
        if (!overlap) {
          for (let q = 0; q < 18; q++) a[q] += b[q] + 1;
          a[18] += b[18], a[19] += b[19];
          a[18] += s;
          subset.splice(j2, 1);
        } else {
          a[iB] = pB;
          a[19] += 1;
          a[18] += candidate[pB][2] + s;
        }
      } else if (k < 17) {
        const row = new Array(20).fill(-1);
        row[iA] = pA, row[iB] = pB, row[19] = 2;
        row[18] = candidate[pA][2] + candidate[pB][2] + s;
        subset.push(row);
      }
    }
  }
  subset = subset.filter((r) => !(r[19] < 4 || r[18] / r[19] < 0.4));
  return { candidate, subset };
}

/** cv2.circle(img, c, r, color, thickness=-1) with LINE_8: OpenCV's integer midpoint circle, filled by rows. */
function fillCircle(
  img: Uint8Array,
  W: number,
  H: number,
  cx: number,
  cy: number,
  r: number,
  color: readonly number[],
) {
  const hline = (y: number, x1: number, x2: number) => {
    if (y < 0 || y >= H) return;
    for (let x = Math.max(x1, 0); x <= Math.min(x2, W - 1); x++) img.set(color, (y * W + x) * 3);
  };
  let err = 0, dx = r, dy = 0, plus = 1, minus = (r << 1) - 1;
  while (dx >= dy) {
    hline(cy - dy, cx - dx, cx + dx), hline(cy + dy, cx - dx, cx + dx);
    hline(cy - dx, cx - dy, cx + dy), hline(cy + dx, cx - dy, cx + dy);
    dy++;
    err += plus;
    plus += 2;
    const mask = (err <= 0 ? 1 : 0) - 1;
    err -= minus & mask;
    dx += mask;
    minus -= mask & 2;
  }
}

const sinDeg = (a: number) => Math.fround(Math.sin(a * Math.PI / 180));

/** cv2.ellipse2Poly(center, axes, angle, 0, 360, 1) (integer version: rounded, consecutive duplicates removed). */
export function ellipse2Poly(cx: number, cy: number, ax: number, ay: number, angle: number): [number, number][] {
  while (angle < 0) angle += 360;
  while (angle > 360) angle -= 360;
  const alpha = sinDeg(450 - angle), beta = sinDeg(angle);
  const pts: [number, number][] = [];
  for (let i = 0; i < 360 + 1; i++) {
    const a = Math.min(i, 360);
    const x = ax * sinDeg(450 - a), y = ay * sinDeg(a);
    const p: [number, number] = [roundHalfEven(cx + x * alpha - y * beta), roundHalfEven(cy + x * beta + y * alpha)];
    const last = pts[pts.length - 1];
    if (!last || last[0] !== p[0] || last[1] !== p[1]) pts.push(p);
  }
  if (pts.length === 1) pts.push([cx, cy]);
  return pts;
}

/** Fills a convex polygon (cv2.fillConvexPoly, LINE_8): every pixel row between the extreme vertices, from the
 *  leftmost to the rightmost crossing of the outline (rounded half to even), inclusive. */
function fillConvex(img: Uint8Array, W: number, H: number, pts: [number, number][], color: readonly number[]) {
  let y0 = Infinity, y1 = -Infinity;
  for (const [, y] of pts) y0 = Math.min(y0, y), y1 = Math.max(y1, y);
  for (let y = Math.max(y0, 0); y <= Math.min(y1, H - 1); y++) {
    let xl = Infinity, xr = -Infinity;
    for (let k = 0; k < pts.length; k++) {
      const [ax, ay] = pts[k], [bx, by] = pts[(k + 1) % pts.length];
      if ((y < ay && y < by) || (y > ay && y > by)) continue;
      if (ay === by) {
        xl = Math.min(xl, ax, bx), xr = Math.max(xr, ax, bx);
      } else {
        const x = ax + (bx - ax) * (y - ay) / (by - ay);
        xl = Math.min(xl, x), xr = Math.max(xr, x);
      }
    }
    if (xl > xr) continue;
    for (let x = Math.max(roundHalfEven(xl), 0); x <= Math.min(roundHalfEven(xr), W - 1); x++) {
      img.set(color, (y * W + x) * 3);
    }
  }
}

/** util.draw_bodypose on an RGB24 canvas (modified in place). */
export function drawBodyPose(canvas: Uint8Array, W: number, H: number, pose: BodyPose): void {
  const { candidate, subset } = pose;
  for (let i = 0; i < 18; i++) {
    for (const person of subset) {
      const index = person[i];
      if (index === -1) continue;
      const [x, y] = candidate[index];
      fillCircle(canvas, W, H, Math.trunc(x), Math.trunc(y), 4, COLORS[i]);
    }
  }
  const cur = new Uint8Array(canvas.length);
  for (let i = 0; i < 17; i++) {
    for (const person of subset) {
      const a = person[LIMB_SEQ[i][0] - 1], b = person[LIMB_SEQ[i][1] - 1];
      if (a === -1 || b === -1) continue;
      cur.set(canvas);
      const [ya0, ya1] = [candidate[a][0], candidate[b][0]]; // the reference's "Y" holds x coordinates
      const [xa0, xa1] = [candidate[a][1], candidate[b][1]];
      const mX = (xa0 + xa1) / 2, mY = (ya0 + ya1) / 2;
      const length = Math.sqrt((xa0 - xa1) ** 2 + (ya0 - ya1) ** 2);
      const angle = Math.atan2(xa0 - xa1, ya0 - ya1) * 180 / Math.PI;
      const poly = ellipse2Poly(Math.trunc(mY), Math.trunc(mX), Math.trunc(length / 2), 4, Math.trunc(angle));
      fillConvex(cur, W, H, poly, COLORS[i]);
      // cv2.addWeighted(canvas, 0.4, cur, 0.6, 0): float math, rounded half to even, saturated.
      const wa = Math.fround(0.4), wb = Math.fround(0.6);
      for (let q = 0; q < canvas.length; q++) {
        if (canvas[q] === cur[q]) continue; // c*0.4 + c*0.6 rounds back to c
        canvas[q] = Math.min(255, roundHalfEven(Math.fround(Math.fround(canvas[q] * wa) + Math.fround(cur[q] * wb))));
      }
    }
  }
}

/** Which output holds the PAFs (38 channels) and which the heatmaps (19). */
export function bodyOutputs(model: OnnxModel, res: Record<string, OnnxTensor>): { paf: OnnxTensor; heat: OnnxTensor } {
  const ts = Object.entries(res);
  const paf = ts.find(([, t]) => t.dims.length === 4 && t.dims[1] === 38);
  const heat = ts.find(([, t]) => t.dims.length === 4 && t.dims[1] === 19);
  if (!paf || !heat) {
    throw new OnnxError(
      `${model.path}: expected an OpenPose body model with outputs [1, 38, h, w] (PAFs) and [1, 19, h, w] ` +
        `(heatmaps); got ${ts.map(([n, t]) => `${n} [${t.dims}]`).join(", ")}`,
    );
  }
  return { paf: paf[1], heat: heat[1] };
}

export interface PoseOptions extends OnnxOptions {
  model?: OnnxModel;
}

/** The people found in one RGB24 frame. */
export async function detectBody(model: OnnxModel, rgb: Uint8Array, W: number, H: number): Promise<BodyPose> {
  const inp = bodyInput(rgb, W, H, imageInputSize(model));
  const res = await model.run({ [model.inputs[0].name]: { data: inp.data, dims: inp.dims } });
  const { paf, heat } = bodyOutputs(model, res);
  return decodeBody(outputToFrame(heat, inp, W, H), outputToFrame(paf, inp, W, H), W, H);
}

/** Skeleton control images [F, 3, H, W] in [0, 1] (coloured limbs on black). */
export async function poseVideo(frames: Frames, modelPath: string, opts: PoseOptions = {}): Promise<Float32Array> {
  checkFrames(frames, "poseVideo");
  const model = opts.model ?? await loadOnnx(modelPath, opts);
  try {
    const { width: W, height: H, count } = frames;
    const px = W * H;
    const out = new Float32Array(count * 3 * px);
    for (let f = 0; f < count; f++) {
      const pose = await detectBody(model, frames.data.subarray(f * px * 3, (f + 1) * px * 3), W, H);
      const canvas = new Uint8Array(px * 3);
      drawBodyPose(canvas, W, H, pose);
      for (let i = 0; i < px; i++) {
        for (let c = 0; c < 3; c++) out[(f * 3 + c) * px + i] = canvas[3 * i + c] / 255;
      }
    }
    return out;
  } finally {
    if (!opts.model) await model.release();
  }
}
