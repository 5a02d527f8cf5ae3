// Part 1 of the bench: every perf case of the op table (tests/ops/*.ts, SD 1.5 shapes at 512x512) at one
// precision. Rates come from GPU time (timestamps) when the adapter has them, else from wall time.
import { BYTES, type Device, type DType } from "../../pipeline/gpu/device.ts";
import type { PerfCase } from "../../tests/ops/types.ts";
import { errorMessage, type LoopOptions, recover, timeCalls } from "./measure.ts";

export interface KernelRow {
  op: string;
  shape: string;
  dtype: DType;
  status: "ok" | "skipped" | "error";
  iters: number;
  wallMs: number | null;
  gpuMs: number | null;
  /** GFLOP/s for compute-bound cases, GB/s for memory-bound ones (flops 0). */
  rate: number | null;
  unit: "GFLOP/s" | "GB/s";
  /** What the rate divides by. */
  rateFrom: "gpu" | "wall" | null;
  flops: number;
  /** Bytes per call at the storage dtype (the op table counts f32 bytes; f16 halves them). */
  bytes: number;
  note: string;
}

export interface KernelOptions {
  loop: LoopOptions;
  /** Skip a case whose estimated time per call exceeds this many seconds (0: never skip). */
  maxCallS: number;
  /** Progress lines (stderr). */
  log?: (line: string) => void;
}

const family = (op: string) => op.split(".")[0];

/**
 * Times each case. Cases run cheapest first (memory-bound, then by FLOPs) so that the rates of cheaper cases can
 * estimate the cost of larger ones; rows come back in table order.
 */
export async function benchKernels(
  dev: Device,
  cases: PerfCase[],
  dtype: DType,
  o: KernelOptions,
): Promise<KernelRow[]> {
  cases = cases.filter((c) => !c.dtypes || c.dtypes.includes(dtype));
  const rows: KernelRow[] = new Array(cases.length);
  const work = (c: PerfCase) => c.flops > 0 ? c.flops : c.bytes * BYTES[dtype] / 4;
  const order = cases.map((_, i) => i).sort((a, b) => {
    const ka = cases[a].flops > 0 ? 1 : 0, kb = cases[b].flops > 0 ? 1 : 0;
    return ka - kb || work(cases[a]) - work(cases[b]);
  });
  // Best measured work per wall second, per op family and per kind (flops / bytes), for the estimates.
  const famRate = new Map<string, number>();
  const kindRate = new Map<string, number>();
  const done = () => rows.filter(Boolean).length;

  for (const i of order) {
    const c = cases[i];
    const kind = c.flops > 0 ? "flops" : "bytes";
    const unit = c.flops > 0 ? "GFLOP/s" : "GB/s";
    const bytes = c.bytes * BYTES[dtype] / 4;
    const row: KernelRow = {
      op: c.op,
      shape: c.shape,
      dtype,
      status: "ok",
      iters: 0,
      wallMs: null,
      gpuMs: null,
      rate: null,
      unit,
      rateFrom: null,
      flops: c.flops,
      bytes,
      note: "",
    };
    rows[i] = row;
    const known = famRate.get(`${kind}:${family(c.op)}`) ?? kindRate.get(kind);
    const estS = known ? work(c) / known : 0;
    if (o.maxCallS > 0 && estS > o.maxCallS) {
      row.status = "skipped";
      row.note = `skipped: est. ${estS.toFixed(1)} s/call > --max-call ${o.maxCallS} s`;
      o.log?.(`[${done()}/${cases.length}] ${dtype} ${c.op} ${c.shape}: ${row.note}`);
      continue;
    }
    try {
      const call = c.setup(dev, dtype);
      const t = await timeCalls(dev, call, o.loop, false);
      row.iters = t.iters;
      row.wallMs = t.wallMs;
      row.gpuMs = t.gpuMs;
      const useGpu = t.gpuMs !== null && t.gpuMs > 0;
      row.rateFrom = useGpu ? "gpu" : "wall";
      const s = (useGpu ? t.gpuMs! : t.wallMs) / 1000;
      row.rate = (c.flops > 0 ? c.flops : bytes) / s / 1e9;
      const perWallS = work(c) / (t.wallMs / 1000);
      const fk = `${kind}:${family(c.op)}`;
      famRate.set(fk, Math.max(famRate.get(fk) ?? 0, perWallS));
      kindRate.set(kind, Math.max(kindRate.get(kind) ?? 0, perWallS));
      if (t.gpuMs !== null && t.gpuMs <= 0) row.note = "timestamps read 0";
    } catch (e) {
      row.status = "error";
      row.note = `error: ${errorMessage(e)}`;
      await recover(dev);
    }
    dev.pool.trim();
    o.log?.(
      `[${done()}/${cases.length}] ${dtype} ${c.op} ${c.shape}: ` +
        (row.status === "ok" ? `${row.wallMs!.toFixed(3)} ms wall` : row.note),
    );
  }
  return rows;
}
