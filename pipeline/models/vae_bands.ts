// The VAE decoder (and encoder) in bands of rows, for a frame whose whole decode does not fit what the run may hold
// (--max-gpu-mb) or the adapter's largest buffer. Exact, not blended: each GroupNorm normalises a band with the
// statistics of its whole map (summed on the host in f64 as its rows arrive), and each 3x3 convolution reads one
// real row above and below its band (the edge rows it computes with zero padding instead are dropped), so every
// band's rows are the untiled decoder's up to float rounding and no seam exists to blend. What runs at the latents'
// resolution (the mid block with its frame-wide attention) runs whole; the full-resolution layers (the decoder's up
// blocks, the encoder's down blocks) keep their maps on the host between layers, and the GPU holds one band of one
// layer at a time (a handful of tensors of at most `bandBytes` each).
import { BYTES, type Device, type DType } from "../gpu/device.ts";
import { scoped, type Tensor, upload } from "../gpu/tensor.ts";
import { upsampleNearest } from "../ops/layout.ts";
import { groupNorm } from "../ops/norm.ts";
import type { Resnet } from "./blocks.ts";
import { applyConv, type Conv, type Norm } from "./layers.ts";
import type { Posterior, VAE } from "./vae.ts";

const EPS = 1e-6;

/** One frame's feature map [C, H, W] on the host, with its GroupNorm statistics once complete. */
class HostMap {
  readonly data: Float32Array;
  /** Per channel: sum and sum of squares of the rows stored so far (f64; each row is stored once). */
  private readonly sum: Float64Array;
  private readonly sq: Float64Array;
  /** Per group (count, mean, M2, -), f32 for the GPU; set by `finish`. */
  stats!: Float32Array;

  constructor(readonly C: number, readonly H: number, readonly W: number) {
    this.data = new Float32Array(C * H * W);
    this.sum = new Float64Array(C);
    this.sq = new Float64Array(C);
  }

  /** Rows [a, b) of every channel as one [1, C, b - a, W] tensor. */
  rows(dev: Device, a: number, b: number, dtype: DType): Tensor {
    const { C, H, W } = this, n = b - a;
    const out = new Float32Array(C * n * W);
    for (let c = 0; c < C; c++) out.set(this.data.subarray((c * H + a) * W, (c * H + b) * W), c * n * W);
    return upload(dev, out, [1, C, n, W], dtype);
  }

  /** Stores rows [r0, r1) from `band` [C, rows, W], whose first row is map row `first`; sums them on the way. */
  put(band: Float32Array, rows: number, first: number, r0: number, r1: number): void {
    const { C, H, W } = this, n = (r1 - r0) * W;
    for (let c = 0; c < C; c++) {
      const src = band.subarray((c * rows + (r0 - first)) * W, (c * rows + (r0 - first)) * W + n);
      this.data.set(src, (c * H + r0) * W);
      let s = 0, q = 0;
      for (let i = 0; i < n; i++) s += src[i], q += src[i] * src[i];
      this.sum[c] += s, this.sq[c] += q;
    }
  }

  /** Each group's (count, mean, M2) from the sums: f64 keeps sum-of-squares cancellation far below f32 rounding. */
  finish(groups: number): void {
    const cg = this.C / groups, count = cg * this.H * this.W;
    this.stats = new Float32Array(groups * 4);
    for (let g = 0; g < groups; g++) {
      let s = 0, q = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) s += this.sum[c], q += this.sq[c];
      const mean = s / count;
      this.stats.set([count, mean, Math.max(0, q - s * mean)], g * 4);
    }
  }
}

interface Bands {
  vae: VAE;
  dev: Device;
  dtype: DType;
  groups: number;
  bandBytes: number;
}

/** Output rows per band so that a [C, rows + halo, W] tensor stays within bandBytes (at least `min`). */
function bandRows(b: Bands, C: number, W: number, halo: number, min: number, even = false): number {
  let rows = Math.floor(b.bandBytes / (C * W * BYTES[b.dtype])) - halo;
  if (even) rows -= rows % 2;
  return Math.max(min, rows);
}

