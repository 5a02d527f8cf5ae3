// gpu-check's ceiling probes (pipeline/ops/probe.ts): the multiply-add chains against a TypeScript replay that
// rounds to the storage dtype at every step, and the copy bit for bit.
import { probeCopy, probeFma } from "../../pipeline/ops/probe.ts";
import { empty } from "../../pipeline/gpu/tensor.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import type { OpCase } from "./types.ts";

const round = (dtype: string) => dtype === "f32" ? Math.fround : Math.f16round;

export const cases: OpCase[] = [];
for (const dtype of DTYPES) {
  // 1000 vec4s: not a multiple of the 256-thread workgroup.
  // 50 steps: 6 unrolled iterations of 8 and 2 more (or 50 of one); 1 step: the remainder loop alone.
  for (const [vecs, iters, unroll] of [[1000, 50, 8], [1000, 50, 1], [3, 1, 8]] as const) {
    cases.push({
      op: "probeFma",
      shape: `vec4s=${vecs} iters=${iters} unroll=${unroll}`,
      dtype,
      // Fused or not, each step rounds once or twice to T: the replay rounds after the multiply and the add.
      tol: dtype === "f32" ? { maxAbs: 1e-5, relL2: 1e-6 } : { maxAbs: 2e-2, relL2: 4e-3 },
      async run(dev) {
        const a = 0.9, b = 0.05, r = round(dtype);
        const out = empty(dev, [vecs * 4], dtype);
        probeFma(out, iters, a, b, unroll);
        const got = await out.read();
        out.release();
        const want = new Float32Array(vecs * 4);
        for (let i = 0; i < vecs; i++) {
          for (let lane = 0; lane < 4; lane++) {
            let sum = 0;
            for (let chain = 0; chain < 4; chain++) {
              const s = r((i % 7) * 0.125);
              let x = r(r(s + lane * 0.25) + chain * 0.0625);
              for (let k = 0; k < iters; k++) x = r(r(x * r(a)) + r(b));
              sum = chain ? r(sum + x) : x;
            }
            want[i * 4 + lane] = sum;
          }
        }
        return { got, want };
      },
    });
  }
  for (const n of [4096 + 8, 8]) {
    cases.push({
      op: "probeCopy",
      shape: `n=${n}`,
      dtype,
      tol: { maxAbs: 0, relL2: 0 },
      async run(dev) {
        const x = quantize(randn(n, n, 1), dtype);
        const tx = up(dev, x, [n], dtype), ty = empty(dev, [n], dtype);
        probeCopy(tx, ty);
        const got = await ty.read();
        tx.release(), ty.release();
        return { got, want: x };
      },
    });
  }
}
