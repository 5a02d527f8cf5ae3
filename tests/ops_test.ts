// Runs the op table: every kernel against its TypeScript reference, in f32 and f16.
import { assertClose, gpuTest } from "./util.ts";
import type { OpCase } from "./ops/types.ts";
import { cases as elementwise } from "./ops/elementwise.ts";

const table: OpCase[] = [...elementwise];

for (const c of table) {
  gpuTest(`${c.op} ${c.shape} ${c.dtype}`, async (dev) => {
    const { got, want } = await c.run(dev);
    assertClose(got, want, c.tol, `${c.op} ${c.shape} ${c.dtype}`);
  });
}
