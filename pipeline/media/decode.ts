// Video file -> RGB24 frames, sampled and resized exactly as Text2Video-Zero's prepare_video (METHOD §2):
//   fps_in = average fps, len = frame count (decord), out_fps = int(fps_in) when -1,
//   end_t = len/fps_in when -1 else min(len/fps_in, end_t), n = int((end_t-start_t)*out_fps),
//   idx = linspace(int(start_t*fps_in), int(end_t*fps_in), n, endpoint=False).astype(int),
//   resize so the longer side = resolution with each side rounded to a multiple of 64, bilinear + antialias.
// FFmpeg decodes every frame up to the last wanted index at the source rate (no fps/scale filters: their frame
// choice and scaler differ from decord + torchvision); frames stream out of wasm through a device, and only the
// wanted ones are kept, resized in TypeScript as they arrive, so memory stays at the output size.
import { damage, describeLog, INPUT_PATH, newFFmpeg } from "./ffmpeg.ts";
import { type Frames, outputSize, resizeRGB } from "./frames.ts";
import { probeStream } from "./probe.ts";
import { RequestError } from "../errors.ts";

export interface DecodeOptions {
  /** Seconds; default 0. */
  start?: number;
  /** Seconds; -1 or undefined = the whole clip. */
  end?: number;
  /**
   * Output fps; -1 = int(source fps), as the reference does. With start, end and fps all undefined, every frame
   * is returned at the exact source fps; any of them switches to the reference's sampling (fps undefined = -1).
   */
  fps?: number;
  /** Exact output size (both, or one to keep the aspect ratio); overrides `resolution`. */
  width?: number;
  height?: number;
  /** Longer side = resolution, each side rounded to the nearest multiple of 64. */
  resolution?: number;
  /** Keep at most this many frames (the first ones of the sample). */
  maxFrames?: number;
}

/** The reference's frame indices; also returns the output fps. Exported for tests. */
export function sampleIndices(
  frameCount: number,
  srcFps: number,
  opts: Pick<DecodeOptions, "start" | "end" | "fps"> = {},
): { indices: number[]; fps: number } {
  if (opts.start === undefined && opts.end === undefined && opts.fps === undefined) {
    // No sampling asked for: every frame at the exact source rate (int(fps) would drop frames at 29.97 fps).
    return { indices: Array.from({ length: frameCount }, (_, i) => i), fps: srcFps };
  }
  const start = opts.start ?? 0;
  const end = opts.end ?? -1;
  // int(fps) as in the reference; a source slower than 1 fps would give 0, so keep its own rate then.
  const outFps = opts.fps === undefined || opts.fps === -1 ? Math.trunc(srcFps) || srcFps : opts.fps;
  // Bad sampling is the request's fault: the error names its field (start, end, fps).
  if (!(outFps > 0)) throw new RequestError("fps", `must be positive or -1, got ${opts.fps}`);
  const clipEnd = frameCount / srcFps;
  const endT = end === -1 ? clipEnd : Math.min(clipEnd, end);
  if (!(start >= 0)) throw new RequestError("start", `must be >= 0, got ${start}`);
  if (!(start < endT)) {
    throw new RequestError(
      "start",
      `must be before the end (${endT}s; the clip is ${clipEnd.toFixed(3)}s long), got ${start}s`,
    );
  }
  const i0 = Math.trunc(start * srcFps), i1 = Math.trunc(endT * srcFps);
  const n = Math.trunc((endT - start) * outFps);
  if (n < 1) throw new RequestError("fps", `${start}s..${endT}s at ${outFps} fps selects no frames`);
  const step = (i1 - i0) / n; // np.linspace(endpoint=False): i*step + start
  const indices = Array.from({ length: n }, (_, i) => Math.trunc(i * step + i0));
  return { indices, fps: outFps };
}

