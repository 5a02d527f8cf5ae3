// deno task golden [DIR] [--only kind1,kind2,...] [--precision f32|f16]
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Device, type DType } from "../pipeline/gpu/device.ts";
import { GOLDEN_DIR } from "../fixtures/paths.ts";
import { formatResult, listCases, loadHandlers, runCase } from "./golden/runner.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { only: { type: "string" }, precision: { type: "string", default: "f32" } },
  allowPositionals: true,
});
const precision = values.precision as DType;
if (precision !== "f32" && precision !== "f16") {
  console.error(`--precision must be f32 or f16, got "${values.precision}"`);
  Deno.exit(2);
}
const dir = resolve(positionals[0] ?? GOLDEN_DIR);
const only = values.only ? values.only.split(",").map((s) => s.trim()).filter(Boolean) : undefined;

const dev = await Device.open();
console.log(`golden: ${dir} on ${dev.adapterName}, precision ${precision}`);
const handlers = await loadHandlers();
let passed = 0, failed = 0;
for (const c of await listCases(dir, only)) {
  const r = await runCase(dev, dir, c.name, precision, handlers);
  console.log(formatResult(r));
  r.pass ? passed++ : failed++;
}
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(failed ? 1 : 0);
