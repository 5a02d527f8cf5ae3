import { concat, gather0, transposeLast2, upsampleNearest } from "../../pipeline/ops/layout.ts";
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import type { Tensor } from "../../pipeline/gpu/tensor.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import type { OpCase, PerfCase } from "./types.ts";

// Pure data movement: results must be bit-exact.
const EXACT = { maxAbs: 0, relL2: 0 };

const numel = (s: number[]) => s.reduce((p, d) => p * d, 1);

/** Read y (after checking its shape) and release it and the inputs. */
async function readAll(y: Tensor, shape: number[], ...inputs: Tensor[]): Promise<Float32Array> {
  if (y.shape.join() !== shape.join()) throw new Error(`output shape [${y.shape}], want [${shape}]`);
  const got = await y.read();
  for (const t of inputs) t.release();
  y.release();
  return got;
}

export const cases: OpCase[] = [];
for (const dtype of DTYPES) {
  // [N, C, H, W, Ho, Wo]: x2 (vec4 and scalar stores), odd sizes, non-integer ratios, downsampling, 1x1 -> 3x5.
  // Exactly 2x with W a multiple of 4 runs upsample2x.wgsl ([3,2,4,4], [2,3,5,8], [1,3,3,12]); 2x with W = 6 and
  // W = 7 the general kernel (vec4 stores for Wo = 12, scalars for 14), as do 2x in one dimension only.
  const UP = [
    [2, 3, 5, 7, 10, 14],
    [3, 2, 4, 4, 8, 8],
    [1, 4, 3, 5, 7, 12],
    [2, 1, 6, 6, 4, 5],
    [1, 2, 1, 1, 3, 5],
    [2, 3, 5, 8, 10, 16],
    [1, 3, 3, 12, 6, 24],
    [2, 2, 3, 6, 6, 12],
    [1, 2, 3, 8, 3, 16],
    [1, 2, 3, 8, 6, 8],
  ];
  for (const [N, C, H, W, Ho, Wo] of UP) {
    cases.push({
      op: "upsampleNearest",
      shape: `[${N},${C},${H},${W}] -> ${Ho}x${Wo}`,
      dtype,
      tol: EXACT,
      async run(dev) {
        const x = quantize(randn(N * C * H * W, H * W + Ho, 1), dtype);
        const tx = up(dev, x, [N, C, H, W], dtype);
        const got = await readAll(upsampleNearest(tx, Ho, Wo), [N, C, Ho, Wo], tx);
        const want = new Float32Array(N * C * Ho * Wo);
        for (let p = 0; p < N * C; p++) {
          for (let oy = 0; oy < Ho; oy++) {
            for (let ox = 0; ox < Wo; ox++) {
              const iy = Math.floor(oy * H / Ho), ix = Math.floor(ox * W / Wo);
              want[(p * Ho + oy) * Wo + ox] = x[(p * H + iy) * W + ix];
            }
          }
        }
        return { got, want };
      },
    });
  }

  // Lists of input shapes: UNet skip (16-byte units), odd channel/spatial counts (single f16s; f32 as u32 words),
  // mixed widths, 2-D, 3-D, three inputs, and f16 in 8-byte (vec2u) and 4-byte (u32) units (the last two).
  const CAT = [
    [[2, 8, 4, 4], [2, 4, 4, 4]],
    [[2, 3, 2, 2], [2, 1, 2, 2]],
    [[2, 3, 2], [2, 2, 2]],
    [[3, 3, 5, 7], [3, 2, 5, 7]],
    [[2, 4, 3, 3], [2, 3, 3, 3], [2, 1, 3, 3]],
    [[3, 5], [3, 8]],
    [[2, 6, 7], [2, 1, 7]],
    [[2, 12, 8], [2, 4, 8], [2, 5, 8]],
  ];
  for (const shapes of CAT) {
    cases.push({
      op: "concat",
      shape: shapes.map((s) => `[${s}]`).join(" + "),
      dtype,
      tol: EXACT,
      async run(dev) {
        const xs = shapes.map((s, i) => quantize(randn(numel(s), 31 * i + numel(s), 1), dtype));
        const ts = xs.map((x, i) => up(dev, x, shapes[i], dtype));
        const [N, , ...rest] = shapes[0];
        const R = numel(rest), Ct = shapes.reduce((s, sh) => s + sh[1], 0);
        const got = await readAll(concat(ts), [N, Ct, ...rest], ...ts);
        const want: number[] = [];
        for (let n = 0; n < N; n++) {
          xs.forEach((x, i) => want.push(...x.subarray(n * shapes[i][1] * R, (n + 1) * shapes[i][1] * R)));
        }
        return { got, want };
      },
    });
  }

  // [..., A, C]: NCHW -> tokens and back, sizes off the 32-tile grid, 2-D, 4-D leading dims, single row/column.
  // vec4 units when A and C are multiples of 4 ([3,64,32] and the last four: partial tiles, A = 4, 4-D), scalars
  // otherwise (also when only one of them is).
  const TR = [
    [2, 45, 70],
    [3, 64, 32],
    [33, 1],
    [1, 77],
    [2, 3, 37, 9],
    [40, 33],
    [2, 36, 45],
    [2, 36, 44],
    [3, 4, 100],
    [68, 8],
    [2, 2, 40, 12],
  ];
  for (const shape of TR) {
    cases.push({
      op: "transposeLast2",
      shape: `[${shape}]`,
      dtype,
      tol: EXACT,
      async run(dev) {
        const x = quantize(randn(numel(shape), numel(shape) + 1, 1), dtype);
        const tx = up(dev, x, shape, dtype);
        const [A, C] = shape.slice(-2), lead = shape.slice(0, -2), B = numel(lead);
        const got = await readAll(transposeLast2(tx), [...lead, C, A], tx);
        const want = new Float32Array(x.length);
        for (let b = 0; b < B; b++) {
          for (let a = 0; a < A; a++) for (let c = 0; c < C; c++) want[(b * C + c) * A + a] = x[(b * A + a) * C + c];
        }
        return { got, want };
      },
    });
  }

  // [shape, index]: runs of consecutive rows, repeats, odd f16 rows (kernel path) and 4-byte rows (copy path).
  const GA: [number[], number[]][] = [
    [[5, 3, 4], [0, 0, 2, 3, 4, 1]],
    [[4, 7], [3, 1, 2, 0]],
    [[6, 3], [1, 2, 3, 5]],
    [[3, 2, 5, 5], [2]],
    [[4, 5], []],
  ];
  for (const [shape, index] of GA) {
    cases.push({
      op: "gather0",
      shape: `[${shape}] index=[${index}]`,
      dtype,
      tol: EXACT,
      async run(dev) {
        const x = quantize(randn(numel(shape), numel(shape) + 2, 1), dtype);
        const tx = up(dev, x, shape, dtype);
        const inner = numel(shape.slice(1));
        const got = await readAll(gather0(tx, index), [index.length, ...shape.slice(1)], tx);
        const want: number[] = [];
        for (const r of index) want.push(...x.subarray(r * inner, (r + 1) * inner));
        return { got, want };
      },
    });
  }

  // Views at element offsets (not 256-byte aligned): gather0 from one, concat of two.
  cases.push({
    op: "gather0",
    shape: "view of [4,3] at row 1, index=[2,0]",
    dtype,
    tol: EXACT,
    async run(dev) {
      const x = quantize(randn(15, 5, 1), dtype);
      const tx = up(dev, x, [5, 3], dtype);
      const got = await readAll(gather0(tx.slice0(1, 4), [2, 0]), [2, 3], tx);
      return { got, want: [...x.subarray(9, 12), ...x.subarray(3, 6)] };
    },
  });
  // Views whose offsets are whole 16-byte words (f16 and f32): the widest unit, starting inside the binding.
  cases.push({
    op: "concat",
    shape: "views [2,8] at 8 + [2,16] at 40 of one buffer",
    dtype,
    tol: EXACT,
    async run(dev) {
      const x = quantize(randn(80, 8, 1), dtype);
      const tx = up(dev, x, [80], dtype);
      const a = tx.view([2, 8], 8), b = tx.view([2, 16], 40);
      const got = await readAll(concat([a, b]), [2, 24], tx);
      const want = [...x.subarray(8, 16), ...x.subarray(40, 56), ...x.subarray(16, 24), ...x.subarray(56, 72)];
      return { got, want };
    },
  });
  cases.push({
    op: "concat",
    shape: "views [2,3] at 1 + [2,2] at 13 of one buffer",
    dtype,
    tol: EXACT,
    async run(dev) {
      const x = quantize(randn(20, 6, 1), dtype);
      const tx = up(dev, x, [20], dtype);
      const a = tx.view([2, 3], 1), b = tx.view([2, 2], 13);
      const got = await readAll(concat([a, b]), [2, 5], tx);
      return { got, want: [...x.subarray(1, 4), ...x.subarray(13, 15), ...x.subarray(4, 7), ...x.subarray(15, 17)] };
    },
  });
}

