// The request/result contract shared by the CLI (main.ts) and the server (routes/): one job = one video.
// Field names are the CLI's options in camelCase (the HTTP API's JSON fields are the same).

export type Mode = "text2video" | "pix2pix" | "pose" | "canny" | "depth";
export const MODES: readonly Mode[] = ["text2video", "pix2pix", "pose", "canny", "depth"];
export type Format = "mp4" | "gif" | "webm";
export type Precision = "f32" | "f16";

export interface JobRequest {
  mode: Mode;
  /** Base model: a diffusers folder, a single-file .safetensors, or a Hugging Face hub id. Default per mode. */
  model?: string;
  /** Configs (and tokenizer) for a single-file model: a diffusers folder or hub id. */
  config?: string;
  /** ControlNet for pose/canny/depth: folder or hub id. Default per mode (lllyasviel/sd-controlnet-*). */
  controlnet?: string;
  prompt: string;
  negativePrompt?: string;
  /** Input video bytes (pix2pix, pose, canny, depth) and its file name (for messages). */
  video?: Uint8Array;
  videoName?: string;
  videoLength?: number;
  width?: number;
  height?: number;
  /** Longer side for modes with a video input (rounded to multiples of 64). */
  resolution?: number;
  steps?: number;
  guidanceScale?: number;
  imageGuidanceScale?: number;
  controlScale?: number;
  seed?: number;
  t0?: number;
  t1?: number;
  motionX?: number;
  motionY?: number;
  chunkSize?: number;
  /** Output fps (text2video) or sampling fps of the input video (other modes). */
  fps?: number;
  start?: number;
  end?: number;
  precision?: Precision;
  format?: Format;
  /** Canny thresholds (0..255). */
  lowThreshold?: number;
  highThreshold?: number;
  /** Pose mode: run an OpenPose-style ONNX model on a raw video instead of using a skeleton video. */
  poseModel?: string;
  /** Depth mode: a MiDaS/DPT ONNX model. */
  depthModel?: string;
  /** Text-to-video background smoothing (SPEC §1.7) with a salient-object ONNX model. */
  smoothBackground?: boolean;
  smoothStrength?: number;
  saliencyModel?: string;
}

export interface JobProgress {
  stage: string;
  step: number;
  total: number;
  frame?: number;
  frames?: number;
}

export interface JobResult {
  bytes: Uint8Array;
  format: Format;
  contentType: string;
  /** Every parameter as resolved (defaults filled in, seed included) so a run can be repeated. */
  params: Record<string, unknown>;
  frames: number;
  width: number;
  height: number;
  fps: number;
  /** Seconds per phase (load, encode_prompt, denoise, decode, encode_video, ...). */
  timings: Record<string, number>;
}

export const CONTENT_TYPES: Record<Format, string> = { mp4: "video/mp4", gif: "image/gif", webm: "video/webm" };

/** A bad request field: the CLI prints it (exit 2), the server answers 400 {error, field}. */
export class RequestError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "RequestError";
  }
}
