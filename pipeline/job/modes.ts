// The modes: one list, used by the registry, validation, the CLI, the API schema and the model registry.

export type Mode = "text2video" | "pix2pix" | "pose" | "canny" | "depth";
export const MODES: readonly Mode[] = ["text2video", "pix2pix", "pose", "canny", "depth"];
/** Modes whose input is a video. */
export const VIDEO_MODES: readonly Mode[] = ["pix2pix", "pose", "canny", "depth"];
/** Modes that run a ControlNet on control images of the input video. */
export const CONTROL_MODES: readonly Mode[] = ["pose", "canny", "depth"];

/** One line per mode (CLI help, OpenAPI). */
export const MODE_HELP: Record<Mode, string> = {
  text2video: "text to video: Text2Video-Zero (motion field + cross-frame attention)",
  pix2pix: "edit a video by instruction: Video Instruct-Pix2Pix",
  pose: "pose-guided video from a rendered skeleton video (ControlNet openpose)",
  canny: "edge-guided video: Canny edges of the input video (ControlNet canny)",
  depth: "depth-guided video: depth maps of the input video (ControlNet depth)",
};

export function isMode(v: unknown): v is Mode {
  return typeof v === "string" && (MODES as readonly string[]).includes(v);
}
