// Decoded video as packed RGB24 frames, conversions to the pipelines' float layout, and the resize used by
// the reference's frame preparation (torchvision Resize, bilinear, antialias=True).

export interface Frames {
  width: number;
  height: number;
  fps: number;
  count: number;
  /** RGB24, frame-major: count * height * width * 3 bytes. */
  data: Uint8Array;
}

/** Throws unless `f` is internally consistent (sizes positive, data length matches). */
export function checkFrames(f: Frames, what = "frames"): void {
  const ok = [f.width, f.height, f.count].every((v) => Number.isInteger(v) && v > 0);
  if (!ok) throw new Error(`${what}: width, height and count must be positive integers`);
  if (!(f.fps > 0)) throw new Error(`${what}: fps must be positive (got ${f.fps})`);
  const want = f.count * f.height * f.width * 3;
  if (f.data.length !== want) throw new Error(`${what}: data has ${f.data.length} bytes, expected ${want}`);
}

/** NHWC float32 in [0, 1]. */
export function framesToFloat(f: Frames): Float32Array {
  const out = new Float32Array(f.data.length);
  for (let i = 0; i < out.length; i++) out[i] = f.data[i] / 255;
  return out;
}

/** NHWC float32 in [0, 1] back to RGB24 (rounded to nearest, clamped; NaN becomes 0). */
export function floatToFrames(x: Float32Array, count: number, height: number, width: number, fps: number): Frames {
  const n = count * height * width * 3;
  if (x.length !== n) {
    throw new Error(`floatToFrames: got ${x.length} values, expected ${n} (${count}x${height}x${width}x3)`);
  }
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = Math.round(x[i] * 255);
    data[i] = v > 255 ? 255 : v > 0 ? v : 0;
  }
  return { width, height, fps, count, data };
}

/** numpy's np.round: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Text2Video-Zero prepare_video's output size: scale so the longer side is `resolution`, then round each side
 * to the nearest multiple of 64 (same float operations as the Python, so the same ties).
 */
export function fitSize(height: number, width: number, resolution: number): { height: number; width: number } {
  const k = resolution / Math.max(height, width);
  const h = roundHalfEven((height * k) / 64) * 64;
  const w = roundHalfEven((width * k) / 64) * 64;
  if (h < 64 || w < 64) {
    throw new Error(`resolution ${resolution} is too small for a ${width}x${height} video (a side rounds to 0)`);
  }
  return { height: h, width: w };
}

/**
 * The size decodeVideo gives frames of h x w: an exact width and height, one of them (keeping the aspect ratio),
 * else `resolution` (fitSize), else the source size. Also what a server plans a video job with at submission.
 */
export function outputSize(
  h: number,
  w: number,
  opts: { width?: number; height?: number; resolution?: number },
): { height: number; width: number } {
  const pos = (v: number | undefined, k: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) {
      throw new Error(`decodeVideo: ${k} must be a positive integer (got ${v})`);
    }
    return v;
  };
  const ow = pos(opts.width, "width"), oh = pos(opts.height, "height"), res = pos(opts.resolution, "resolution");
  if (ow && oh) return { height: oh, width: ow };
  if (ow) return { height: Math.max(1, Math.round((h * ow) / w)), width: ow };
  if (oh) return { height: oh, width: Math.max(1, Math.round((w * oh) / h)) };
  if (res) return fitSize(h, w, res);
  return { height: h, width: w };
}

/** Per output index: first input index and normalized weights of PyTorch's antialiased bilinear (= PIL's). */
function aaWeights(
  inSize: number,
  outSize: number,
): { start: Int32Array; size: Int32Array; taps: number; w: Float64Array } {
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1; // triangle filter radius 1, widened by the downscale factor
  const invscale = scale >= 1 ? 1 / scale : 1;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize), size = new Int32Array(outSize);
  const w = new Float64Array(outSize * taps);
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const t = Math.abs((j + xmin - center + 0.5) * invscale);
      const v = t < 1 ? 1 - t : 0;
      w[i * taps + j] = v;
      total += v;
    }
    if (total !== 0) { for (let j = 0; j < xsize; j++) w[i * taps + j] /= total; }
    start[i] = xmin;
    size[i] = xsize;
  }
  return { start, size, taps, w };
}

/**
 * Resizes one RGB24 image like torch.nn.functional.interpolate(mode="bilinear", antialias=True,
 * align_corners=False): separable, width pass first, float intermediate, rounded once at the end.
 */
export function resizeRGB(
  src: Uint8Array,
  sh: number,
  sw: number,
  dh: number,
  dw: number,
  dst?: Uint8Array,
): Uint8Array {
  const out = dst ?? new Uint8Array(dh * dw * 3);
  if (sh === dh && sw === dw) {
    out.set(src.subarray(0, sh * sw * 3));
    return out;
  }
  const hx = aaWeights(sw, dw), hy = aaWeights(sh, dh);
  const tmp = new Float64Array(sh * dw * 3);
  for (let y = 0; y < sh; y++) {
    const row = y * sw * 3;
    for (let x = 0; x < dw; x++) {
      let r = 0, g = 0, b = 0;
      const wo = x * hx.taps, n = hx.size[x];
      for (let j = 0, p = row + hx.start[x] * 3; j < n; j++, p += 3) {
        const wt = hx.w[wo + j];
        r += wt * src[p];
        g += wt * src[p + 1];
        b += wt * src[p + 2];
      }
      const q = (y * dw + x) * 3;
      tmp[q] = r;
      tmp[q + 1] = g;
      tmp[q + 2] = b;
    }
  }
  for (let y = 0; y < dh; y++) {
    const base = hy.start[y] * dw * 3, wo = y * hy.taps, n = hy.size[y];
    for (let x = 0; x < dw * 3; x++) {
      let acc = 0;
      for (let j = 0, p = base + x; j < n; j++, p += dw * 3) acc += hy.w[wo + j] * tmp[p];
      const v = Math.round(acc);
      out[y * dw * 3 + x] = v > 255 ? 255 : v > 0 ? v : 0;
    }
  }
  return out;
}

/** Resizes every frame (see resizeRGB). */
export function resizeFrames(f: Frames, height: number, width: number): Frames {
  if (f.height === height && f.width === width) return f;
  const fs = f.height * f.width * 3, fd = height * width * 3;
  const data = new Uint8Array(f.count * fd);
  for (let i = 0; i < f.count; i++) {
    resizeRGB(f.data.subarray(i * fs, (i + 1) * fs), f.height, f.width, height, width, data.subarray(i * fd));
  }
  return { ...f, width, height, data };
}

/** Pads to even width/height by repeating the last column/row (H.264 4:2:0 needs even sizes). */
export function padToEven(f: Frames): Frames {
  const w = f.width + (f.width & 1), h = f.height + (f.height & 1);
  if (w === f.width && h === f.height) return f;
  const data = new Uint8Array(f.count * h * w * 3);
  for (let i = 0; i < f.count; i++) {
    for (let y = 0; y < h; y++) {
      const sy = Math.min(y, f.height - 1);
      const src = (i * f.height + sy) * f.width * 3, dst = (i * h + y) * w * 3;
      data.set(f.data.subarray(src, src + f.width * 3), dst);
      if (w !== f.width) data.copyWithin(dst + f.width * 3, dst + (f.width - 1) * 3, dst + f.width * 3);
    }
  }
  return { ...f, width: w, height: h, data };
}
