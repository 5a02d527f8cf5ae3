// Frames as images: PNG (decoded back by ffmpeg.wasm, an independent decoder), the zip of frames (entries, CRCs,
// central directory), poster frames and preview data: URLs.
import { inflateSync } from "node:zlib";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { decodeVideo } from "../pipeline/media/decode.ts";
import { frameName, framesToZip, pngDataUrl, posterPng, rgbaToPng } from "../pipeline/media/images.ts";
import { crc32, encodePng } from "../pipeline/media/png.ts";
import { randu } from "./util.ts";

function pixels(n: number, seed: number): Uint8Array {
  return Uint8Array.from(randu(n, seed, 0, 255.99), Math.floor);
}

Deno.test("crc32 matches the standard check value", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("PNG: ffmpeg decodes exactly the pixels written (RGB, odd sizes)", async () => {
  for (const [w, h] of [[13, 7], [64, 40]]) {
    const rgb = pixels(w * h * 3, w);
    const png = encodePng(rgb, w, h, 3);
    const f = await decodeVideo(png, {}, "frame.png");
    assertEquals([f.count, f.width, f.height], [1, w, h]);
    assert(f.data.every((v, i) => v === rgb[i]), `${w}x${h}: decoded pixels differ`);
  }
});

Deno.test("zip of PNG frames: stored entries with names, CRCs and a central directory", () => {
  const [w, h, n] = [6, 4, 3];
  const data = pixels(n * w * h * 3, 9);
  const zip = framesToZip({ width: w, height: h, fps: 4, count: n, data });
  const dv = new DataView(zip.buffer);
  const end = zip.length - 22;
  assertEquals(dv.getUint32(end, true), 0x06054b50);
  assertEquals(dv.getUint16(end + 10, true), n);
  let dir = dv.getUint32(end + 16, true);
  for (let i = 0; i < n; i++) {
    assertEquals(dv.getUint32(dir, true), 0x02014b50);
    const nameLen = dv.getUint16(dir + 28, true), local = dv.getUint32(dir + 42, true);
    const name = new TextDecoder().decode(zip.subarray(dir + 46, dir + 46 + nameLen));
    assertEquals(name, frameName(i));
    assertEquals(dv.getUint32(local, true), 0x04034b50);
    const size = dv.getUint32(local + 18, true), lnLen = dv.getUint16(local + 26, true);
    const body = zip.subarray(local + 30 + lnLen, local + 30 + lnLen + size);
    assertEquals(crc32(body), dv.getUint32(local + 14, true));
    // The entry is this frame's PNG: its IDAT inflates to the frame's rows (filter "up" undone).
    const idatLen = new DataView(body.buffer, body.byteOffset).getUint32(33);
    const raw = new Uint8Array(inflateSync(body.subarray(41, 41 + idatLen)));
    const frame = data.subarray(i * w * h * 3, (i + 1) * w * h * 3);
    const rows: number[] = [];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w * 3; x++) {
        const up = y ? rows[(y - 1) * w * 3 + x] : 0;
        rows.push((raw[y * (w * 3 + 1) + 1 + x] + up) & 0xff);
      }
    }
    assertEquals(rows, [...frame]);
    dir += 46 + nameLen;
  }
  assertEquals(frameName(11), "frame_0012.png");
});

Deno.test("poster frame is a small PNG of the middle frame; preview strip is a PNG data: URL", async () => {
  const [w, h, n] = [96, 64, 3];
  const data = new Uint8Array(n * w * h * 3);
  data.fill(200, w * h * 3, 2 * w * h * 3); // the middle frame is flat grey
  const poster = posterPng({ width: w, height: h, fps: 4, count: n, data }, 32);
  const f = await decodeVideo(poster, {}, "poster.png");
  assertEquals([f.width, f.height], [32, 21]);
  assert(f.data.every((v) => v === 200), "poster is not the middle frame");

  const rgba = new Uint8Array(8 * 2 * 4).fill(255);
  const url = pngDataUrl(rgbaToPng(rgba, 8, 2));
  assert(url.startsWith("data:image/png;base64,iVBORw0KGgo"), url.slice(0, 40));
});
