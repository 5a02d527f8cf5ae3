// LoRA on a loaded model without touching its weights: every affected weight gets a merged copy in a fresh GPU
// buffer (copy of the base, then base rows + up @ down by the GEMM), the layers point at the copies for the job,
// and `undo` points them back at the untouched originals and frees the copies. No add-then-subtract, so the base
// model stays bit-identical, and switching LoRAs never re-reads the checkpoint.
import { BYTES } from "../gpu/device.ts";
import { type Tensor, Tensor as TensorClass, upload } from "../gpu/tensor.ts";
import { linear } from "../ops/matmul.ts";
import { type LoraComponent, type LoraDelta, type LoraFile, planLora, type WeightShapes } from "../weights/lora.ts";
import type { Params, WeightSlot } from "./layers.ts";
import type { StableDiffusion } from "./sd.ts";

/** Each adaptable component's weights by diffusers name. */
export function adaptableWeights(sd: StableDiffusion): Record<LoraComponent, Params> {
  return { unet: sd.unet.params, text_encoder: sd.textEncoder.params };
}

export function weightShapes(sd: StableDiffusion): WeightShapes {
  const p = adaptableWeights(sd);
  const shapes = (q: Params) => new Map([...q.slots].map(([n, s]) => [n, s.shape]));
  return { unet: shapes(p.unet), text_encoder: shapes(p.text_encoder) };
}

/**
 * Checks the LoRAs against the model (a LoraError before any GPU work), then swaps merged weights in.
 * Returns the undo, which restores the original tensors and frees the merged ones.
 */
export function applyLoras(sd: StableDiffusion, loras: { file: LoraFile; scale: number }[]): () => void {
  const plan = planLora(loras, weightShapes(sd));
  const params = adaptableWeights(sd);
  const swaps: { layer: { w: Tensor }; base: Tensor; merged: Tensor }[] = [];
  const undo = () => {
    for (const s of swaps.splice(0).reverse()) {
      s.layer.w = s.base;
      s.merged.release();
    }
    sd.dev.dropBindGroups();
  };
  try {
    for (const c of ["unet", "text_encoder"] as const) {
      // Weights stored stacked in one tensor share one merged copy.
      const byLayer = new Map<{ w: Tensor }, [WeightSlot, LoraDelta][]>();
      for (const [name, delta] of plan[c]) {
        const slot = params[c].slots.get(name)!;
        byLayer.set(slot.layer, [...byLayer.get(slot.layer) ?? [], [slot, delta]]);
      }
      for (const [layer, parts] of byLayer) {
        const base = layer.w;
        const merged = mergedCopy(base, parts);
        swaps.push({ layer, base, merged });
        layer.w = merged;
      }
    }
    sd.dev.flush();
  } catch (e) {
    undo();
    throw e;
  }
  return undo;
}

/**
 * A copy of `base` in a fresh buffer with each part's update added to its rows; `base` is only read. All parts of
 * one stored tensor go in one GEMM over the whole tensor: merged += U @ D with U [rows, R] holding each part's
 * `up` at its rows and rank columns (zeros elsewhere, which add exactly nothing) and D [R, k] the parts' `down`s
 * stacked, so no part needs a bindable offset of its own.
 */
export function mergedCopy(base: Tensor, parts: [WeightSlot, LoraDelta][]): Tensor {
  const dev = base.dev, dtype = base.dtype;
  const N = base.shape[0], k = base.numel / N;
  const R = parts.reduce((s, [, d]) => s + d.rank, 0);
  const U = new Float32Array(N * R), downT = new Float32Array(k * R);
  let col = 0;
  for (const [slot, d] of parts) {
    if (d.k !== k || slot.row + d.out > N) throw new Error(`LoRA update [${d.out}, ${d.k}] outside [${base.shape}]`);
    for (let o = 0; o < d.out; o++) {
      for (let r = 0; r < d.rank; r++) U[(slot.row + o) * R + col + r] = d.up[o * d.rank + r];
    }
    // linear computes x @ w^T with w [k, R]: w = D^T.
    for (let r = 0; r < d.rank; r++) {
      for (let i = 0; i < k; i++) downT[i * R + col + r] = d.down[r * k + i];
    }
    col += d.rank;
  }
  const merged = ownedLike(base);
  const u = upload(dev, U, [N, R], dtype), w = upload(dev, downT, [k, R], dtype);
  try {
    dev.copy(base.binding(), merged.binding());
    const m = merged.view([N, k]);
    linear(u, w, undefined, { residual: m, out: m });
  } catch (e) {
    merged.release();
    throw e;
  } finally {
    u.release();
    w.release();
  }
  return merged;
}

/** An uninitialised tensor with its own buffer, the size and shape of `t`. */
function ownedLike(t: Tensor): Tensor {
  const bytes = Math.max(16, Math.ceil(t.numel * BYTES[t.dtype] / 16) * 16);
  const buffer = t.dev.gpu.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  return new TensorClass(t.dev, buffer, [...t.shape], t.dtype, 0, "own");
}
