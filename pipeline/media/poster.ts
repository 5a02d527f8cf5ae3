// A job's poster: its middle frame as a small PNG, from the finished result (a video, or a zip of PNG frames).
import { decodeVideo } from "./decode.ts";
import { posterPng } from "./images.ts";
import { probeStream } from "./probe.ts";
import { zipEntries } from "./zip.ts";

/** `bytes` is a result of `format` (mp4, gif, webm, or png = a zip of frames). */
export async function posterOf(bytes: Uint8Array, format: string, maxSide = 256): Promise<Uint8Array> {
  if (format === "png") {
    const frames = zipEntries(bytes).filter((e) => /\.png$/i.test(e.name));
    if (frames.length === 0) throw new RangeError("poster: the zip holds no PNG frame");
    return posterPng(await decodeVideo(frames[Math.floor(frames.length / 2)].data, {}, "frame.png"), maxSide);
  }
  const name = `result.${format}`;
  const info = await probeStream(bytes, name);
  const start = Math.floor(info.frames / 2) / info.fps;
  return posterPng(await decodeVideo(bytes, { start, maxFrames: 1 }, name), maxSide);
}
