// Vector-width specialisation for memory-bound kernels: a kernel written against `V` (storage unit), `VF` (its f32
// counterpart) and `W` (elements per unit) runs on vec4 loads when the data is 4-aligned and on scalars otherwise.
import type { Consts } from "../gpu/shaders.ts";

export type Width = 1 | 4;

/** Kernel source for width `w`: aliases and lane helpers prepended to `src`. */
export function vecSource(src: string, w: Width): string {
  const head = w === 4
    ? "alias V = T4;\nalias VF = vec4f;\n" +
      "fn hsum(v: vec4f) -> f32 { return v.x + v.y + v.z + v.w; }\nfn lane0(v: vec4f) -> f32 { return v.x; }\n" +
      "fn pack(a: f32, b: f32, c: f32, d: f32) -> vec4f { return vec4f(a, b, c, d); }\n"
    : "alias V = T;\nalias VF = f32;\nfn hsum(v: f32) -> f32 { return v; }\nfn lane0(v: f32) -> f32 { return v; }\n" +
      "fn pack(a: f32, b: f32, c: f32, d: f32) -> f32 { return a; }\n";
  return head + src;
}

/** Consts with the width included, so the pipeline cache keys scalar and vec4 variants apart. */
export function vecConsts(w: Width, consts: Consts = {}): Consts {
  return { W: w, ...consts };
}

/** 4 when every count is a multiple of 4, else 1. */
export function widthFor(...counts: number[]): Width {
  return counts.every((c) => c % 4 === 0) ? 4 : 1;
}
