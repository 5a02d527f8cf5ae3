// gpu-check, section 2: correctness on this adapter. The op table (tests/ops/*.ts, each kernel against its plain
// TypeScript reference) and the golden set (fixtures/golden, the upstream implementation's outputs) in f32 and f16,
// through the same case lists and runner as tests/ops_test.ts, tests/golden_test.ts and `deno task golden`.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { loadOpTable } from "../../tests/ops/table.ts";
import { assertClose } from "../../tests/util.ts";
import { listCases, loadHandlers, runCase } from "../golden/runner.ts";
import { errorMessage, recover } from "../bench/measure.ts";

export interface Failure {
  name: string;
  message: string;
}

export interface Counts {
  /** Cases in the set (before any --small selection). */
  total: number;
  run: number;
  passed: number;
  failed: number;
  /** Not run, with why (--small, no shader-f16). */
  skipped: number;
  skipReason?: string;
  failures: Failure[];
  seconds: number;
}

function counts(total: number): Counts {
  return { total, run: 0, passed: 0, failed: 0, skipped: 0, failures: [], seconds: 0 };
}

/**
 * Every op-table case, or with `sample` the first case of each op and dtype. Cases at a dtype the adapter lacks
 * (f16 without shader-f16) are skipped and counted.
 */
export async function runOpTable(
  dev: Device,
  o: { sample: boolean; log?: (l: string) => void },
): Promise<Counts> {
  const t0 = performance.now();
  const { cases } = await loadOpTable();
  const c = counts(cases.length);
  const seen = new Set<string>();
  const reasons: string[] = [];
  for (const k of cases) {
    if (k.dtype === "f16" && !dev.f16) {
      c.skipped++;
      if (!reasons.includes("no shader-f16")) reasons.push("no shader-f16");
      continue;
    }
    const key = `${k.op}|${k.dtype}`;
    if (o.sample && seen.has(key)) {
      c.skipped++;
      if (!reasons.includes("--small: first case of each op and dtype")) {
        reasons.push("--small: first case of each op and dtype");
      }
      continue;
    }
    seen.add(key);
    const name = `${k.op} ${k.shape} ${k.dtype}`;
    c.run++;
    try {
      const { got, want } = await k.run(dev);
      assertClose(got, want, k.tol, name);
      c.passed++;
    } catch (e) {
      c.failed++;
      c.failures.push({ name, message: errorMessage(e) });
      o.log?.(`FAIL ${name}: ${errorMessage(e)}`);
      await recover(dev);
    }
    dev.pool.trim();
  }
  if (reasons.length) c.skipReason = reasons.join("; ");
  c.seconds = (performance.now() - t0) / 1000;
  return c;
}

/**
 * The golden set at one precision: every case whose kind has a handler; with `modulesOnly` only the first case of
 * each kind and no pipeline case (tolerance group "pipeline", the long text-to-video runs); skips are counted.
 */
export async function runGolden(
  dev: Device,
  dir: string,
  precision: DType,
  o: { modulesOnly: boolean; log?: (l: string) => void },
): Promise<Counts> {
  const t0 = performance.now();
  if (!existsSync(join(dir, "index.json"))) {
    // A device run can carry the repository without its test data (a nested repository travels without files).
    return { ...counts(0), skipReason: `no golden set at ${dir}` };
  }
  const handlers = await loadHandlers();
  const list = await listCases(dir);
  const c = counts(list.length);
  const reasons = new Set<string>();
  const kinds = new Set<string>();
  if (precision === "f16" && !dev.f16) {
    c.skipped = list.length;
    c.skipReason = "no shader-f16 on this adapter";
    return c;
  }
  for (const k of list) {
    if (!handlers.has(k.kind)) {
      c.skipped++;
      reasons.add(`no handler for kind ${k.kind}`);
      continue;
    }
    const meta = JSON.parse(await Deno.readTextFile(join(dir, "cases", `${k.name}.json`)));
    if (meta.model && !modelPresent(join(dir, meta.model))) {
      // A slimmed device run (pack.sh --slim) leaves the largest models behind to fit what a call carries.
      c.skipped++;
      reasons.add(`model not present (${meta.model})`);
      continue;
    }
    if (o.modulesOnly) {
      if (meta.tolerance_group === "pipeline" || kinds.has(k.kind)) {
        c.skipped++;
        reasons.add("--small: first case of each kind, no pipeline case");
        continue;
      }
      kinds.add(k.kind);
    }
    c.run++;
    const r = await runCase(dev, dir, k.name, precision, handlers);
    if (r.pass) c.passed++;
    else {
      c.failed++;
      const message = r.error ??
        `${r.worstOutput}: max_abs ${r.maxAbs.toExponential(3)} rel_l2 ${r.relL2.toExponential(3)}`;
      c.failures.push({ name: `${k.name} ${precision}`, message });
      o.log?.(`FAIL golden ${k.name} ${precision}: ${message}`);
      await recover(dev);
    }
    dev.pool.trim();
  }
  if (reasons.size) c.skipReason = [...reasons].join("; ");
  c.seconds = (performance.now() - t0) / 1000;
  return c;
}

/** A golden model is there when its file is, or its folder holds what a loader reads first (a sparse checkout can
 *  leave the folders of a model it left out). */
function modelPresent(path: string): boolean {
  if (!existsSync(path)) return false;
  if (!Deno.statSync(path).isDirectory) return true;
  return ["model_index.json", "config.json", "scheduler_config.json"].some((f) => existsSync(join(path, f)));
}
