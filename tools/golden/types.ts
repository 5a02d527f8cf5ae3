// The golden-case contract: `fixtures/golden/README.md` describes the format; each kind's handler lives in
// tools/golden/kinds/<group>.ts and calls the same public functions the CLI uses.
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import type { Safetensors } from "../../pipeline/weights/safetensors.ts";

export interface Tol {
  max_abs: number;
  rel_l2: number;
}

export interface GoldenCase {
  name: string;
  kind: string;
  /** Path relative to the golden folder, or null. */
  model: string | null;
  params: Record<string, unknown>;
  inputs: string[];
  outputs: string[];
  tolerance: Tol;
  tolerance_per_output?: Record<string, Tol>;
  tolerance_group: "module" | "scheduler" | "pipeline" | "copy";
  exact_outputs?: string[];
  shapes: Record<string, [number[], string]>;
  notes?: string;
}

export interface CaseContext {
  dev: Device;
  precision: DType;
  /** Absolute path of the golden folder. */
  dir: string;
  c: GoldenCase;
  /** The case's tensors (inputs and reference outputs). Handlers read only inputs. */
  data: Safetensors;
  /** Float input as float32 with its shape. */
  input(name: string): Promise<{ data: Float32Array; shape: number[] }>;
  /** Absolute path of the case's model (throws when the case has none). */
  modelPath(): string;
}

/** Computed outputs by name; a handler may return a subset only if it throws for the rest. */
export type CaseOutputs = Record<string, Float32Array | Int32Array | number[]>;

export type Handler = (ctx: CaseContext) => Promise<CaseOutputs>;
