// Runs the op table: every kernel against its TypeScript reference, in f32 and f16. Each file in tests/ops/
// (except types.ts) exports `cases: OpCase[]` and optionally `perf: PerfCase[]` for the bench.
import { assertClose, gpuTest, testDevice } from "./util.ts";
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
// attention's row sums) again on a device with subgroups the other way round from the shared one (which uses them
// wherever the probe passes, llvmpipe included), so both variants are checked.
let other: Promise<{ dev: Device; on: boolean }> | null = null;
const otherDevice = async () => {
  const on = !(await testDevice()).subgroups;
  return { dev: await Device.open({ subgroups: on }), on };
};
for (const c of cases.filter((c) => /^(attention|groupNorm|layerNorm)|layerNorm/.test(`${c.op} ${c.shape}`))) {
  Deno.test({
    name: `${c.op} ${c.shape} ${c.dtype} (subgroups the other way)`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const { dev, on } = await (other ??= otherDevice());
      if (dev.subgroups !== on) throw new Error(`subgroups ${on ? "on" : "off"} asked, got: ${dev.subgroupNote}`);
      const { got, want } = await c.run(dev);
      assertClose(got, want, c.tol, `${c.op} ${c.shape} ${c.dtype} (subgroups ${on ? "on" : "off"})`);
    },
  });
}
