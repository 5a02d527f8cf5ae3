// Frames as still images: numbered lossless PNGs (frame_0001.png, ...), a zip of them, a small poster frame, and
// a live preview strip as a data: URL.
import { Buffer } from "node:buffer";
import type { Frames } from "./frames.ts";
import { encodePng } from "./png.ts";
import { type ZipEntry, zipStore } from "./zip.ts";

/** File name of frame `i` (0-based): frame_0001.png, ... */
export function frameName(i: number): string {
  return `frame_${String(i + 1).padStart(4, "0")}.png`;
}

/** Every frame as a PNG file. */
export function framesToPngs(f: Frames): ZipEntry[] {
  const per = f.width * f.height * 3;
  return Array.from({ length: f.count }, (_, i) => ({
    name: frameName(i),
    data: encodePng(f.data.subarray(i * per, (i + 1) * per), f.width, f.height, 3),
  }));
}

/** The frames as one zip of PNGs. */
export function framesToZip(f: Frames): Uint8Array {
  return zipStore(framesToPngs(f));
}

/** The middle frame, box-downscaled so its longer side is at most `maxSide`, as a PNG (job lists). */
export function posterPng(f: Frames, maxSide = 256): Uint8Array {
  const k = Math.max(1, Math.ceil(Math.max(f.width, f.height) / maxSide));
  const w = Math.floor(f.width / k), h = Math.floor(f.height / k);
  const src = f.data.subarray(Math.floor(f.count / 2) * f.width * f.height * 3);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let dy = 0; dy < k; dy++) {
          for (let dx = 0; dx < k; dx++) s += src[((y * k + dy) * f.width + x * k + dx) * 3 + c];
        }
        out[(y * w + x) * 3 + c] = Math.round(s / (k * k));
      }
    }
  }
  return encodePng(out, w, h, 3);
}

/** RGBA bytes [height, width, 4] as an RGB PNG (alpha dropped: previews are opaque). */
export function rgbaToPng(rgba: Uint8Array, width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgb[i] = rgba[j], rgb[i + 1] = rgba[j + 1], rgb[i + 2] = rgba[j + 2];
  }
  return encodePng(rgb, width, height, 3);
}

/** A PNG as a data: URL. */
export function pngDataUrl(png: Uint8Array): string {
  return `data:image/png;base64,${Buffer.from(png).toString("base64")}`;
}
