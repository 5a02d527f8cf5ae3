// A WeightSource is what a model reads its parameters from: named tensors (diffusers names), read as float32 on
// demand. Diffusers folders, sharded folders and converted single-file checkpoints all look the same through it.
import { WeightError } from "../errors.ts";
import { Safetensors, type StDType, toFloat32 } from "./safetensors.ts";

export interface WeightSource {
  /** Component and file(s), for messages: `unet (/m/unet/diffusion_pytorch_model.safetensors)`. */
  readonly label: string;
  names(): string[];
  has(name: string): boolean;
  shape(name: string): readonly number[];
  /** Dtype as stored (float32() converts F16/BF16/F64). */
  dtype(name: string): StDType;
  float32(name: string): Promise<Float32Array>;
  /** Throws a WeightError naming the tensor and both shapes (or saying it is missing). -1 matches any size. */
  expectShape(name: string, shape: readonly number[]): void;
  close(): void;
}

/** Where one presented tensor lives: a file, its name there, and the shape it is presented with. */
export interface TensorRef {
  file: Safetensors;
  key: string;
  /** Same element count as the stored range (1x1 conv <-> linear, [C,1,1] -> [C]). */
  shape: readonly number[];
  /** Rows [start, start + count) of the stored tensor's first dimension (OpenCLIP's fused q/k/v). */
  rows?: readonly [number, number];
}

export class TensorTable implements WeightSource {
  /** `release` runs once, on the first close(): it closes the files this table owns. */
  constructor(
    readonly label: string,
    private entries: Map<string, TensorRef>,
    private release: () => void = () => {},
  ) {
    for (const [name, r] of entries) {
      const info = r.file.info(r.key);
      const stored = count(info.shape);
      const want = r.rows ? stored / info.shape[0] * r.rows[1] : stored;
      if (count(r.shape) !== want) {
        throw new WeightError(`${label}: "${name}" presented as [${r.shape}] but "${r.key}" is [${info.shape}]`);
      }
    }
  }

  /** Tensors of one or more files (shards) under their own names. */
  static fromFiles(label: string, files: Safetensors[]): TensorTable {
    const entries = new Map<string, TensorRef>();
    for (const file of files) {
      for (const [key, info] of file.tensors) {
        const prev = entries.get(key);
        if (prev) throw new WeightError(`${label}: "${key}" is in both ${prev.file.source} and ${file.source}`);
        entries.set(key, { file, key, shape: info.shape });
      }
    }
    return new TensorTable(label, entries, () => files.forEach((f) => f.close()));
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  ref(name: string): TensorRef {
    const r = this.entries.get(name);
    if (!r) throw new WeightError(missingMessage(this.label, name, this.names()));
    return r;
  }

  shape(name: string): readonly number[] {
    return this.ref(name).shape;
  }

  dtype(name: string): StDType {
    const r = this.ref(name);
    return r.file.info(r.key).dtype;
  }

  async float32(name: string): Promise<Float32Array> {
    const r = this.ref(name);
    const info = r.file.info(r.key);
    let bytes = await r.file.raw(r.key);
    if (r.rows) {
      const rowBytes = bytes.byteLength / info.shape[0];
      bytes = bytes.subarray(r.rows[0] * rowBytes, (r.rows[0] + r.rows[1]) * rowBytes);
    }
    return toFloat32(bytes, info.dtype, `${this.label}: "${name}"`);
  }

  expectShape(name: string, shape: readonly number[]): void {
    const got = this.shape(name);
    const ok = got.length === shape.length && got.every((d, i) => shape[i] === -1 || d === shape[i]);
    if (!ok) {
      const want = shape.map((d) => (d === -1 ? "*" : d)).join(",");
      throw new WeightError(`${this.label}: tensor "${name}" has shape [${got}], expected [${want}]`);
    }
  }

  close(): void {
    const release = this.release;
    this.release = () => {};
    release();
  }
}

/** Names the missing tensor, the source and, when there are some, names that share its longest prefix. */
export function missingMessage(label: string, name: string, names: string[]): string {
  const parts = name.split(".");
  let similar: string[] = [];
  for (let n = parts.length - 1; n > 0 && similar.length === 0; n--) {
    const prefix = parts.slice(0, n).join(".") + ".";
    similar = names.filter((k) => k.startsWith(prefix));
  }
  const hint = similar.length ? `; nearby: ${similar.slice(0, 3).map((s) => `"${s}"`).join(", ")}` : "";
  return `${label}: missing tensor "${name}" (${names.length} tensors${hint})`;
}

function count(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}
