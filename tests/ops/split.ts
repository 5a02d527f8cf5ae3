// Oversized operands: every op the models use, run once as is and once with the binding limit the ops see forced
// small (as on a GPU with a small maxStorageBufferBindingSize), so that it must split its work between dispatches
// (batches, rows, channel planes, groups, query rows, channel blocks). The split result must equal the unsplit one:
// exactly where each output is computed the same way, within GEMM rounding where a convolution sums input channel
// blocks separately.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import type { Tensor } from "../../pipeline/gpu/tensor.ts";
import { attention } from "../../pipeline/ops/attention.ts";
import { conv2d } from "../../pipeline/ops/conv2d.ts";
import { binary, unary } from "../../pipeline/ops/elementwise.ts";
import { linear } from "../../pipeline/ops/matmul.ts";
import { concat, transposeLast2, upsampleNearest } from "../../pipeline/ops/layout.ts";
import { groupNorm, layerNorm } from "../../pipeline/ops/norm.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import { gemmTol } from "./matmul.ts";
import type { OpCase } from "./types.ts";

const EXACT = { maxAbs: 0, relL2: 0 };

/** Inputs on the device, the call under test, and what to release afterwards. */
interface Setup {
  call(): Tensor;
  inputs: Tensor[];
}

function splitCase(
  op: string,
  shape: string,
  dtype: DType,
  maxBinding: number,
  tol: { maxAbs: number; relL2: number },
  setup: (dev: Device, dtype: DType) => Setup,
): OpCase {
  return {
    op: `${op} split`,
    shape: `${shape} binding<=${maxBinding}B`,
    dtype,
    tol,
    async run(dev) {
      const s = setup(dev, dtype);
      let n0 = dev.dispatches;
      const whole = s.call();
      const unsplit = dev.dispatches - n0;
      const want = await whole.read();
      whole.release();
      n0 = dev.dispatches;
      const restore = dev.lowerLimits({ maxBinding });
      let y: Tensor;
      try {
        y = s.call();
      } finally {
        restore();
      }
      const split = dev.dispatches - n0;
      if (split <= unsplit) throw new Error(`no split happened (${split} dispatches, ${unsplit} unsplit)`);
      const got = await y.read();
      y.release();
      for (const t of s.inputs) t.release();
      return { got, want };
    },
  };
}

function rand(dev: Device, shape: number[], seed: number, dtype: DType, scale = 1): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  return up(dev, quantize(randn(n, seed, scale), dtype), shape, dtype);
}

