// Background smoothing (METHOD §1.7, what the original intended but never shipped): salient-object masks of a first
// result decide, per frame, which latent pixels at T1 are background; those are pulled toward the anchor's
// background warped by the frame's motion, and the video is denoised again from T1.
import { type Tensor, upload } from "../gpu/tensor.ts";
import { free } from "../models/layers.ts";
import { warpLatents } from "./motion.ts";

/** Salient-object masks in [0, 1], [F, H, W], of decoded frames [F, H, W, 3] in [0, 1]. */
export type SaliencyFn = (frames: Float32Array, count: number, height: number, width: number) => Promise<Float32Array>;

/** Nearest resize (torch's `interpolate(mode="nearest")`) of masks [F, H, W] to [F, h, w], then a 5x5 dilation. */
export function latentMasks(masks: Float32Array, F: number, H: number, W: number, h: number, w: number): Float32Array {
  const small = new Float32Array(F * h * w);
  for (let f = 0; f < F; f++) {
    for (let y = 0; y < h; y++) {
      const sy = Math.min(H - 1, Math.floor(y * H / h));
      for (let x = 0; x < w; x++) {
        const sx = Math.min(W - 1, Math.floor(x * W / w));
        small[(f * h + y) * w + x] = masks[(f * H + sy) * W + sx];
      }
    }
  }
  // kornia.morphology.dilation with a 5x5 kernel of ones: a max filter (borders see only the inside).
  const out = new Float32Array(F * h * w);
  for (let f = 0; f < F; f++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let m = -Infinity;
        for (let dy = -2; dy <= 2; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= h) continue;
          for (let dx = -2; dx <= 2; dx++) {
            const xx = x + dx;
            if (xx >= 0 && xx < w) m = Math.max(m, small[(f * h + yy) * w + xx]);
          }
        }
        out[(f * h + y) * w + x] = m;
      }
    }
  }
  return out;
}

/**
 * x'_k = (1 - B_k) x_k + B_k (a x_k + (1 - a) W_k(x_1 (1 - M_1))) with B_k = (1 - M_k)(1 - W_k(M_1)) for k >= 1;
 * frame 0 is unchanged. `xT1` is [F, C, h, w]; masks are the decoded-size saliency masks [F, H, W].
 */
export async function blendBackground(
  xT1: Tensor,
  masks: Float32Array,
  frameIds: number[],
  sx: number,
  sy: number,
  a: number,
): Promise<Tensor> {
  const [F, C, h, w] = xT1.shape;
  const H = h * 8, W = w * 8;
  if (masks.length !== F * H * W) {
    throw new Error(`saliency masks: expected ${F}x${H}x${W} values, got ${masks.length}`);
  }
  if (!(a >= 0 && a <= 1)) throw new Error(`smoothing strength must be in [0, 1], got ${a}`);
  const m = latentMasks(masks, F, H, W, h, w);
  const hw = h * w;
  const x = await xT1.read();
  const ids = frameIds.slice(1);

  // W_k(M_1): the anchor's mask under each frame's motion (the latent warp, on a 1-channel image).
  const m1 = upload(xT1.dev, m.slice(0, hw), [1, 1, h, w], "f32");
  const wm1t = warpLatents(m1, ids, sx, sy);
  const wm1 = await wm1t.read();
  // W_k(x_1 (1 - M_1)): the anchor's background, warped.
  const bg = new Float32Array(C * hw);
  for (let c = 0; c < C; c++) for (let i = 0; i < hw; i++) bg[c * hw + i] = x[c * hw + i] * (1 - m[i]);
  const bgT = upload(xT1.dev, bg, [1, C, h, w], "f32");
  const wbgT = warpLatents(bgT, ids, sx, sy);
  const wbg = await wbgT.read();
  free(m1, wm1t, bgT, wbgT);

  const out = x.slice();
  for (let k = 1; k < F; k++) {
    for (let i = 0; i < hw; i++) {
      const b = (1 - m[k * hw + i]) * (1 - wm1[(k - 1) * hw + i]);
      for (let c = 0; c < C; c++) {
        const j = (k * C + c) * hw + i;
        out[j] = (1 - b) * x[j] + b * (a * x[j] + (1 - a) * wbg[((k - 1) * C + c) * hw + i]);
      }
    }
  }
  return upload(xT1.dev, out, [F, C, h, w], xT1.dtype);
}
