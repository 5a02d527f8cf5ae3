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
  : F extends { kind: "enum"; values: readonly (infer V)[] } ? V
  : string;

type Fields = typeof FIELDS;

export type JobRequest =
  & { mode: Mode; prompt: string }
  & { -readonly [K in Exclude<keyof Fields, "prompt">]?: ValueOf<Fields[K]> };

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
  /** Seconds per phase (load, encode_video, ...). */
  timings: Record<string, number>;
}

export const CONTENT_TYPES: Record<Format, string> = { mp4: "video/mp4", gif: "image/gif", webm: "video/webm" };
