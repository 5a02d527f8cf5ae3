// Plain aligned text tables for tools/bench.ts. Cells never contain two spaces in a row and empty values are "-",
// so a row splits back into its cells on /\s{2,}/ (tests/bench_test.ts relies on that).
import type { KernelTime } from "./measure.ts";

export type Cell = string | number | null | undefined;

/** Milliseconds with 3-4 significant digits. */
export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "-";
  if (v >= 1000) return v.toFixed(0);
  if (v >= 100) return v.toFixed(1);
  if (v >= 10) return v.toFixed(2);
  return v.toFixed(3);
}

/** A rate (GFLOP/s, GB/s) with 3-4 significant digits. */
export function rate(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "-";
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  if (v >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

export function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

/** Columns whose header is in `right` are right-aligned (numbers). */
export function table(headers: string[], rows: Cell[][], right: Iterable<string> = []): string {
  const r = new Set(right);
  const text = rows.map((row) =>
    headers.map((_, i) => {
      const c = row[i];
      const s = c === null || c === undefined || c === "" ? "-" : String(c);
      return s.replace(/\s+/g, " ");
    })
  );
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => r.has(headers[i]) ? c.padStart(widths[i]) : c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...text.map(line)].join("\n");
}

/** A share (0..1) as a percentage with one decimal. */
export function percent(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "-" : `${(100 * v).toFixed(1)}%`;
}

/**
 * GPU time by kernel (Timing.kernels: dispatches, ms and share per call), one row per call and kernel, largest first:
 * bench prints each call's first `limit` kernels, gpu-check all of them.
 */
export function kernelTable(calls: { label: string; kernels: KernelTime[] }[], limit = Infinity): string {
  const cells: Cell[][] = calls.flatMap((c) =>
    c.kernels.slice(0, limit).map((k) => [c.label, k.name, +k.calls.toFixed(1), ms(k.ms), percent(k.share)])
  );
  return table(["call", "kernel", "dispatches", "gpu ms", "share"], cells, ["dispatches", "gpu ms", "share"]);
}
