// Shared test helpers: one device per test process, seeded random data, and tolerance checks.
import { Device, type DType } from "../pipeline/gpu/device.ts";
import { type Tensor, upload } from "../pipeline/gpu/tensor.ts";
import { compare } from "../tools/golden/runner.ts";

let shared: Promise<Device> | null = null;
export function testDevice(): Promise<Device> {
  if (!shared) shared = Device.open();
  return shared;
}

export const DTYPES: DType[] = ["f32", "f16"];

/** Deno.test for GPU code: the shared device outlives each test, so resource sanitizers are off. */
export function gpuTest(name: string, fn: (dev: Device) => Promise<void>): void {
  Deno.test({ name, sanitizeResources: false, sanitizeOps: false, fn: async () => fn(await testDevice()) });
}

/** mulberry32: small, seeded, reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal values (Box-Muller), scaled. Never all zeros. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

export function randu(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** Round values through the storage dtype, so references see the same inputs as the GPU. */
export function quantize(x: Float32Array, dtype: DType): Float32Array {
  return dtype === "f32" ? x : Float32Array.from(Float16Array.from(x));
}

export function up(dev: Device, data: Float32Array, shape: number[], dtype: DType): Tensor {
  return upload(dev, data, shape, dtype);
}

export interface Diff {
  maxAbs: number;
  relL2: number;
}

/** max |got - want| and ||got - want|| / ||want||, as the golden runner measures them. */
export function diff(got: ArrayLike<number>, want: ArrayLike<number>): Diff {
  if (got.length !== want.length) throw new Error(`length ${got.length} != ${want.length}`);
  return compare(got, want);
}

export interface Tol {
  maxAbs?: number;
  relL2?: number;
}

export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tol, label = ""): Diff {
  const d = diff(got, want);
  const okAbs = tol.maxAbs === undefined || d.maxAbs <= tol.maxAbs;
  const okRel = tol.relL2 === undefined || d.relL2 <= tol.relL2;
  if (!okAbs || !okRel || !Number.isFinite(d.maxAbs)) {
    throw new Error(
      `${label}: max_abs ${d.maxAbs.toExponential(3)} (tol ${tol.maxAbs ?? "-"}), rel_l2 ${
        d.relL2.toExponential(3)
      } (tol ${tol.relL2 ?? "-"})`,
    );
  }
  return d;
}