export const perf: PerfCase[] = [
  {
    op: "concat",
    shape: "2x(640+320)x64x64",
    flops: 0,
    bytes: 2 * 2 * 960 * 64 * 64 * 4,
    setup(dev: Device, dtype: DType) {
      const a = up(dev, randn(2 * 640 * 4096, 1), [2, 640, 64, 64], dtype);
      const b = up(dev, randn(2 * 320 * 4096, 2), [2, 320, 64, 64], dtype);
      return () => concat([a, b]).release();
    },
  },
  {
    op: "upsampleNearest",
    shape: "2x640x32x32 -> 64x64",
    flops: 0,
    bytes: 5 * 2 * 640 * 32 * 32 * 4,
    setup(dev: Device, dtype: DType) {
      const x = up(dev, randn(2 * 640 * 1024, 1), [2, 640, 32, 32], dtype);
      return () => upsampleNearest(x, 64, 64).release();
    },
  },
  {
    op: "transposeLast2",
    shape: "2x320x4096",
    flops: 0,
    bytes: 2 * 2 * 320 * 4096 * 4,
    setup(dev: Device, dtype: DType) {
      const x = up(dev, randn(2 * 320 * 4096, 1), [2, 320, 4096], dtype);
      return () => transposeLast2(x).release();
    },
  },
];
