import { geglu } from "../../pipeline/ops/geglu.ts";
import type { DType } from "../../pipeline/gpu/device.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import { gelu } from "../ref.ts";
import type { OpCase, PerfCase } from "./types.ts";

// f32: 1 + erf(g/sqrt2) cancels for negative gates, so even a correctly rounded erf gives ~2e-6 relative error
// // there (as in torch's f32 formula). f16: |y| reaches ~30, where a one-ulp rounding flip is 3.1e-2.
const tolFor = (dtype: DType) => dtype === "f32" ? { maxAbs: 1e-5, relL2: 1e-5 } : { maxAbs: 3.2e-2, relL2: 1e-4 };

export const cases: OpCase[] = [];
// [shape of x]: odd D (scalar path), vec4 D, batch 3, a 1-D input, SD's 2x1280 and many rows of an odd D.
const SHAPES = [[3, 7, 10], [2, 5, 24], [3, 1, 2], [6], [2, 77, 2 * 1280], [700, 2 * 130]];
for (const dtype of DTYPES) {
  for (const shape of SHAPES) {
    cases.push({
      op: "geglu",
      shape: `x=[${shape}]`,
      dtype,
      tol: tolFor(dtype),
      async run(dev) {
        const n = shape.reduce((p, d) => p * d, 1);
        const D = shape[shape.length - 1] / 2;
        const x = quantize(randn(n, n + 3, 1.5), dtype);
        const tx = up(dev, x, shape, dtype);
        const y = geglu(tx);
        const outShape = [...shape.slice(0, -1), D];
        if (y.shape.join() !== outShape.join()) throw new Error(`geglu: output [${y.shape}], want [${outShape}]`);
        const got = await y.read();
        tx.release(), y.release();
        const want = new Float32Array(n / 2);
        for (let i = 0; i < want.length; i++) {
          const r = Math.floor(i / D), j = i % D;
          want[i] = x[2 * D * r + j] * gelu(x[2 * D * r + D + j]);
        }
        return { got, want: quantize(want, dtype) };
      },
    });
  }
}

export const perf: PerfCase[] = [{
  op: "geglu",
  shape: "2x4096x2560",
  flops: 0,
  bytes: (2 * 4096 * 2560 + 2 * 4096 * 1280) * 4,
  setup(dev, dtype) {
    const x = up(dev, randn(2 * 4096 * 2560, 1), [2, 4096, 2560], dtype);
    return () => geglu(x).release();
  },
}];
