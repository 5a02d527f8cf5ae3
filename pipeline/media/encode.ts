// RGB24 frames -> mp4 (H.264), gif (palette) or webm (VP8). VP9 is not offered: its encoder crashes in
// ffmpeg.wasm 0.12 ("memory access out of bounds").
import { describeLog, newFFmpeg } from "./ffmpeg.ts";
import { checkFrames, type Frames, padToEven } from "./frames.ts";

export type VideoFormat = "mp4" | "gif" | "webm";

export interface EncodeOptions {
  /** Called with the fraction of frames encoded, 0..1 (synchronously, from inside FFmpeg). */
  onProgress?: (f: number) => void;
}

/** Rounds a channel to 6 bits. */
const Q6 = "min(255,bitand(val+2,252))";

const CODEC_ARGS: Record<VideoFormat, string[]> = {
  // yuv420p: the only H.264 pixel format every player decodes (RGB input would give 4:4:4); faststart: the
  // index goes first, so the file plays while downloading.
  mp4: ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
  // One palette for the whole clip. palettegen runs on a 6-bit copy: on 24-bit gradients its colour table makes
  // it ~15 s for 16 frames at 512x512 in wasm, under 1 s this way. Ordered (bayer) dithering does not crawl
  // between frames as error diffusion does, and is faster and smaller.
  gif: [
    "-filter_complex",
    `[0:v]split[a][b];[a]lutrgb=r='${Q6}':g='${Q6}':b='${Q6}',palettegen[p];` +
    "[b][p]paletteuse=dither=bayer:bayer_scale=3:diff_mode=rectangle",
    "-loop",
    "0",
  ],
  // Constrained quality; no alt-ref frames so the file holds exactly one packet per frame.
  webm: [
    "-c:v",
    "libvpx",
    "-pix_fmt",
    "yuv420p",
    "-crf",
    "8",
    "-b:v",
    "8M",
    "-deadline",
    "good",
    "-cpu-used",
    "4",
    "-auto-alt-ref",
    "0",
  ],
};

/** Encodes frames at frames.fps. mp4 pads odd sizes to even by repeating the last row/column. */
export async function encodeVideo(frames: Frames, format: VideoFormat, opts: EncodeOptions = {}): Promise<Uint8Array> {
  if (!Object.hasOwn(CODEC_ARGS, format)) {
    throw new Error(`encodeVideo: unsupported output format "${format}" (use mp4, gif or webm)`);
  }
  checkFrames(frames, "encodeVideo");
  const f = format === "mp4" ? padToEven(frames) : frames;
  const job = await newFFmpeg();
  job.readDevice("/frames.rgb", f.data);
  const duration = f.count / f.fps;
  if (opts.onProgress) {
    // time is the output position in microseconds; encoder delay can make it step back, so report the maximum.
    const cb = opts.onProgress;
    let best = 0;
    job.onProgress(({ time }) => {
      const f = Math.min(1, time / 1e6 / duration);
      if (f > best) cb(best = f);
    });
  }
  const out = `/output.${format}`;
  const ret = job.exec([
    "-hide_banner",
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "-s",
    `${f.width}x${f.height}`,
    "-framerate",
    String(f.fps),
    "-i",
    "/frames.rgb",
    ...CODEC_ARGS[format],
    "-frames:v",
    String(f.count),
    out,
  ]);
  let bytes: Uint8Array | null = null;
  try {
    bytes = job.fs.readFile(out);
  } catch { /* no output: reported below */ }
  if (ret !== 0 || !bytes?.length) throw new Error(`encodeVideo (${format}) failed: ${describeLog(job.stderr)}`);
  opts.onProgress?.(1);
  return bytes;
}
