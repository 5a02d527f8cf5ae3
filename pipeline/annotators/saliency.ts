// Foreground masks for background smoothing (METHOD §1.7: M_FG from a salient-object-detection model, which the
// reference never shipped). U^2-Net / BASNet-style ONNX models: input [1, 3, S, S] RGB normalised with the
// ImageNet mean/std, first output = the saliency map (sigmoid applied when it holds logits). The map is resized
// back to the frame (bilinear) and clamped to [0, 1]. Resizing to latent size and the 5x5 dilation are the
// caller's (METHOD §1.7 step 2).
import { checkFrames, type Frames, resizeRGB } from "../media/frames.ts";
import { imageInputSize, loadOnnx, mapDims, type OnnxModel, type OnnxOptions, resizeBilinear } from "./onnx.ts";

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

export interface SaliencyOptions extends OnnxOptions {
  /** Input size S for a model without a fixed one; default 320 (U^2-Net). */
  size?: number;
  /** Min-max normalise each map first (U^2-Net's normPRED); default false. */
  normalize?: boolean;
  /** An already loaded model (modelPath is then only used in messages). */
  model?: OnnxModel;
}

/** The model input for one frame already resized to the model's w x h: [3, h, w], (v/255 - mean) / std. */
export function saliencyInput(rgb: Uint8Array, w: number, h: number): Float32Array {
  const n = w * h;
  const x = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) x[c * n + i] = (rgb[3 * i + c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
  }
  return x;
}

/** Saliency output to probabilities: sigmoid when any value lies outside [0, 1] (logits), optional min-max. */
export function saliencyProbabilities(d: Float32Array, normalize: boolean): Float32Array {
  let lo = Infinity, hi = -Infinity;
  for (const v of d) {
    if (Number.isNaN(v)) throw new Error("saliency: the model output has NaN values");
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const logits = lo < 0 || hi > 1;
  let out = logits ? d.map((v) => 1 / (1 + Math.exp(-v))) : d.slice();
  if (normalize) {
    let a = Infinity, b = -Infinity;
    for (const v of out) a = Math.min(a, v), b = Math.max(b, v);
    out = b > a ? out.map((v) => (v - a) / (b - a)) : out.fill(0);
  }
  return out;
}

/** Foreground probability masks [F, H, W] in [0, 1]. */
export async function saliencyMasks(
  frames: Frames,
  modelPath: string,
  opts: SaliencyOptions = {},
): Promise<Float32Array> {
  checkFrames(frames, "saliencyMasks");
  const model = opts.model ?? await loadOnnx(modelPath, opts);
  try {
    const { width: W, height: H, count } = frames;
    const fixed = imageInputSize(model);
    const sh = fixed?.h ?? opts.size ?? 320, sw = fixed?.w ?? opts.size ?? 320;
    const px = W * H;
    const out = new Float32Array(count * px);
    const inName = model.inputs[0].name, outName = model.outputs[0].name;
    for (let f = 0; f < count; f++) {
      const rgb = resizeRGB(frames.data.subarray(f * px * 3, (f + 1) * px * 3), H, W, sh, sw);
      const x = saliencyInput(rgb, sw, sh);
      const res = await model.run({ [inName]: { data: x, dims: [1, 3, sh, sw] } });
      const d = res[outName];
      const { h: dh, w: dw } = mapDims(model, outName, d.dims);
      const prob = saliencyProbabilities(d.data, opts.normalize ?? false);
      const m = resizeBilinear(prob, 1, dh, dw, H, W);
      for (let i = 0; i < px; i++) out[f * px + i] = Math.min(1, Math.max(0, m[i]));
    }
    return out;
  } finally {
    if (!opts.model) await model.release();
  }
}
