// Wall-clock GFLOP/s of the GEMM kernels (linear, conv2d) on the current adapter; not a test.
// deno run -A tools/time_gemm.ts [f32|f16] [filter]
import { Device, type DType } from "../pipeline/gpu/device.ts";
import { perf as linearPerf } from "../tests/ops/matmul.ts";
import { perf as convPerf } from "../tests/ops/conv2d.ts";

const dtype = (Deno.args[0] ?? "f32") as DType;
const filter = Deno.args[1] ?? "";
const dev = await Device.open();
console.log(`${dev.adapterName}, ${dtype}`);
for (const c of [...linearPerf, ...convPerf]) {
  const name = `${c.op} ${c.shape}`;
  if (!name.includes(filter)) continue;
  const call = c.setup(dev, dtype);
  call();
  await dev.sync(); // compile + warm up
  let n = 0;
  const t0 = performance.now();
  do {
    call();
    await dev.sync();
    n++;
  } while (performance.now() - t0 < 1500 && n < 50);
  const ms = (performance.now() - t0) / n;
  console.log(
    `${name.padEnd(44)} ${ms.toFixed(1).padStart(9)} ms ${(c.flops / ms / 1e6).toFixed(2).padStart(8)} GFLOP/s`,
  );
  dev.pool.trim();
}
dev.destroy();
