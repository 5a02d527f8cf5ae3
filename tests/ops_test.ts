// Runs the op table: every kernel against its TypeScript reference, in f32 and f16. Each file in tests/ops/
// (except types.ts) exports `cases: OpCase[]` and optionally `perf: PerfCase[]` for the bench.
import { assertClose, gpuTest } from "./util.ts";
import { loadOpTable } from "./ops/table.ts";
import { Device } from "../pipeline/gpu/device.ts";

const { cases } = await loadOpTable();
for (const c of cases) {
  gpuTest(`${c.op} ${c.shape} ${c.dtype}`, async (dev) => {
    const { got, want } = await c.run(dev);
    assertClose(got, want, c.tol, `${c.op} ${c.shape} ${c.dtype}`);
  });
}

// The kernels with subgroup variants (pipeline/gpu/subgroups.ts: GroupNorm, LayerNorm, the GEMM's LayerNorm prologue,
// attention's row sums) again on a device that uses subgroups. Requested even where the adapter does not list the
// feature: llvmpipe runs subgroup operations anyway, so CI checks the variants a real GPU takes.
let sgDevice: Promise<Device> | null = null;
for (const c of cases.filter((c) => /^(attention|groupNorm|layerNorm)|layerNorm/.test(`${c.op} ${c.shape}`))) {
  Deno.test({
    name: `${c.op} ${c.shape} ${c.dtype} (subgroups)`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const dev = await (sgDevice ??= Device.open({ subgroups: true }));
      if (!dev.subgroups) throw new Error(`this adapter gives no subgroups to test: ${dev.subgroupNote}`);
      const { got, want } = await c.run(dev);
      assertClose(got, want, c.tol, `${c.op} ${c.shape} ${c.dtype} (subgroups)`);
    },
  });
}
