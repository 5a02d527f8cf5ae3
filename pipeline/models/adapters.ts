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
        const merged = ownedLike(base);
        swaps.push({ layer, base, merged });
        base.dev.copy(base.binding(), merged.binding());
        for (const [slot, d] of parts) mergeInto(merged, slot, d);
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

/** merged[rows of slot] += up @ down, in place (the GEMM reads its residual and writes the same range). */
function mergeInto(merged: Tensor, slot: WeightSlot, d: LoraDelta): void {
  const dev = merged.dev, dtype = merged.dtype;
  const view = merged.view([d.out, d.k], slot.row * d.k);
  const up = upload(dev, d.up, [d.out, d.rank], dtype);
  // linear computes x @ w^T with w [N, K]: w = down^T [k, rank].
  const downT = new Float32Array(d.k * d.rank);
  for (let r = 0; r < d.rank; r++) {
    for (let i = 0; i < d.k; i++) downT[i * d.rank + r] = d.down[r * d.k + i];
  }
  const w = upload(dev, downT, [d.k, d.rank], dtype);
  linear(up, w, undefined, { residual: view, out: view });
  up.release();
  w.release();
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
