// A tensor is a typed view of a GPU buffer range: shape, storage dtype, byte offset. Activations come from the
// device's pool and go back with release(); weights own their buffer.
import { type Binding, BYTES, type Device, type DType, GpuError } from "./device.ts";

type Owner = "pool" | "own" | "view";

export class Tensor {
  private released = false;
  private onRelease: (() => void)[] = [];
  private owning: Tensor;
  constructor(
    readonly dev: Device,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly offset = 0,
    private owner: Owner = "view",
    base?: Tensor,
  ) {
    this.owning = base ?? this;
  }

  /** The tensor that owns the buffer (itself unless this is a view): keeping a view in a scope keeps its base. */
  get base(): Tensor {
    return this.owning;
  }

  /** False once released (a view: once its base is). */
  get alive(): boolean {
    return !this.base.released;
  }

  get numel(): number {
    return numel(this.shape);
  }
  get bytes(): number {
    return this.numel * BYTES[this.dtype];
  }

  /** The buffer range to bind. Storage bindings need an aligned offset and a 4-byte multiple size. */
  binding(): Binding {
    if (this.released) throw new GpuError("use of a released tensor");
    if (this.offset % this.dev.align !== 0) {
      throw new GpuError(`tensor view at byte offset ${this.offset} is not ${this.dev.align}-aligned; copy it first`);
    }
    return { buffer: this.buffer, offset: this.offset, size: Math.ceil(this.bytes / 4) * 4 };
  }

  /** A view of the same data with another shape (same element count) or a contiguous sub-range. */
  view(shape: readonly number[], elementOffset = 0): Tensor {
    if (elementOffset + numel(shape) > this.numel) {
      throw new GpuError(`view [${shape}] at ${elementOffset} is outside [${this.shape}]`);
    }
    const offset = this.offset + elementOffset * BYTES[this.dtype];
    return new Tensor(this.dev, this.buffer, shape, this.dtype, offset, "view", this.base);
  }

  /** The same data with another shape, taking over ownership (this tensor must not be used afterwards). */
  reshape(shape: readonly number[]): Tensor {
    if (numel(shape) !== this.numel) throw new GpuError(`cannot reshape [${this.shape}] to [${shape}]`);
    if (this.owner === "view") return this.view(shape);
    const t = new Tensor(this.dev, this.buffer, [...shape], this.dtype, this.offset, this.owner);
    if (this.owner === "pool") {
      for (const sc of this.dev.scopes) if (sc.delete(this)) sc.add(t);
    }
    t.onRelease = this.onRelease;
    this.onRelease = [];
    this.owner = "view";
    this.owning = t;
    return t;
  }

  /** Rows [start, start+count) of the first dimension, as a view. */
  slice0(start: number, count: number): Tensor {
    const inner = this.numel / this.shape[0];
    return this.view([count, ...this.shape.slice(1)], start * inner);
  }

  /** Run `fn` when this tensor (its base, for a view) is released: caches keyed by it drop their entries. */
  whenReleased(fn: () => void): void {
    this.base.onRelease.push(fn);
  }

  /** Take this tensor (its base) out of every open scope: the caller now releases it. */
  detach(): this {
    for (const sc of this.dev.scopes) sc.delete(this.base);
    return this;
  }

  release(): void {
    if (this.released || this.owner === "view") return;
    this.released = true;
    for (const sc of this.dev.scopes) sc.delete(this);
    for (const fn of this.onRelease.splice(0)) fn();
    if (this.owner === "pool") this.dev.pool.release(this.buffer);
    else {
      this.dev.flush();
      this.buffer.destroy();
    }
  }

  /** Copy to the host as float32 (submits pending work). */
  async read(): Promise<Float32Array> {
    const raw = await this.dev.read({ buffer: this.buffer, offset: this.offset, size: this.bytes });
    if (this.dtype === "f32") return new Float32Array(raw);
    return Float32Array.from(new Float16Array(raw));
  }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A pooled, uninitialised tensor. */
export function empty(dev: Device, shape: readonly number[], dtype: DType): Tensor {
  const bytes = Math.max(4, numel(shape) * BYTES[dtype]);
  const t = new Tensor(dev, dev.pool.acquire(bytes), [...shape], dtype, 0, "pool");
  dev.scopes[dev.scopes.length - 1]?.add(t);
  return t;
}

/**
 * Run `fn` with a tensor scope: every pooled tensor it creates and does not release is released when it ends,
 * normally or by an error or a cancel, so an aborted run leaves no GPU memory in use. Results must leave `fn` as
 * host data. A failure caused by a lost device is reported as that.
 */
export async function withTensorScope<R>(dev: Device, fn: () => Promise<R>): Promise<R> {
  const scope = new Set<{ release(): void }>();
  dev.scopes.push(scope);
  try {
    return await fn();
  } catch (e) {
    throw await dev.explain(e);
  } finally {
    dev.scopes.splice(dev.scopes.lastIndexOf(scope), 1);
    for (const t of [...scope]) t.release();
  }
}

/** Tensors in a block's result: a tensor, or arrays / plain objects holding tensors. */
function tensorsIn(v: unknown, out: Tensor[] = [], depth = 0): Tensor[] {
  if (v instanceof Tensor) out.push(v);
  else if (depth < 4 && Array.isArray(v)) { for (const x of v) tensorsIn(x, out, depth + 1); }
  else if (depth < 4 && v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) tensorsIn(x, out, depth + 1);
  }
  return out;
}

