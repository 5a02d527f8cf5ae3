// randomFill (shaders/random_fill.wgsl) against its TypeScript twin randomValues: bit-exact in f32, and in f16 equal
// to the twin's values rounded to f16. Every case fills a range of a tensor preset to a sentinel and checks the
// whole tensor, so a write outside the range (a neighbouring f16 in the same word included) shows.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { empty, type Tensor } from "../../pipeline/gpu/tensor.ts";
import { randomFill, type RandomSpec, randomValues } from "../../pipeline/ops/random.ts";
import { DTYPES, quantize, up } from "../util.ts";
import type { OpCase, PerfCase } from "./types.ts";

const EXACT = { maxAbs: 0, relL2: 0 };
const SENTINEL = 7.5;

interface Fill {
  what: string;
  /** Elements of the tensor. */
  n: number;
  /** Fill the view of `view[1]` elements at `view[0]` instead of the whole tensor. */
  view?: [number, number];
  start: number;
  count: number;
  spec: RandomSpec;
  /** Force pieces: the binding limit the op sees (bytes). */
  maxBinding?: number;
}

const FILLS: Fill[] = [
  // Scalars: an odd start and count (f16: halves of words whose other half keeps the sentinel), a nonzero offset
  // (the add rounds), several workgroups and a partial one.
  {
    what: "scalar, odd start and count",
    n: 1003,
    start: 5,
    count: 777,
    spec: { seed: 0x9e3779b9, offset: 1, scale: 0.1 },
  },
  { what: "scalar, 9 values", n: 20, start: 7, count: 9, spec: { seed: 1, offset: 0.25, scale: 0.7 } },
  // vec4 units: start and count multiples of 4, count off the 1024-element workgroup grid.
  { what: "vec4", n: 3 * 1032, start: 1032, count: 2052, spec: { seed: 12345, offset: 0, scale: 1 / Math.sqrt(1032) } },
  // A view at an element offset that no binding can start at: bound from the aligned offset below it.
  {
    what: "view at element 301",
    n: 2000,
    view: [301, 900],
    start: 2,
    count: 800,
    spec: { seed: 77, offset: 0, scale: 2 },
  },
  // More than 65535 workgroups of scalars: the grid folds into 2-D.
  {
    what: "2-D grid",
    n: 65535 * 256 + 1003,
    start: 1,
    count: 65535 * 256 + 1001,
    spec: { seed: 0xdeadbeef, offset: 0, scale: 0.02 * Math.sqrt(3) },
  },
  // Pieces past the binding limit (the first at an odd element, the rest continuing its vec4 grid or not).
  {
    what: "pieces",
    n: 5000,
    start: 3,
    count: 4990,
    spec: { seed: 42, offset: -1, scale: 0.5 },
    maxBinding: 1024,
  },
  { what: "vec4 pieces", n: 6000, start: 8, count: 5900, spec: { seed: 43, offset: 0, scale: 0.05 }, maxBinding: 2048 },
];

async function runFill(dev: Device, f: Fill, dtype: DType): Promise<{ got: Float32Array; want: Float32Array }> {
  const t = up(dev, new Float32Array(f.n).fill(SENTINEL), [f.n], dtype);
  const [v0, vn] = f.view ?? [0, f.n];
  const out = f.view ? t.view([vn], v0) : t;
  const restore = f.maxBinding ? dev.lowerLimits({ maxBinding: f.maxBinding }) : () => {};
  const n0 = dev.dispatches;
  try {
    randomFill(out, f.spec, { start: f.start, count: f.count });
  } finally {
    restore();
  }
  if (f.maxBinding && dev.dispatches - n0 < 2) throw new Error(`no split happened (${dev.dispatches - n0} dispatch)`);
  const got = await t.read();
  t.release();
  const want = new Float32Array(f.n).fill(SENTINEL);
  want.set(quantize(randomValues(f.spec, f.count), dtype), v0 + f.start);
  return { got, want };
}

export const cases: OpCase[] = [];
for (const dtype of DTYPES) {
  for (const f of FILLS) {
    cases.push({
      op: "randomFill",
      shape:
        `${f.what}: [${f.n}]${f.view ? ` view ${f.view[1]} at ${f.view[0]}` : ""} start ${f.start} count ${f.count}` +
        (f.maxBinding ? ` binding<=${f.maxBinding}B` : ""),
      dtype,
      tol: EXACT,
      run: (dev) => runFill(dev, f, dtype),
    });
  }
}

export const perf: PerfCase[] = [{
  op: "randomFill",
  shape: "1280x1280x3x3",
  flops: 0,
  bytes: 1280 * 1280 * 9 * 4,
  setup(dev, dtype) {
    const y: Tensor = empty(dev, [1280, 1280, 3, 3], dtype);
    return () => randomFill(y, { seed: 1, offset: 0, scale: 1 / Math.sqrt(1280 * 9) });
  },
}];