/**
 * Fills `out` band by band: `run(a, b)` records the GPU work for input rows [a, b) (the band and its halo) and
 * returns the output rows it computed, starting at output row `first`; rows outside [r0, r1) are dropped.
 */
async function banded(
  b: Bands,
  out: HostMap,
  rows: number,
  inputRows: (r0: number, r1: number) => [number, number],
  run: (a: number, z: number) => { t: Tensor; first: number },
  stats = true,
): Promise<HostMap> {
  for (let r0 = 0; r0 < out.H; r0 += rows) {
    const r1 = Math.min(out.H, r0 + rows);
    const [a, z] = inputRows(r0, r1);
    const { t, first } = scoped(b.dev, () => run(a, z));
    try {
      out.put(await t.read(), t.shape[2], first, r0, r1);
    } finally {
      t.release();
    }
  }
  if (stats) out.finish(b.groups);
  return out;
}

/** Norm (with the map's statistics) -> SiLU -> 3x3 conv over one band. */
function normConv(b: Bands, x: Tensor, map: HostMap, n: Norm, conv: Conv, residual?: Tensor): Tensor {
  const stats = upload(b.dev, map.stats, [map.stats.length], "f32");
  const h = groupNorm(x, b.groups, n.gamma, n.beta, EPS, { silu: true, stats });
  return applyConv(conv, h, { residual });
}

/** One 3x3 layer's input rows for output rows [r0, r1): one real row above and below where the map has one. */
const halo1 = (H: number) => (r0: number, r1: number): [number, number] => [Math.max(0, r0 - 1), Math.min(H, r1 + 1)];

async function resnetBands(b: Bands, r: Resnet, x: HostMap): Promise<HostMap> {
  const Cout = r.conv1.w.shape[0], { H, W } = x;
  const h = await banded(
    b,
    new HostMap(Cout, H, W),
    bandRows(b, Math.max(x.C, Cout), W, 2, 1),
    halo1(H),
    (a, z) => ({ t: normConv(b, x.rows(b.dev, a, z, b.dtype), x, r.norm1, r.conv1), first: a }),
  );
  return await banded(b, new HostMap(Cout, H, W), bandRows(b, Math.max(x.C, Cout), W, 2, 1), halo1(H), (a, z) => {
    const xb = x.rows(b.dev, a, z, b.dtype);
    const shortcut = r.conv_shortcut ? applyConv(r.conv_shortcut, xb) : xb;
    return { t: normConv(b, h.rows(b.dev, a, z, b.dtype), h, r.norm2, r.conv2, shortcut), first: a };
  });
}

/** Nearest 2x upsampling then a 3x3 conv; output rows in even-aligned bands so each maps to whole input rows. */
async function upsampleBands(b: Bands, conv: Conv, x: HostMap): Promise<HostMap> {
  const { C, H, W } = x;
  const rows = bandRows(b, C, 2 * W, 4, 2, true);
  return await banded(
    b,
    new HostMap(conv.w.shape[0], 2 * H, 2 * W),
    rows,
    (r0, r1) => [Math.max(0, r0 / 2 - 1), Math.min(H, Math.ceil(r1 / 2) + 1)],
    (a, z) => {
      const up = upsampleNearest(x.rows(b.dev, a, z, b.dtype), 2 * (z - a), 2 * W);
      return { t: applyConv(conv, up), first: 2 * a };
    },
  );
}

/**
 * latents [1, C, h, w] in UNet space -> decoder output `sample` [1, 3, 8h, 8w], as `vae.decode` gives, holding at
 * most a few `bandBytes` tensors of the up path at a time.
 */