/**
 * Run the block `fn` in its own tensor scope: the pooled tensors it creates are released when it returns, except
 * the ones it returns (a tensor, or arrays / plain objects of them; a view keeps its base), which move to the
 * enclosing scope. On an error everything it created is released. Recording only: no GPU work waits.
 */
export function scoped<R>(dev: Device, fn: () => R): R {
  const scope = new Set<{ release(): void }>();
  dev.scopes.push(scope);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    dev.scopes.splice(dev.scopes.lastIndexOf(scope), 1);
    for (const t of [...scope]) t.release();
    throw e;
  }
  dev.scopes.splice(dev.scopes.lastIndexOf(scope), 1);
  const parent = dev.scopes[dev.scopes.length - 1];
  for (const t of tensorsIn(result)) if (scope.delete(t.base)) parent?.add(t.base);
  for (const t of [...scope]) t.release();
  return result;
}

/** Hand tensors to the innermost open scope: they are released when it ends, unless it returns them (a value that
 *  a block replaces, e.g. the hidden state it consumes). */
export function adopt(...ts: Tensor[]): void {
  for (const t of ts) {
    const scopes = t.dev.scopes;
    if (!scopes.length) continue;
    t.detach();
    scopes[scopes.length - 1].add(t.base);
  }
}

/** `fn(t)` in a scope that consumes `t`: t is released after it (the next value of a chain replaces it). */
export function consume<R>(t: Tensor, fn: (t: Tensor) => R): R {
  return scoped(t.dev, () => {
    adopt(t);
    return fn(t);
  });
}

/** Host data converted to the storage dtype. */
export function toDType(data: Float32Array, dtype: DType): Float32Array | Float16Array {
  return dtype === "f32" ? data : Float16Array.from(data);
}

/** Upload host data into a pooled tensor. */
export function upload(dev: Device, data: Float32Array, shape: readonly number[], dtype: DType): Tensor {
  if (data.length !== numel(shape)) {
    throw new GpuError(`upload: ${data.length} values do not fill shape [${shape}]`);
  }
  const t = empty(dev, shape, dtype);
  dev.write(t.buffer, 0, toDType(data, dtype));
  return t;
}

/** A weight's own buffer: the data rounded up to whole 16-byte words. */
function ownedBuffer(dev: Device, shape: readonly number[], dtype: DType, mappedAtCreation: boolean): GPUBuffer {
  return dev.gpu.createBuffer({
    size: Math.max(16, Math.ceil(numel(shape) * BYTES[dtype] / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    mappedAtCreation,
  });
}

/** A tensor with its own exact-size buffer, zero-filled (WebGPU initialises buffers): a weight that GPU work writes
 *  (random weights: pipeline/ops/random.ts). Never returned to the pool. */
export function emptyOwned(dev: Device, shape: readonly number[], dtype: DType): Tensor {
  const buffer = ownedBuffer(dev, shape, dtype, false);
  return new Tensor(dev, buffer, [...shape], dtype, 0, "own");
}

/** A tensor with its own exact-size buffer (weights: never returned to the pool). */
export function uploadOwned(
  dev: Device,
  data: Float32Array | Float16Array,
  shape: readonly number[],
  dtype: DType,
): Tensor {
  const buffer = ownedBuffer(dev, shape, dtype, true);
  const src = dtype === "f32"
    ? (data instanceof Float32Array ? data : Float32Array.from(data))
    : (data instanceof Float16Array ? data : Float16Array.from(data));
  if (src.length !== numel(shape)) throw new GpuError(`weight data of ${src.length} values does not fill [${shape}]`);
  const range = buffer.getMappedRange();
  if (dtype === "f32") new Float32Array(range).set(src as Float32Array);
  else new Float16Array(range).set(src as Float16Array);
  buffer.unmap();
  return new Tensor(dev, buffer, [...shape], dtype, 0, "own");
}
