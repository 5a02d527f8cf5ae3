// Runs the op table: every kernel against its TypeScript reference, in f32 and f16. Each file in tests/ops/
// (except types.ts) exports `cases: OpCase[]` and optionally `perf: PerfCase[]` for the bench.
import { assertClose, gpuTest } from "./util.ts";
import { loadOpTable } from "./ops/table.ts";

for (const c of (await loadOpTable()).cases) {
  gpuTest(`${c.op} ${c.shape} ${c.dtype}`, async (dev) => {
    const { got, want } = await c.run(dev);
    assertClose(got, want, c.tol, `${c.op} ${c.shape} ${c.dtype}`);
  });
}
