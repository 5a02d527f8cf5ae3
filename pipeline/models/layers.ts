// Parameter loading for the models: named tensors from a weight source, uploaded once in the run's dtype, grouped
// into the layer types diffusers uses (Linear, Conv2d, GroupNorm, LayerNorm). Names stay diffusers' names.
import type { Device, DType } from "../gpu/device.ts";
import { WeightError } from "../errors.ts";
import { emptyOwned, type Tensor, uploadOwned } from "../gpu/tensor.ts";
import { conv2d, type Conv2dOpts } from "../ops/conv2d.ts";
import { linear as linearOp, type LinearOpts } from "../ops/matmul.ts";
import { groupNorm, layerNorm } from "../ops/norm.ts";
import { randomFill, type RandomSpec } from "../ops/random.ts";

/** What a model needs from a checkpoint (implemented by pipeline/weights/*). */
export interface TensorSource {
  has(name: string): boolean;
  shape(name: string): readonly number[];
  float32(name: string): Promise<Float32Array>;
  /** A generated tensor's stream (random weights: pipeline/weights/random.ts): the loader fills it on the GPU with
   *  `randomFill`, which writes what `float32(name)` returns, instead of uploading that. */
  random?(name: string): RandomSpec | undefined;
}

export interface Linear {
  w: Tensor;
  b?: Tensor;
}
export interface Conv {
  w: Tensor;
  b?: Tensor;
}
export interface Norm {
  gamma: Tensor;
  beta: Tensor;
}

/**
 * A weight as the model stores it, by its diffusers name (`...to_q.weight`), so an adapter (LoRA) can swap
 * `layer.w` for a merged copy for one job and swap the untouched original back afterwards.
 */
export interface WeightSlot {
  /** The Linear or Conv whose `w` holds the weight. */
  layer: { w: Tensor };
  /** The weight's diffusers shape: [out, in] or [out, in, kh, kw]. */
  shape: readonly number[];
  /** First row of this weight inside `layer.w` (0 unless several weights are stored stacked by rows). */
  row: number;
}

/** Loads a model's parameters under a name prefix, remembering everything it uploaded (for dispose). */
export class Params {
  readonly loaded: Tensor[] = [];
  /** Linear and conv weights by diffusers name (see WeightSlot). */
  readonly slots = new Map<string, WeightSlot>();
  bytes = 0;
  constructor(
    readonly dev: Device,
    readonly src: TensorSource,
    readonly dtype: DType,
    readonly component: string,
  ) {}

  has(name: string): boolean {
    return this.src.has(name);
  }

  shape(name: string): number[] {
    if (!this.src.has(name)) throw new WeightError(`${this.component}: missing weight tensor "${name}"`);
    return [...this.src.shape(name)];
  }

  async tensor(name: string, expect?: number[]): Promise<Tensor> {
    const shape = this.shape(name);
    if (expect && (expect.length !== shape.length || expect.some((d, i) => d >= 0 && d !== shape[i]))) {
      throw new WeightError(
        `${this.component}: weight "${name}" has shape [${shape}], expected [${expect.map((d) => d < 0 ? "?" : d)}]`,
      );
    }
    const spec = this.randomSpec(name);
    const t = spec
      ? randomFill(emptyOwned(this.dev, shape, this.dtype), spec)
      : uploadOwned(this.dev, await this.src.float32(name), shape, this.dtype);
    this.loaded.push(t);
    this.bytes += t.bytes;
    return t;
  }

  async linear(name: string, inF?: number, outF?: number): Promise<Linear> {
    const w = await this.tensor(`${name}.weight`, [outF ?? -1, inF ?? -1]);
    const b = this.has(`${name}.bias`) ? await this.tensor(`${name}.bias`, [w.shape[0]]) : undefined;
    return this.slot(`${name}.weight`, { w, b });
  }

