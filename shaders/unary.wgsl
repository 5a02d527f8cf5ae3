// y = f(alpha * x + beta) elementwise; f chosen by the OP constant (see pipeline/ops/elementwise.ts).
struct Params { n: u32, alpha: f32, beta: f32, row: u32, lo: f32, hi: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

// erf with ~1 ulp float32 error (rational approximation used by XLA/Eigen), clamped where it saturates.
fn erf_f32(v: f32) -> f32 {
  let x = clamp(v, -4.0, 4.0);
  let x2 = x * x;
  var a = x2 * -2.72614225801306e-10 + 2.77068142495902e-08;
  a = a * x2 + -2.10102402082508e-06;
  a = a * x2 + -5.69250639462346e-05;
  a = a * x2 + -7.34990630326855e-04;
  a = a * x2 + -2.95459980854025e-03;
  a = a * x2 + -1.60960333262415e-02;
  a = a * x;
  var b = x2 * -1.45660718464996e-05 + -2.13374055278905e-04;
  b = b * x2 + -1.68282697438203e-03;
  b = b * x2 + -7.37332916720468e-03;
  b = b * x2 + -1.42647390514189e-02;
  return a / b;
}

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
