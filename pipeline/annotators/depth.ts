// Depth control images for the depth ControlNet (METHOD §3) from a MiDaS/DPT ONNX model, as ControlNet's
// apply_midas + Text2Video-Zero's pre_process_depth:
//   x = frame / 127.5 - 1 (RGB, NCHW, no 384 transform), depth = model(x)[0],
//   depth -= min; depth /= max; uint8(clip(depth * 255)) (truncation), HWC3, cv2.resize(INTER_NEAREST) to the
//   frame size, / 255.
// A model with a fixed input size gets the frame resized to it first (antialiased bilinear, as torchvision).
import { checkFrames, type Frames, resizeRGB } from "../media/frames.ts";
import { imageInputSize, loadOnnx, mapDims, type OnnxModel, type OnnxOptions } from "./onnx.ts";

export interface DepthOptions extends OnnxOptions {
  /** Quantize to 8 bits as the reference does (uint8 truncation); default true. */
  quantize?: boolean;
  /** An already loaded model (modelPath is then only used in messages). */
  model?: OnnxModel;
}

/** The reference's model input: [1, 3, h, w] float32, RGB scaled to [-1, 1]. */
export function depthInput(rgb: Uint8Array, w: number, h: number): Float32Array {
  const n = w * h;
  const x = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) x[c * n + i] = rgb[3 * i + c] / 127.5 - 1;
  }
  return x;
}

/** Per-map min-max normalisation to [0, 1] (a constant map becomes 0; the reference would divide by zero). */
export function minMaxNormalize(d: Float32Array, quantize: boolean): Float32Array {
  let lo = Infinity, hi = -Infinity;
  for (const v of d) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new Error("depth: the model output has NaN or Inf values");
  const range = hi - lo;
  const out = new Float32Array(d.length);
  if (range === 0) return out;
  for (let i = 0; i < d.length; i++) {
    // The reference: (d - min) then / max(d - min), in float32.
    const v = Math.fround(Math.fround(d[i] - lo) / Math.fround(range));
    out[i] = quantize ? Math.floor(Math.min(Math.max(Math.fround(v * 255), 0), 255)) / 255 : v;
  }
  return out;
}

/** cv2.resize(INTER_NEAREST) source index: floor(dst * ifx) with ifx = 1 / (dstSize / srcSize), clamped. */
export function nearestIndex(dst: number, srcSize: number, dstSize: number): number {
  return Math.min(Math.floor(dst * (1 / (dstSize / srcSize))), srcSize - 1);
}

/** Depth control images [F, 3, H, W] in [0, 1]. */
export async function depthVideo(frames: Frames, modelPath: string, opts: DepthOptions = {}): Promise<Float32Array> {
  checkFrames(frames, "depthVideo");
  const model = opts.model ?? await loadOnnx(modelPath, opts);
  try {
    const { width: W, height: H, count } = frames;
    const fixed = imageInputSize(model);
    const ih = fixed?.h ?? H, iw = fixed?.w ?? W;
    const px = W * H;
    const out = new Float32Array(count * 3 * px);
    const inName = model.inputs[0].name, outName = model.outputs[0].name;
    for (let f = 0; f < count; f++) {
      let rgb = frames.data.subarray(f * px * 3, (f + 1) * px * 3);
      if (ih !== H || iw !== W) rgb = resizeRGB(rgb, H, W, ih, iw);
      const res = await model.run({ [inName]: { data: depthInput(rgb, iw, ih), dims: [1, 3, ih, iw] } });
      const d = res[outName];
      const { h: dh, w: dw } = mapDims(model, outName, d.dims);
      const norm = minMaxNormalize(d.data, opts.quantize ?? true);
      const plane = out.subarray(f * 3 * px, f * 3 * px + px);
      for (let y = 0; y < H; y++) {
        const sy = nearestIndex(y, dh, H);
        for (let x = 0; x < W; x++) plane[y * W + x] = norm[sy * dw + nearestIndex(x, dw, W)];
      }
      out.copyWithin(f * 3 * px + px, f * 3 * px, f * 3 * px + px);
      out.copyWithin(f * 3 * px + 2 * px, f * 3 * px, f * 3 * px + px);
    }
    return out;
  } finally {
    if (!opts.model) await model.release();
  }
}
