// Stream facts via ffprobe. The frame count is the number of video packets (demuxed, not decoded), which is
// what decord's len(VideoReader) returns and what the reference's frame sampling is based on.
import { damage, describeLog, type FFmpegJob, INPUT_PATH, newFFmpeg } from "./ffmpeg.ts";

export interface VideoInfo {
  /** Display size: the coded size with any 90/270 degree rotation applied, as decoding returns it. */
  width: number;
  height: number;
  /** Average frame rate (decord's get_avg_fps), falling back to the nominal rate. */
  fps: number;
  frames: number;
  /** Seconds. */
  duration: number;
  codec: string;
}

/** Probe details the decoder needs besides the public fields. */
export interface StreamInfo extends VideoInfo {
  format: string;
}

interface ProbeJson {
  streams?: {
    codec_name?: string;
    width?: number;
    height?: number;
    avg_frame_rate?: string;
    r_frame_rate?: string;
    nb_frames?: string;
    nb_read_packets?: string;
    duration?: string;
    side_data_list?: { rotation?: number }[];
    tags?: { rotate?: string };
    disposition?: { attached_pic?: number };
  }[];
  format?: { format_name?: string; duration?: string };
}

/**
 * Codecs FFmpeg's WebAssembly build names but cannot decode: its own AV1 decoder only drives hardware decoders, and
 * the build has neither libdav1d nor libaom. Decoding such a file fails with "Invalid data", so say what it is.
 */
const UNDECODABLE: Record<string, string> = { av1: "AV1" };

function rate(s: string | undefined): number {
  const [n, d] = (s ?? "0/0").split("/").map(Number);
  return d > 0 && n > 0 ? n / d : 0;
}

/** Rejects inputs that cannot be a video before FFmpeg sees them. */
export function checkBytes(bytes: Uint8Array, what: string): void {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${what}: expected a Uint8Array of file bytes`);
  if (bytes.length === 0) throw new Error(`${what}: empty file (0 bytes)`);
}

/** Probes the first video stream; throws a clear Error for non-video, empty or truncated input. */
export async function probeStream(bytes: Uint8Array, name = "video"): Promise<StreamInfo> {
  const what = `cannot read "${name}"`;
  checkBytes(bytes, what);
  return await probeInput(what, bytes[bytes.length - 1], (job) => job.fs.writeFile(INPUT_PATH, bytes));
}

/**
 * probeStream for a file on disk, read where FFmpeg seeks instead of copied into its memory: how the server probes
 * an upload (a 60 MB file costs no 60 MB of heap).
 */
export async function probeFileStream(path: string, name = "video"): Promise<StreamInfo> {
  const what = `cannot read "${name}"`;
  const file = await Deno.open(path, { read: true });
  try {
    const { size } = await file.stat();
    if (size === 0) throw new Error(`${what}: empty file (0 bytes)`);
    const last = new Uint8Array(1);
    await file.seek(size - 1, Deno.SeekMode.Start);
    await file.read(last);
    return await probeInput(what, last[0], (job) => job.fileDevice(INPUT_PATH, file, size));
  } finally {
    file.close();
  }
}

/** Runs ffprobe on INPUT_PATH as `mount` provides it; `lastByte` is the input's final byte (GIF's trailer). */
async function probeInput(what: string, lastByte: number, mount: (job: FFmpegJob) => void): Promise<StreamInfo> {
  const job = await newFFmpeg();
  mount(job);
  job.ffprobe([
    "-v",
    "warning",
    "-count_packets",
    "-select_streams",
    "v:0",
    "-show_entries",
    "stream=codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_packets,duration" +
    ":stream_side_data=rotation:stream_tags=rotate:stream_disposition=attached_pic:format=duration,format_name",
    "-of",
    "json",
    INPUT_PATH,
  ]);
  let json: ProbeJson = {};
  try {
    json = JSON.parse(job.stdout.join("\n") || "{}");
  } catch { /* no JSON: the input was not opened; the log says why */ }
  if (!json.format) throw new Error(`${what}: ${describeLog(job.stderr)}`);
  const st = json.streams?.[0];
  // Cover art in an audio file shows up as a one-frame video stream; it is not a video.
  if (!st || st.disposition?.attached_pic) {
    throw new Error(`${what}: no video stream (format ${json.format.format_name ?? "unknown"})`);
  }
  const codec = st.codec_name ?? "unknown";
  if (Object.hasOwn(UNDECODABLE, codec)) {
    throw new Error(
      `${what}: its video codec is ${UNDECODABLE[codec]}, which zerovid's decoder (FFmpeg in WebAssembly) cannot ` +
        "decode; convert it to H.264 or VP8 first (for example: ffmpeg -i in.mp4 -c:v libx264 out.mp4)",
    );
  }
  if (!st.width || !st.height) throw new Error(`${what}: ${describeLog(job.stderr)} (video size unknown)`);
  const packets = Number(st.nb_read_packets ?? 0);
  const declared = Number(st.nb_frames ?? 0);
  const format = json.format.format_name ?? "";
  if (packets === 0) throw new Error(`${what}: the video stream has no frames (${describeLog(job.stderr)})`);
  const bad = declared > packets ? "the file is truncated" : damage(job.stderr);
  if (bad) {
    const have = declared > packets ? `${packets} of ${declared} frames present` : `${packets} frames readable`;
    throw new Error(`${what}: ${bad} (${have})`);
  }
  // A GIF has no frame index; only its trailer byte (0x3B) shows that the last frame is complete.
  if (format === "gif" && lastByte !== 0x3b) {
    throw new Error(`${what}: the file is truncated (GIF trailer missing)`);
  }
  const duration = Number(st.duration ?? json.format.duration ?? NaN);
  let fps = rate(st.avg_frame_rate) || rate(st.r_frame_rate);
  // A short GIF often has no average rate, and r_frame_rate is then its 1/100 s timebase: use frames / duration.
  if (format === "gif" && Number.isFinite(duration) && duration > 0 && (!rate(st.avg_frame_rate) || fps >= 100)) {
    fps = packets / duration;
  }
  if (!fps) fps = 25; // FFmpeg's own default for streams without timing.
  const rot = st.side_data_list?.find((s) => s.rotation !== undefined)?.rotation ?? Number(st.tags?.rotate ?? 0);
  const swap = Math.abs(Math.round(rot / 90)) % 2 === 1;
  return {
    width: swap ? st.height : st.width,
    height: swap ? st.width : st.height,
    fps,
    frames: packets,
    duration: Number.isFinite(duration) && duration > 0 ? duration : packets / fps,
    codec,
    format,
  };
}

/** Size, frame rate, frame count, duration and codec of the first video stream. */
export async function probeVideo(bytes: Uint8Array, name?: string): Promise<VideoInfo> {
  const { format: _, ...info } = await probeStream(bytes, name);
  return info;
}

/** probeVideo for a file on disk (see probeFileStream). */
export async function probeFile(path: string, name?: string): Promise<VideoInfo> {
  const { format: _, ...info } = await probeFileStream(path, name);
  return info;
}
