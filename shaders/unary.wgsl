// y = f(alpha * x + beta) elementwise; f chosen by the OP constant (see pipeline/ops/elementwise.ts), computed in f32.
// One invocation per storage unit V: a vec4 (W = 4) when the element count is a multiple of 4, else one scalar.
// Why vec4: a scalar f16 is a 2-byte access, and GPUs stream those far below their bandwidth (H200: silu 301 GB/s in
// f16 against 1881 in f32); a vec4<f16> unit moves 8 bytes. Every lane runs the scalar kernel's f32 math, so both
// widths give the same values.
// Needs (from pipeline/ops/vec.ts) V, VF, W; erf_f32 from shaders/erf.wgsl (ERF_T = VF).
struct Params { n: u32, alpha: f32, beta: f32, row: u32, lo: f32, hi: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

alias ERF_T = VF;

fn sigmoid(v: VF) -> VF { return 1.0 / (1.0 + exp(-v)); }

fn apply(v: VF) -> VF {
  switch OP {
    case 0u: { return v; }                                // identity (scale/shift only)
    case 1u: { return v * sigmoid(v); }                   // silu
    case 2u: { return 0.5 * v * (1.0 + erf_f32(v * 0.7071067811865476)); } // gelu (erf)
    case 3u: { return v * sigmoid(1.702 * v); }           // quick_gelu (CLIP)
    case 4u: { return 0.5 * v * (1.0 + tanh(clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), VF(-10.0), VF(10.0)))); } // gelu tanh; clamped: some drivers' tanh overflows to NaN
    case 5u: { return exp(v); }
    case 6u: { return clamp(v, VF(0.0), VF(1.0)); }
    case 7u: { return clamp(v, VF(p.lo), VF(p.hi)); }
    default: { return v; }
  }
}

// p.n: units (elements / W) in this dispatch.
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  y[i] = V(apply(p.alpha * VF(x[i]) + p.beta));
}