export const cases: OpCase[] = [];
for (const dtype of DTYPES) {
  const add = (
    op: string,
    shape: string,
    limit: number,
    setup: (dev: Device, dtype: DType) => Setup,
    tol = EXACT,
  ) => cases.push(splitCase(op, shape, dtype, limit, tol, setup));

  add("unary silu", "x=[3000]", 2048, (dev, dt) => {
    const x = rand(dev, [3000], 1, dt);
    return { call: () => unary("silu", x), inputs: [x] };
  });
  // An odd count: scalar units, chunks split at aligned offsets all the same.
  add("unary gelu", "x=[3001]", 2048, (dev, dt) => {
    const x = rand(dev, [3001], 45, dt);
    return { call: () => unary("gelu", x), inputs: [x] };
  });
  add("binary add", "a=b=[5000]", 4096, (dev, dt) => {
    const a = rand(dev, [5000], 2, dt), b = rand(dev, [5000], 3, dt);
    return { call: () => binary("add", a, b), inputs: [a, b] };
  });
  // Broadcasts: b is bound whole and indexed from each range's first element.
  add("binary mul", "a=[2,8,16,16] b=[8] inner=256", 4096, (dev, dt) => {
    const a = rand(dev, [2, 8, 16, 16], 4, dt), b = rand(dev, [8], 5, dt);
    return { call: () => binary("mul", a, b, { inner: 256 }), inputs: [a, b] };
  });
  // The ResNet time-embedding add: b [B, C] over [B, C, H, W].
  add("binary add", "a=[2,6,8,8] b=[2,6] inner=64", 1024, (dev, dt) => {
    const a = rand(dev, [2, 6, 8, 8], 6, dt), b = rand(dev, [2, 6], 7, dt);
    return { call: () => binary("add", a, b, { inner: 64 }), inputs: [a, b] };
  });
  add("binary sub", "a=[6,100] b=[100] alpha=0.5", 1024, (dev, dt) => {
    const a = rand(dev, [6, 100], 8, dt), b = rand(dev, [100], 9, dt);
    return { call: () => binary("sub", a, b, { alpha: 0.5 }), inputs: [a, b] };
  });
  // GEGLU and LayerNorm fused into the feed-forward GEMM (rows split).
  add("linear geglu", "x=[5,30,16] w=[32,16]", 2048, (dev, dt) => {
    const x = rand(dev, [5, 30, 16], 10, dt), w = rand(dev, [32, 16], 40, dt, 1 / Math.sqrt(16));
    const b = rand(dev, [32], 41, dt, 0.5);
    return { call: () => linear(x, w, b, { geglu: true }), inputs: [x, w, b] };
  });
  add("linear layerNorm geglu", "x=[6,50,20] w=[40,20] (scalar path)", 4096, (dev, dt) => {
    const x = rand(dev, [6, 50, 20], 11, dt, 2), w = rand(dev, [40, 20], 42, dt, 1 / Math.sqrt(20));
    const g = rand(dev, [20], 43, dt), be = rand(dev, [20], 44, dt);
    const layerNorm = { gamma: g, beta: be, eps: 1e-5 };
    return { call: () => linear(x, w, undefined, { geglu: true, layerNorm }), inputs: [x, w, g, be] };
  });
  add("layerNorm", "x=[40,48]", 1024, (dev, dt) => {
    const x = rand(dev, [40, 48], 12, dt, 2), g = rand(dev, [48], 13, dt), b = rand(dev, [48], 14, dt);
    return { call: () => layerNorm(x, g, b, 1e-5), inputs: [x, g, b] };
  });
  // Whole images per dispatch, then the groups of one image.
  add("groupNorm silu", "x=[5,8,8,8] groups=2", 4096, (dev, dt) => {
    const x = rand(dev, [5, 8, 8, 8], 15, dt, 2), g = rand(dev, [8], 16, dt), b = rand(dev, [8], 17, dt);
    return { call: () => groupNorm(x, 2, g, b, 1e-6, { silu: true }), inputs: [x, g, b] };
  });
  add("groupNorm", "x=[2,16,8,8] groups=4 (inside an image)", 2048, (dev, dt) => {
    const x = rand(dev, [2, 16, 8, 8], 18, dt, 2), g = rand(dev, [16], 19, dt), b = rand(dev, [16], 20, dt);
    return { call: () => groupNorm(x, 4, g, b, 1e-5), inputs: [x, g, b] };
  });
  add("upsampleNearest", "x=[2,6,8,8] -> 16x16", 2048, (dev, dt) => {
    const x = rand(dev, [2, 6, 8, 8], 21, dt);
    return { call: () => upsampleNearest(x, 16, 16), inputs: [x] };
  });
  add("upsampleNearest", "x=[2,6,8,6] -> 16x12 (general kernel)", 4096, (dev, dt) => {
    const x = rand(dev, [2, 6, 8, 6], 46, dt);
    return { call: () => upsampleNearest(x, 16, 12), inputs: [x] };
  });
  add("transposeLast2", "x=[6,20,16]", 2048, (dev, dt) => {
    const x = rand(dev, [6, 20, 16], 22, dt);
    return { call: () => transposeLast2(x), inputs: [x] };
  });
  add("transposeLast2", "x=[6,64,6] (scalar)", 2048, (dev, dt) => {
    const x = rand(dev, [6, 64, 6], 47, dt);
    return { call: () => transposeLast2(x), inputs: [x] };
  });
  // Blocks of several batches, then (one output row exceeding the limit) pieces of one block.
  add("concat", "[3,5,64] + [3,7,64]", 2048, (dev, dt) => {
    const a = rand(dev, [3, 5, 64], 23, dt), b = rand(dev, [3, 7, 64], 24, dt);
    return { call: () => concat([a, b]), inputs: [a, b] };
  });
  add("concat", "[2,40,64] + [2,3,64]", 1024, (dev, dt) => {
    const a = rand(dev, [2, 40, 64], 25, dt), b = rand(dev, [2, 3, 64], 26, dt);
    return { call: () => concat([a, b]), inputs: [a, b] };
  });
  // Cross-frame attention (kvBatchDiv 2): one query batch per dispatch, then query rows of one batch; k/v of 7
  // tokens sit at unaligned offsets (copied).
  for (const [Nk, limit] of [[64, 4096], [32, 2048], [7, 2048]]) {
    add("attention", `q=[4,64,16] k=[2,${Nk},16] heads=2 kvBatchDiv=2`, limit, (dev, dt) => {
      const q = rand(dev, [4, 64, 16], 27, dt), k = rand(dev, [2, Nk, 16], 28, dt), v = rand(dev, [2, Nk, 16], 29, dt);
      return { call: () => attention(q, k, v, 2, { kvBatchDiv: 2 }), inputs: [q, k, v] };
    });
  }
  // One image past the limit: output channel blocks (exact) and input channel blocks (partial sums: GEMM rounding).
  add("conv2d", "x=[2,8,16,16] Cout=12 k=3 pad=1 bias res", 4096, (dev, dt) => {
    const x = rand(dev, [2, 8, 16, 16], 30, dt), w = rand(dev, [12, 8, 3, 3], 31, dt, 1 / Math.sqrt(72));
    const b = rand(dev, [12], 32, dt, 0.5), r = rand(dev, [2, 12, 16, 16], 33, dt);
    return { call: () => conv2d(x, w, b, { padding: 1, residual: r }), inputs: [x, w, b, r] };
  }, gemmTol(dtype));
  add("conv2d", "x=[1,4,16,16] Cout=16 k=1 (output channel blocks only)", 4096, (dev, dt) => {
    const x = rand(dev, [1, 4, 16, 16], 34, dt), w = rand(dev, [16, 4, 1, 1], 35, dt, 0.5);
    return { call: () => conv2d(x, w), inputs: [x, w] };
  });
  add("conv2d", "x=[1,8,16,16] Cout=8 k=3 s=2 pad=[0,1,0,1] res=out", 2048, (dev, dt) => {
    const x = rand(dev, [1, 8, 16, 16], 36, dt), w = rand(dev, [8, 8, 3, 3], 37, dt, 1 / Math.sqrt(72));
    const b = rand(dev, [8], 38, dt, 0.5), base = quantize(randn(8 * 64, 39), dt);
    const inputs = [x, w, b];
    return {
      // y += conv(x) in place: a fresh residual per call, so both calls start from the same values.
      call: () => {
        const r = up(dev, base, [1, 8, 8, 8], dt);
        return conv2d(x, w, b, { stride: 2, padding: [0, 1, 0, 1], residual: r, out: r });
      },
      inputs,
    };
  }, gemmTol(dtype));
}
