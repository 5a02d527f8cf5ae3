// Runs golden cases: loads each case, calls its kind's handler, compares every output with the stored tolerance
// (f32) or the f16 budget, and reports one line per case.
import { join, resolve } from "node:path";
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { Safetensors } from "../../pipeline/weights/safetensors.ts";
import type { CaseContext, GoldenCase, Handler, Tol } from "./types.ts";

export interface CaseResult {
  name: string;
  kind: string;
  pass: boolean;
  maxAbs: number;
  relL2: number;
  worstOutput: string;
  error?: string;
  seconds: number;
}

export async function loadHandlers(): Promise<Map<string, Handler>> {
  const dir = new URL("./kinds/", import.meta.url);
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile && e.name.endsWith(".ts")) files.push(e.name);
  files.sort();
  const out = new Map<string, Handler>();
  for (const f of files) {
    const m = await import(new URL(f, dir).href);
    for (const [kind, h] of Object.entries(m.handlers ?? {})) out.set(kind, h as Handler);
  }
  return out;
}

export async function listCases(dir: string, only?: string[]): Promise<{ name: string; kind: string }[]> {
  const index = JSON.parse(await Deno.readTextFile(join(dir, "index.json")));
  const cases = index.cases as { name: string; kind: string }[];
  return only?.length ? cases.filter((c) => only.includes(c.kind) || only.includes(c.name)) : cases;
}

/** f16 budget: rel_l2 <= 1e-2 for module/scheduler/copy cases, 5e-2 on pipeline frames; exact stays exact. */
export function toleranceFor(c: GoldenCase, output: string, precision: DType): Tol {
  const exact = c.exact_outputs?.includes(output);
  if (exact) return { max_abs: 0, rel_l2: 0 };
  const t = c.tolerance_per_output?.[output] ?? c.tolerance;
  if (precision === "f32") return t;
  const rel = c.tolerance_group === "pipeline" ? 5e-2 : 1e-2;
  return { max_abs: Infinity, rel_l2: Math.max(rel, t.rel_l2) };
}

export function compare(got: ArrayLike<number>, want: ArrayLike<number>): { maxAbs: number; relL2: number } {
  if (got.length !== want.length) return { maxAbs: Infinity, relL2: Infinity };
  let maxAbs = 0, num = 0, den = 0;
  for (let i = 0; i < got.length; i++) {
    const d = got[i] - want[i];
    const a = Math.abs(d);
    if (!(a <= maxAbs)) maxAbs = Number.isNaN(a) ? Infinity : a;
    num += d * d;
    den += want[i] * want[i];
  }
  return { maxAbs, relL2: den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den) };
}

export async function runCase(
  dev: Device,
  dir: string,
  name: string,
  precision: DType,
  handlers: Map<string, Handler>,
): Promise<CaseResult> {
  const t0 = performance.now();
  const c = JSON.parse(await Deno.readTextFile(join(dir, "cases", `${name}.json`))) as GoldenCase;
  c.name = name;
  const result: CaseResult = {
    name,
    kind: c.kind,
    pass: false,
    maxAbs: 0,
    relL2: 0,
    worstOutput: "",
    seconds: 0,
  };
  const data = await Safetensors.open(join(dir, "cases", `${name}.safetensors`));
  try {
    const handler = handlers.get(c.kind);
    if (!handler) throw new Error(`kind "${c.kind}" is not supported`);
    const ctx: CaseContext = {
      dev,
      precision,
      dir,
      c,
      data,
      input: async (n) => {
        if (!c.inputs.includes(n) && !data.has(n)) throw new Error(`case ${name} has no input "${n}"`);
        return { data: await data.float32(n), shape: data.info(n).shape };
      },
      modelPath: () => {
        if (!c.model) throw new Error(`case ${name} has no model`);
        return resolve(dir, c.model);
      },
    };
    const outs = await handler(ctx);
    let pass = true;
    let worstRatio = -1;
    for (const o of c.outputs) {
      const got = outs[o];
      if (got === undefined) throw new Error(`handler gave no output "${o}"`);
      const info = data.info(o);
      const want = info.dtype === "I32" ? await data.int32(o) : await data.float32(o);
      const shapeN = info.shape.reduce((p, d) => p * d, 1);
      if (got.length !== shapeN) {
        throw new Error(`output "${o}" has ${got.length} values, reference [${info.shape}] has ${shapeN}`);
      }
      const d = compare(got, want);
      const tol = toleranceFor(c, o, precision);
      const ok = d.maxAbs <= tol.max_abs && d.relL2 <= tol.rel_l2;
      if (!ok) pass = false;
      const ratio = Math.max(
        tol.max_abs === 0 ? (d.maxAbs === 0 ? 0 : Infinity) : d.maxAbs / tol.max_abs,
        tol.rel_l2 === 0 ? (d.relL2 === 0 ? 0 : Infinity) : d.relL2 / tol.rel_l2,
      );
      if (ratio > worstRatio || Number.isNaN(ratio)) {
        worstRatio = ratio;
        result.maxAbs = d.maxAbs;
        result.relL2 = d.relL2;
        result.worstOutput = o;
      }
    }
    result.pass = pass;
  } catch (e) {
    result.pass = false;
    result.error = (e as Error).message;
  } finally {
    data.close();
  }
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}

export function formatResult(r: CaseResult): string {
  const status = r.pass ? "pass" : "FAIL";
  const nums = r.error
    ? `error: ${r.error}`
    : `max_abs ${r.maxAbs.toExponential(2)} rel_l2 ${r.relL2.toExponential(2)} (worst: ${r.worstOutput})`;
  return `${status}  ${r.name.padEnd(28)} ${r.kind.padEnd(26)} ${nums}  ${r.seconds.toFixed(1)}s`;
}
