// The op-level test table (like ggml's test-backend-ops): each case runs a kernel on random inputs and returns
// what it computed beside a plain TypeScript reference. tests/ops_test.ts asserts them; tools/bench.ts times
// the `perf` entries and reports GFLOP/s or GB/s.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import type { Tol } from "../util.ts";

export interface OpResult {
  got: ArrayLike<number>;
  want: ArrayLike<number>;
}

export interface OpCase {
  op: string;
  /** Human-readable shape description, e.g. "M=77 N=320 K=768". */
  shape: string;
  dtype: DType;
  tol: Tol;
  run(dev: Device): Promise<OpResult>;
}

export interface PerfCase {
  op: string;
  shape: string;
  /** Floating-point operations per call (0 for memory-bound ops). */
  flops: number;
  /** Bytes moved per call (for GB/s). */
  bytes: number;
  /** Only at these dtypes (default: every one benched). */
  dtypes?: DType[];
  /** Set up inputs on `dev` and return a function that records one call (no readback). */
  setup(dev: Device, dtype: DType): () => void;
}

/** `c` again as "shape label", each call recorded with a kernel switch set by `on` and cleared by `off` afterwards,
 *  so that one bench or gpu-check run times a kernel's variant beside its default. */
export function switched(c: PerfCase, label: string, on: () => void, off: () => void, dtypes = c.dtypes): PerfCase {
  return {
    ...c,
    shape: `${c.shape} ${label}`,
    dtypes,
    setup(dev, dtype) {
      const run = c.setup(dev, dtype);
      return () => {
        on();
        try {
          run();
        } finally {
          off();
        }
      };
    },
  };
}
