// Safetensors: 8-byte little-endian header length, JSON header, raw little-endian tensor data.
// Reads lazily from a file handle so multi-GB checkpoints are never loaded whole.
import { WeightError } from "../errors.ts";

export type StDType = "F32" | "F16" | "BF16" | "I32" | "I64" | "F64" | "U8" | "I8" | "I16" | "BOOL";
const ELEM: Record<StDType, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  F64: 8,
  U8: 1,
  I8: 1,
  I16: 2,
  BOOL: 1,
};

export interface StTensorInfo {
  dtype: StDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

/** A parsed header plus a way to read tensor bytes; backed by a file or by memory. */
export class Safetensors {
  private constructor(
    readonly source: string,
    readonly tensors: Map<string, StTensorInfo>,
    readonly metadata: Record<string, string>,
    private readBytes: (begin: number, end: number) => Promise<Uint8Array>,
    private closeFn: () => void,
  ) {}

  static parse(bytes: Uint8Array, source = "<memory>"): Safetensors {
    const { tensors, metadata } = parseHeader(bytes, bytes.byteLength, source);
    return new Safetensors(
      source,
      tensors,
      metadata,
      (b, e) => Promise.resolve(bytes.subarray(b, e)),
      () => {},
    );
  }

  static async open(path: string): Promise<Safetensors> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      throw new WeightError(`cannot open ${path}: ${(e as Error).message}`);
    }
    try {
      const size = (await file.stat()).size;
      const head = new Uint8Array(8);
      await readExact(file, head, 0, path);
      const n = Number(new DataView(head.buffer).getBigUint64(0, true));
      if (n <= 0 || 8 + n > size) {
        throw new WeightError(`${path}: header length ${n} does not fit a ${size}-byte file (not safetensors?)`);
      }
      const all = new Uint8Array(8 + n);
      await readExact(file, all, 0, path);
      const { tensors, metadata } = parseHeader(all, size, path);
      const read = async (b: number, e: number) => {
        const buf = new Uint8Array(e - b);
        await readExact(file, buf, b, path);
        return buf;
      };
      return new Safetensors(path, tensors, metadata, read, () => file.close());
    } catch (e) {
      file.close();
      throw e;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): StTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new WeightError(`${this.source}: missing tensor "${name}"`);
    return t;
  }

  /** Raw bytes of a tensor (little-endian, as stored). */
  raw(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    return this.readBytes(t.begin, t.end);
  }

  /** A float tensor as float32 (F32, F16, BF16, F64 converted). */
  async float32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    return toFloat32(await this.raw(name), t.dtype, `${this.source}: "${name}"`);
  }

  /** An integer tensor (I32, I64) as Int32Array. */
  async int32(name: string): Promise<Int32Array> {
    const t = this.info(name);
    const b = await this.raw(name);
    const copy = b.slice();
    if (t.dtype === "I32") return new Int32Array(copy.buffer);
    if (t.dtype === "I64") return Int32Array.from(new BigInt64Array(copy.buffer), (v) => Number(v));
    throw new WeightError(`${this.source}: "${name}" is ${t.dtype}, expected an integer tensor`);
  }

  close(): void {
    this.closeFn();
  }
}

export function toFloat32(bytes: Uint8Array, dtype: StDType, what: string): Float32Array {
  const b = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  switch (dtype) {
    case "F32":
      return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
    case "F16":
      return Float32Array.from(new Float16Array(b.buffer, b.byteOffset, b.byteLength / 2));
    case "BF16": {
      const src = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case "F64":
      return Float32Array.from(new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8));
    default:
      throw new WeightError(`${what} has dtype ${dtype}, expected a float tensor (F32, F16, BF16, F64)`);
  }
}

async function readExact(file: Deno.FsFile, buf: Uint8Array, pos: number, path: string): Promise<void> {
  await file.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < buf.length) {
    const n = await file.read(buf.subarray(off));
    if (n === null) throw new WeightError(`${path}: file ends early (truncated download?)`);
    off += n;
  }
}

function parseHeader(bytes: Uint8Array, fileSize: number, source: string) {
  if (bytes.byteLength < 8) throw new WeightError(`${source}: too short to be safetensors`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n <= 0 || 8 + n > bytes.byteLength) {
    throw new WeightError(`${source}: header length ${n} does not fit the file (not safetensors?)`);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new WeightError(`${source}: header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + n;
  const tensors = new Map<string, StTensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json)) {
    if (name === "__metadata__") {
      metadata = v as Record<string, string>;
      continue;
    }
    const t = v as { dtype: StDType; shape: number[]; data_offsets: [number, number] };
    if (!(t.dtype in ELEM)) throw new WeightError(`${source}: "${name}" has unsupported dtype ${t.dtype}`);
    if (!Array.isArray(t.shape) || !Array.isArray(t.data_offsets) || t.data_offsets.length !== 2) {
      throw new WeightError(`${source}: "${name}" has a malformed header entry`);
    }
    const [b, e] = t.data_offsets;
    const count = t.shape.reduce((p, d) => p * d, 1);
    if (e - b !== count * ELEM[t.dtype]) {
      throw new WeightError(
        `${source}: "${name}" [${t.shape}] ${t.dtype} needs ${count * ELEM[t.dtype]} bytes, header gives ${e - b}`,
      );
    }
    if (b < 0 || dataStart + e > fileSize) {
      throw new WeightError(`${source}: "${name}" lies past the end of the file (truncated?)`);
    }
    tensors.set(name, { dtype: t.dtype, shape: t.shape, begin: dataStart + b, end: dataStart + e });
  }
  return { tensors, metadata };
}