export async function decodeInBands(vae: VAE, latents: Tensor, bandBytes: number): Promise<Tensor> {
  const [N, , h, w] = latents.shape;
  if (N !== 1) throw new Error(`decodeInBands: one frame at a time, got ${N}`);
  const dev = latents.dev, dtype = latents.dtype;
  const b: Bands = { vae, dev, dtype, groups: vae.cfg.norm_num_groups, bandBytes };
  const start = vae.decodeStart(latents);
  let x = new HostMap(start.shape[1], h, w);
  try {
    x.put(await start.read(), h, 0, 0, h);
  } finally {
    start.release();
  }
  x.finish(b.groups);
  for (const block of vae.decoder.blocks) {
    for (const r of block.resnets) x = await resnetBands(b, r, x);
    if (block.resample) x = await upsampleBands(b, block.resample, x);
  }
  const d = vae.decoder;
  const out = await banded(
    b,
    new HostMap(d.convOut.w.shape[0], x.H, x.W),
    bandRows(b, x.C, x.W, 2, 1),
    halo1(x.H),
    (a, z) => ({ t: normConv(b, x.rows(dev, a, z, dtype), x, d.normOut, d.convOut), first: a }),
    false,
  );
  return upload(dev, out.data, [1, out.C, out.H, out.W], dtype);
}

/** A plain 3x3 conv over bands (the encoder's conv_in reads the image). */
function convBands(b: Bands, conv: Conv, x: HostMap): Promise<HostMap> {
  return banded(
    b,
    new HostMap(conv.w.shape[0], x.H, x.W),
    bandRows(b, Math.max(x.C, conv.w.shape[0]), x.W, 2, 1),
    halo1(x.H),
    (a, z) => ({ t: applyConv(conv, x.rows(b.dev, a, z, b.dtype)), first: a }),
  );
}

/** diffusers' downsampler: pad (0, 1, 0, 1), 3x3 conv with stride 2. Output rows [r0, r1) read input rows
 *  [2 r0, 2 r1 + 1); the one padded row is the image's last. */
function downsampleBands(b: Bands, conv: Conv, x: HostMap): Promise<HostMap> {
  const { C, H, W } = x, Ho = Math.floor((H + 1 - 3) / 2) + 1, Wo = Math.floor((W + 1 - 3) / 2) + 1;
  return banded(
    b,
    new HostMap(conv.w.shape[0], Ho, Wo),
    Math.max(1, Math.floor((Math.floor(b.bandBytes / (C * W * BYTES[b.dtype])) - 1) / 2)),
    (r0, r1) => [2 * r0, Math.min(H, 2 * r1 + 1)],
    (a, z) => {
      const pad: [number, number, number, number] = [0, z === H ? 1 : 0, 0, 1];
      return { t: applyConv(conv, x.rows(b.dev, a, z, b.dtype), { stride: 2, padding: pad }), first: a / 2 };
    },
  );
}

/**
 * image [1, 3, H, W] in [-1, 1] -> posterior, as `vae.encode` gives, holding at most a few `bandBytes` tensors of
 * the down path at a time. `image` is read back once (it is small: 3 channels).
 */
export async function encodeInBands(vae: VAE, image: Tensor, bandBytes: number): Promise<Posterior> {
  const [N, C, H, W] = image.shape;
  if (N !== 1) throw new Error(`encodeInBands: one frame at a time, got ${N}`);
  if (!vae.encoder) throw new Error("vae: loaded without its encoder");
  const dev = image.dev, dtype = image.dtype;
  const b: Bands = { vae, dev, dtype, groups: vae.cfg.norm_num_groups, bandBytes };
  let x = new HostMap(C, H, W);
  x.put(await image.read(), H, 0, 0, H);
  x = await convBands(b, vae.encoder.convIn, x);
  for (const block of vae.encoder.blocks) {
    for (const r of block.resnets) x = await resnetBands(b, r, x);
    if (block.resample) x = await downsampleBands(b, block.resample, x);
  }
  const low = x.rows(dev, 0, x.H, dtype);
  try {
    return vae.encodeEnd(low);
  } finally {
    low.release();
  }
}
