// y = f(alpha * x + beta) elementwise; f chosen by the OP constant (see pipeline/ops/elementwise.ts).
struct Params { n: u32, alpha: f32, beta: f32, row: u32, lo: f32, hi: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

// erf_f32 comes from shaders/erf.wgsl.
alias ERF_T = f32;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

fn apply(v: f32) -> f32 {
  switch OP {
    case 0u: { return v; }                                // identity (scale/shift only)
    case 1u: { return v * sigmoid(v); }                   // silu
    case 2u: { return 0.5 * v * (1.0 + erf_f32(v * 0.7071067811865476)); } // gelu (erf)
    case 3u: { return v * sigmoid(1.702 * v); }           // quick_gelu (CLIP)
    case 4u: { return 0.5 * v * (1.0 + tanh(clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -10.0, 10.0))); } // gelu tanh; clamped: some drivers' tanh overflows to NaN
    case 5u: { return exp(v); }
    case 6u: { return clamp(v, 0.0, 1.0); }
    case 7u: { return clamp(v, p.lo, p.hi); }
    default: { return v; }
  }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  y[i] = T(apply(p.alpha * f32(x[i]) + p.beta));
}