  /**
   * Several Linear layers with the same input stacked along their outputs as one layer (one GEMM for all): row
   * block i holds layer i (registered as its weight slot, so adapters find it by name). Returns the stacked layer
   * and each layer's first output column.
   */
  async linearStack(names: string[]): Promise<{ linear: Linear; offsets: number[] }> {
    const shapes = names.map((n) => this.shape(`${n}.weight`));
    const K = shapes[0]?.[1];
    const bad = shapes.findIndex((s) => s.length !== 2 || s[1] !== K);
    if (bad >= 0) {
      throw new WeightError(
        `${this.component}: weight "${names[bad]}.weight" has shape [${shapes[bad]}], expected [?, ${K}]`,
      );
    }
    const offsets: number[] = [];
    let N = 0;
    for (const s of shapes) offsets.push(N), N += s[0];
    const biased = names.some((n) => this.has(`${n}.bias`));
    const parts = names.flatMap((n) => [`${n}.weight`, ...this.has(`${n}.bias`) ? [`${n}.bias`] : []]);
    let wt: Tensor, bt: Tensor | undefined;
    if (parts.every((n) => this.randomSpec(n))) {
      // Generated: each layer's rows filled in place (a layer without a bias keeps the zeros it is created with).
      wt = emptyOwned(this.dev, [N, K], this.dtype);
      bt = biased ? emptyOwned(this.dev, [N], this.dtype) : undefined;
      for (const [i, n] of names.entries()) {
        randomFill(wt, this.randomSpec(`${n}.weight`)!, { start: offsets[i] * K, count: shapes[i][0] * K });
        if (bt && this.has(`${n}.bias`)) {
          randomFill(bt, this.randomSpec(`${n}.bias`)!, { start: offsets[i], count: shapes[i][0] });
        }
      }
    } else {
      const w = new Float32Array(N * K), b = new Float32Array(N);
      for (const [i, n] of names.entries()) {
        w.set(await this.src.float32(`${n}.weight`), offsets[i] * K);
        if (this.has(`${n}.bias`)) b.set(await this.src.float32(`${n}.bias`), offsets[i]);
      }
      wt = uploadOwned(this.dev, w, [N, K], this.dtype);
      bt = biased ? uploadOwned(this.dev, b, [N], this.dtype) : undefined;
    }
    for (const t of [wt, bt]) if (t) this.loaded.push(t), this.bytes += t.bytes;
    const linear = { w: wt, b: bt };
    names.forEach((n, i) => this.slot(`${n}.weight`, linear, shapes[i], offsets[i]));
    return { linear, offsets };
  }

  /** `name`'s stream when the source generates it and the device can record GPU work now (not in a dry run, which
   *  is never submitted). */
  private randomSpec(name: string): RandomSpec | undefined {
    return this.dev.dryRun ? undefined : this.src.random?.(name);
  }

  async conv(name: string, inC?: number, outC?: number): Promise<Conv> {
    const w = await this.tensor(`${name}.weight`, [outC ?? -1, inC ?? -1, -1, -1]);
    const b = this.has(`${name}.bias`) ? await this.tensor(`${name}.bias`, [w.shape[0]]) : undefined;
    return this.slot(`${name}.weight`, { w, b });
  }

  /** Registers `layer.w` (or rows of it, from `row`) as the stored form of the weight `name`; returns the layer. */
  slot<L extends { w: Tensor }>(name: string, layer: L, shape: readonly number[] = layer.w.shape, row = 0): L {
    this.slots.set(name, { layer, shape, row });
    return layer;
  }

  async norm(name: string, channels?: number): Promise<Norm> {
    const gamma = await this.tensor(`${name}.weight`, [channels ?? -1]);
    const beta = await this.tensor(`${name}.bias`, [gamma.shape[0]]);
    return { gamma, beta };
  }

  dispose(): void {
    for (const t of this.loaded) t.release();
    this.loaded.length = 0;
    this.slots.clear();
  }
}

/** Output rows [start, start + count) of a Linear (a layer inside a stacked one), as views (take them when used:
 *  an adapter may swap the stacked layer's `w`). */
export function linearRows(l: Linear, start: number, count: number): Linear {
  const K = l.w.shape[1];
  return { w: l.w.view([count, K], start * K), b: l.b?.view([count], start) };
}

export function applyLinear(l: Linear, x: Tensor, opts: LinearOpts = {}): Tensor {
  return linearOp(x, l.w, l.b, opts);
}

export function applyConv(c: Conv, x: Tensor, opts: Conv2dOpts = {}): Tensor {
  const k = c.w.shape[2];
  return conv2d(x, c.w, c.b, { ...opts, stride: opts.stride ?? 1, padding: opts.padding ?? (k - 1) / 2 });
}

export function applyGroupNorm(n: Norm, x: Tensor, groups: number, eps: number, silu = false): Tensor {
  return groupNorm(x, groups, n.gamma, n.beta, eps, { silu });
}

export function applyLayerNorm(n: Norm, x: Tensor, eps: number): Tensor {
  return layerNorm(x, n.gamma, n.beta, eps);
}

/** Release intermediate tensors (pool buffers); views and weights are unaffected. */
export function free(...ts: (Tensor | undefined)[]): void {
  for (const t of ts) t?.release();
}