/** Decodes, samples and resizes a video (mp4, webm, gif, avi, mov, ...; audio is ignored). */
export async function decodeVideo(bytes: Uint8Array, opts: DecodeOptions = {}, name = "video"): Promise<Frames> {
  const info = await probeStream(bytes, name);
  const what = `cannot decode "${name}"`;
  let { indices, fps } = sampleIndices(info.frames, info.fps, opts);
  if (opts.maxFrames !== undefined) {
    if (!(Number.isInteger(opts.maxFrames) && opts.maxFrames > 0)) {
      throw new Error(`decodeVideo: maxFrames must be a positive integer (got ${opts.maxFrames})`);
    }
    indices = indices.slice(0, opts.maxFrames);
  }
  const out = outputSize(info.height, info.width, opts);
  const outSize = out.height * out.width * 3;
  const data = new Uint8Array(indices.length * outSize);
  // Source index -> output slots (an output fps above the source rate repeats frames).
  const slots = new Map<number, number[]>();
  indices.forEach((s, k) => slots.set(s, [...(slots.get(s) ?? []), k]));
  const last = indices.reduce((a, b) => Math.max(a, b), 0);

  const job = await newFFmpeg();
  job.fs.writeFile(INPUT_PATH, bytes);
  let w = info.width, h = info.height, frameSize = 0, frame = new Uint8Array(0), fill = 0, idx = 0;
  const sink = (chunk: Uint8Array) => {
    if (!frameSize) {
      // FFmpeg has printed the output stream (with autorotation applied) before it writes the first frame.
      const log = job.stderr.join("\n");
      const m = /Video: rawvideo[^\n]*?, (\d+)x(\d+)/.exec(log.slice(log.indexOf("Output #0")));
      if (m) [w, h] = [Number(m[1]), Number(m[2])];
      frameSize = w * h * 3;
      frame = new Uint8Array(frameSize);
    }
    for (let p = 0; p < chunk.length;) {
      const want = slots.get(idx);
      const n = Math.min(frameSize - fill, chunk.length - p);
      if (want) frame.set(chunk.subarray(p, p + n), fill);
      fill += n;
      p += n;
      if (fill < frameSize) continue;
      if (want) {
        const first = data.subarray(want[0] * outSize, (want[0] + 1) * outSize);
        resizeRGB(frame, h, w, out.height, out.width, first);
        for (const k of want.slice(1)) data.set(first, k * outSize);
      }
      fill = 0;
      idx++;
    }
  };
  job.writeDevice("/frames.rgb", sink);
  const ret = job.exec([
    "-hide_banner",
    "-i",
    INPUT_PATH,
    "-map",
    "0:v:0",
    "-an",
    "-sn",
    "-dn",
    "-fps_mode",
    "passthrough", // one output frame per decoded frame: indices count decoded frames, as decord's do
    "-frames:v",
    String(last + 1),
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "/frames.rgb",
  ]);
  if (ret !== 0) throw new Error(`${what}: ${describeLog(job.stderr)}`);
  if (idx <= last) {
    // A clean log with a frame or two fewer than packets is a valid file whose demuxer counts packets the
    // decoder drops (e.g. MP4 edit lists): repeat the last frame rather than reject it.
    const bad = damage(job.stderr);
    if (bad || idx === 0 || last + 1 - idx > 2) {
      throw new Error(
        `${what}: ${bad ?? "the file is truncated or corrupt"} (decoded ${idx} of ${info.frames} frames)`,
      );
    }
    const lastSlot = Math.max(...[...slots].filter(([s]) => s < idx).flatMap(([, ks]) => ks), -1);
    for (const [s, ks] of slots) {
      if (s < idx) continue;
      if (lastSlot < 0) throw new Error(`${what}: no frame decoded in the requested range`);
      for (const k of ks) data.copyWithin(k * outSize, lastSlot * outSize, (lastSlot + 1) * outSize);
    }
  }
  return { width: out.width, height: out.height, fps, count: indices.length, data };
}
