// Collects every op-table file in this folder.
import type { OpCase, PerfCase } from "./types.ts";

export async function loadOpTable(): Promise<{ cases: OpCase[]; perf: PerfCase[] }> {
  const dir = new URL("./", import.meta.url);
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ts") && !["types.ts", "table.ts"].includes(e.name)) files.push(e.name);
  }
  files.sort();
  const cases: OpCase[] = [], perf: PerfCase[] = [];
  for (const f of files) {
    const m = await import(new URL(f, dir).href);
    cases.push(...(m.cases ?? []));
    perf.push(...(m.perf ?? []));
  }
  return { cases, perf };
}
