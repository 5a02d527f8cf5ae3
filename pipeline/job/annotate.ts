// Control images for the ControlNet modes and saliency masks for background smoothing, from decoded frames. An
// ONNX file that is not a usable model is the user's error on the field that named it (OnnxError is a RequestError).
import { blameOn } from "../errors.ts";
import type { Device } from "../gpu/device.ts";
import { floatToFrames, type Frames } from "../media/frames.ts";
import type { SaliencyFn } from "../modes/smoothing.ts";
import { localFile } from "./resolve.ts";
import type { JobProgress, JobRequest } from "./types.ts";

/** [F, H, W, 3] bytes -> [F, 3, H, W] floats in [0, 1]. */
export function framesToNCHW(f: Frames): Float32Array {
  const { count: F, height: H, width: W, data } = f;
  const out = new Float32Array(F * 3 * H * W);
  const plane = H * W;
  for (let k = 0; k < F; k++) {
    const src = k * plane * 3, dst = k * plane * 3;
    for (let i = 0; i < plane; i++) {
      out[dst + i] = data[src + 3 * i] / 255;
      out[dst + plane + i] = data[src + 3 * i + 1] / 255;
      out[dst + 2 * plane + i] = data[src + 3 * i + 2] / 255;
    }
  }
  return out;
}

/** The control images of a ControlNet mode, [F, 3, H, W] in [0, 1]. */
export const CONTROL: Record<
  "pose" | "canny" | "depth",
  (dev: Device, r: JobRequest, f: Frames) => Promise<Float32Array>
> = {
  canny: async (dev, r, frames) => {
    const { cannyVideo } = await import("../annotators/canny.ts");
    return await cannyVideo(dev, frames, r.lowThreshold!, r.highThreshold!);
  },
  depth: async (_dev, r, frames) => {
    const path = await localFile(r.depthModel!, "depthModel");
    const { depthVideo } = await import("../annotators/depth.ts");
    return await depthVideo(frames, path).catch(blameOn("depthModel"));
  },
  pose: async (_dev, r, frames) => {
    if (!r.poseModel) return framesToNCHW(frames); // a rendered skeleton video is the control itself
    const path = await localFile(r.poseModel, "poseModel");
    const { poseVideo } = await import("../annotators/pose.ts");
    return await poseVideo(frames, path).catch(blameOn("poseModel"));
  },
};

/** Salient-object masks of decoded frames for background smoothing, from the request's ONNX model. */
export async function saliencyFn(modelPath: string, report: (p: JobProgress) => void): Promise<SaliencyFn> {
  const path = await localFile(modelPath, "saliencyModel");
  const { saliencyMasks } = await import("../annotators/saliency.ts");
  return async (frames, count, height, width) => {
    report({ stage: "saliency", step: 0, total: 1, frames: count });
    const masks = await saliencyMasks(floatToFrames(frames, count, height, width, 1), path).catch(
      blameOn("saliencyModel"),
    );
    report({ stage: "saliency", step: 1, total: 1, frames: count });
    return masks;
  };
}
