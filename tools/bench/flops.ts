// The FLOPs of a model call's GEMM-shaped work: linear layers (2*M*N*K), conv2d as its implicit GEMM (M = Cout,
// N = B*Ho*Wo, K = Cin*KH*KW; nominal where Winograd runs it with 4/9 of the multiplies, so a rate from this count is
// the direct convolution's equivalent) and attention's two products (QK^T and PV, 2*Bq*heads*Nq*Nk*D each).
// Everything else (GroupNorm, elementwise ops, softmax's exponentials, layout copies) is left out: this is the work a
// kernel set of direct GEMMs cannot avoid, so at the adapter's FMA ceiling it gives the fastest such a kernel set could
// run the call (gpu-check's "floor"; Winograd's convolutions can go below it).
//
// Counted where the ops record their work, not computed from the model's config: the ops' hooks (matmul.ts
// `gemmHooks.onGemm`, attention.ts `attentionHooks.onAttention`) see the shapes as they run, with every execution
// detail a config formula would have to repeat (stacked Q/K/V, K/V of the anchor frames only under cross-frame
// attention, the text K/V cached across calls, one time-embedding row for a shared timestep). Then a test can check
// the count against a formula written from the config (tests/gpu_check_test.ts), which a shared formula could not.
import type { Device } from "../../pipeline/gpu/device.ts";
import { type AttentionCall, attentionHooks } from "../../pipeline/ops/attention.ts";
import { type GemmCall, gemmHooks } from "../../pipeline/ops/matmul.ts";

export interface FlopCount {
  /** linear + conv2d + attention. */
  total: number;
  linear: number;
  conv2d: number;
  attention: number;
}

/** 2*M*N*K of the GEMM as pickTile sees it (its key, "MxNxK": for conv2d the implicit GEMM, K at every tap). */
export function gemmFlops(g: GemmCall): number {
  const [M, N, K] = g.key.split("x").map(Number);
  return 2 * M * N * K;
}

/** QK^T and PV: two products of 2*Nq*Nk*D per query batch and head (a causal mask's skipped half included). */
export function attentionFlops(a: AttentionCall): number {
  return 2 * (2 * a.Bq * a.heads * a.Nq * a.Nk * a.D);
}

/**
 * The FLOPs of the work `record` records, counted in a dry run (dev.precompile: recorded, never executed, so no GPU
 * time and no timestamps). Call it after the calls being measured: a cache they filled (cross-attention's text K/V)
 * then skips the same work here. conv2d's direct kernel (outputs of a few pixels, on llvmpipe) is switched off for
 * the dry run because only the tiled path reports to onGemm; it is the same GEMM, counted at its full K although the
 * direct kernel skips the taps outside the image.
 */
export function countFlops(dev: Device, record: () => unknown): FlopCount {
  const c: FlopCount = { total: 0, linear: 0, conv2d: 0, attention: 0 };
  const add = (kind: "linear" | "conv2d" | "attention", f: number) => {
    c[kind] += f;
    c.total += f;
  };
  const saved = { onGemm: gemmHooks.onGemm, directConv: gemmHooks.directConv, onAttn: attentionHooks.onAttention };
  // Timestamps recorded in a dry run would take query slots from the next measured call.
  const profiled = dev.profile;
  dev.setProfiling(false);
  gemmHooks.onGemm = (g) => add(g.op, gemmFlops(g));
  gemmHooks.directConv = 0;
  attentionHooks.onAttention = (a) => add("attention", attentionFlops(a));
  try {
    dev.precompile(() => void record());
  } finally {
    gemmHooks.onGemm = saved.onGemm;
    gemmHooks.directConv = saved.directConv;
    attentionHooks.onAttention = saved.onAttn;
    dev.setProfiling(profiled);
  }
  return c;
}
