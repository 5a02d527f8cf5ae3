// The request/result contract shared by the CLI (main.ts) and the server (routes/): one job = one video.
// A request's fields are the registry's (fields.ts), typed from it; the HTTP API's JSON fields are the same names.
import type { FIELDS } from "./fields.ts";
import type { Mode } from "./modes.ts";

export type Format = (typeof FIELDS.format.values)[number];
export type Precision = (typeof FIELDS.precision.values)[number];

/** The TS type of a registry entry's value. */
type ValueOf<F> = F extends { kind: "int" | "number" } ? number
  : F extends { kind: "bool" } ? boolean
  : F extends { kind: "file" } ? Uint8Array
  : F extends { kind: "loras" } ? LoraRef[]
  : F extends { kind: "names" } ? string[]
  : F extends { kind: "enum"; values: readonly (infer V)[] } ? V
  : string;

type Fields = typeof FIELDS;

export type JobRequest =
  & { mode: Mode; prompt: string }
  & { -readonly [K in Exclude<keyof Fields, "prompt">]?: ValueOf<Fields[K]> };

/** A LoRA of a request: a file (CLI: a path; server: a name from GET /v1/models) and its scale (default 1). */
export interface LoraRef {
  name: string;
  scale?: number;
}

export interface JobProgress {
  stage: string;
  step: number;
  total: number;
  frame?: number;
  frames?: number;
  /** Stage "preview": the frames as they stand, side by side (the server's SSE `preview` event). */
  preview?: PreviewImage;
}

/** A live preview strip: `frames` frames of width x height side by side, as a data: URL (PNG). */
export interface PreviewImage {
  frames: number;
  width: number;
  height: number;
  image: string;
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
  /** Seconds per phase (load, encode_video, ...). */
  timings: Record<string, number>;
  /** Format png: the frames as PNG files (`bytes` is their zip). */
  images?: { name: string; data: Uint8Array }[];
}

export const CONTENT_TYPES: Record<Format, string> = {
  mp4: "video/mp4",
  gif: "image/gif",
  webm: "video/webm",
  png: "application/zip",
};

/** The result file's extension: png frames come as one zip. */
export const FILE_EXTENSIONS: Record<Format, string> = { mp4: "mp4", gif: "gif", webm: "webm", png: "zip" };
