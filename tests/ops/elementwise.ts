import { binary, type BinaryOp, unary, type UnaryOp } from "../../pipeline/ops/elementwise.ts";
import type { DType } from "../../pipeline/gpu/device.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import { gelu, geluTanh, quickGelu, silu } from "../ref.ts";
import type { OpCase, PerfCase } from "./types.ts";

const UNARY_REF: Record<UnaryOp, (v: number) => number> = {
  identity: (v) => v,
  silu,
  gelu,
  quick_gelu: quickGelu,
  gelu_tanh: geluTanh,
  exp: Math.exp,
  clamp01: (v) => Math.min(1, Math.max(0, v)),
  clamp: (v) => Math.min(1.5, Math.max(-0.75, v)),
};

function tolFor(dtype: DType) {
  return dtype === "f32" ? { maxAbs: 2e-6, relL2: 1e-6 } : { maxAbs: 2e-2, relL2: 2e-3 };
}

export const cases: OpCase[] = [];
for (const dtype of DTYPES) {
  for (const op of Object.keys(UNARY_REF) as UnaryOp[]) {
    // Counts that are multiples of 4 run on vec4 units (1000, 70004: not whole workgroups), the others on scalars.
    for (const n of [5, 1000, 70001, 70004]) {
      cases.push({
        op: `unary.${op}`,
        shape: `n=${n} alpha=1.3 beta=-0.2`,
        dtype,
        // exp reaches ~e^9 here (smaller inputs: f16 overflows past e^11): its absolute error scales with the value.
        tol: op === "exp" ? { relL2: tolFor(dtype).relL2 } : tolFor(dtype),
        async run(dev) {
          const x = quantize(randn(n, n + 7, op === "exp" ? 1.5 : 2), dtype);
          const tx = up(dev, x, [n], dtype);
          const y = unary(op, tx, { alpha: 1.3, beta: -0.2, lo: -0.75, hi: 1.5 });
          const got = await y.read();
          tx.release(), y.release();
          const want = Array.from(x, (v) => UNARY_REF[op](1.3 * v - 0.2));
          return { got, want: quantize(Float32Array.from(want), dtype) };
        },
      });
    }
  }
  // Both widths give the same values: the vec4 kernel on n elements against the scalar one on n + 1 (bit-exact).
  for (const op of ["silu", "gelu", "gelu_tanh", "exp"] as UnaryOp[]) {
    cases.push({
      op: `unary.${op}`,
      shape: "n=4096 vec4 == scalar (n=4097)",
      dtype,
      tol: { maxAbs: 0, relL2: 0 },
      async run(dev) {
        const n = 4096, x = quantize(randn(n + 1, 77, op === "exp" ? 1.5 : 3), dtype);
        const tx = up(dev, x, [n + 1], dtype);
        const opts = { alpha: 1.3, beta: -0.2 };
        const yv = unary(op, tx.view([n], 0), opts), ys = unary(op, tx, opts);
        const got = await yv.read(), want = (await ys.read()).subarray(0, n);
        tx.release(), yv.release(), ys.release();
        return { got, want };
      },
    });
  }
  const refs: Record<BinaryOp, (a: number, b: number) => number> = {
    add: (a, b) => a + b,
    mul: (a, b) => a * b,
    sub: (a, b) => a - b,
  };
  for (const op of Object.keys(refs) as BinaryOp[]) {
    // [N,C,H,W] with per-channel b, per-row b, same-shape b; the first three on scalars (210, 99, 105 elements), the
    // rest on vec4 units: same shape, b one value per unit (inner 20, [N, C] b over [N, C, H, W]), b varying inside a
    // unit (inner 35, inner 1 with rows of 33, inner 2).
    const BIN = [
      [[2, 5, 3, 7], 5, 21],
      [[3, 33], 33, 1],
      [[3, 7, 5], 105, 1],
      [[4, 9, 11], 396, 1],
      [[2, 8, 5, 4], 8, 20],
      [[2, 3, 4, 4], 6, 16],
      [[2, 6, 5, 7], 6, 35],
      [[4, 33], 33, 1],
      [[3, 2, 10], 10, 2],
    ] as const;
    for (const [shape, bn, inner] of BIN) {
      cases.push({
        op: `binary.${op}`,
        shape: `a=[${shape}] b=${bn} inner=${inner}`,
        dtype,
        tol: tolFor(dtype),
        async run(dev) {
          const n = shape.reduce((p, d) => p * d, 1);
          const a = quantize(randn(n, 11, 1), dtype), b = quantize(randn(bn, 12, 1), dtype);
          const ta = up(dev, a, [...shape], dtype), tb = up(dev, b, [bn], dtype);
          const y = binary(op, ta, tb, { inner, alpha: 0.7 });
          const got = await y.read();
          ta.release(), tb.release(), y.release();
          const want = Float32Array.from(a, (v, i) => refs[op](v, 0.7 * b[Math.floor(i / inner) % bn]));
          return { got, want: quantize(want, dtype) };
        },
      });
    }
  }
}

export const perf: PerfCase[] = [{
  op: "unary.silu",
  shape: "2x320x64x64",
  flops: 0,
  bytes: 2 * 2 * 320 * 64 * 64 * 4,
  setup(dev, dtype) {
    const n = 2 * 320 * 64 * 64;
    const x = up(dev, randn(n, 1), [n], dtype);
    const y = up(dev, randn(n, 2), [n], dtype);
    return () => unary("silu", x, { out: y });
  },
}, {
  op: "binary.add",
  shape: "2x320x64x64 same shape",
  flops: 0,
  bytes: 3 * 2 * 320 * 64 * 64 * 4,
  setup(dev, dtype) {
    const shape = [2, 320, 64, 64], n = 2 * 320 * 64 * 64;
    const a = up(dev, randn(n, 1), shape, dtype), b = up(dev, randn(n, 2), shape, dtype);
    const y = up(dev, randn(n, 3), shape, dtype);
    return () => binary("add", a, b, { out: y });
  },
}, {
  op: "binary.add",
  shape: "2x320x64x64 per-channel b",
  flops: 0,
  bytes: 2 * 2 * 320 * 64 * 64 * 4,
  setup(dev, dtype) {
    const shape = [2, 320, 64, 64], n = 2 * 320 * 64 * 64;
    const a = up(dev, randn(n, 1), shape, dtype), b = up(dev, randn(320, 2), [320], dtype);
    const y = up(dev, randn(n, 3), shape, dtype);
    return () => binary("add", a, b, { inner: 64 * 64, out: y });
  },
}];
