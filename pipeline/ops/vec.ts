// Vector-width specialisation for memory-bound kernels: a kernel written against `V` (storage unit), `VF` (its f32
// counterpart) and `W` (elements per unit) runs on vec4 loads when the data is 4-aligned and on scalars otherwise.
// Why: a GPU moves data per invocation; a scalar f16 is 2 bytes, and on NVIDIA (H200) scalar-f16 kernels ran at a
// sixth of their f32 rate. vec4<f16> moves 8 bytes, vec4<f32> 16. Lane helpers: hsum (sum of lanes), lane0 (first),
// lane(v, k) (lane k; the scalar itself when W = 1), pack (4 values -> VF; the first when W = 1).
import type { Consts } from "../gpu/shaders.ts";

export type Width = 1 | 4;

/** Kernel source for width `w`: aliases and lane helpers prepended to `src`. */
export function vecSource(src: string, w: Width): string {
  const head = w === 4
    ? "alias V = T4;\nalias VF = vec4f;\n" +
      "fn hsum(v: vec4f) -> f32 { return v.x + v.y + v.z + v.w; }\nfn lane0(v: vec4f) -> f32 { return v.x; }\n" +
      "fn lane(v: vec4f, k: u32) -> f32 { return v[k]; }\n" +
      "fn pack(a: f32, b: f32, c: f32, d: f32) -> vec4f { return vec4f(a, b, c, d); }\n"
    : "alias V = T;\nalias VF = f32;\nfn hsum(v: f32) -> f32 { return v; }\nfn lane0(v: f32) -> f32 { return v; }\n" +
      "fn lane(v: f32, k: u32) -> f32 { return v; }\n" +
      "fn pack(a: f32, b: f32, c: f32, d: f32) -> f32 { return a; }\n";
  return head + src;
}

/** Consts with the width included, so the pipeline cache keys scalar and vec4 variants apart. */
export function vecConsts(w: Width, consts: Consts = {}): Consts {
  return { W: w, ...consts };
}

/** 4 when every count is a multiple of 4, else 1. Pass every count in elements that a unit index is built from (sizes,
 *  row lengths, element offsets inside a binding): a bound tensor itself starts at a dev.align-aligned byte offset
 *  (Tensor.binding), so its first element always starts a vec4. */
export function widthFor(...counts: number[]): Width {
  return counts.every((c) => c % 4 === 0) ? 4 : 1;
}
