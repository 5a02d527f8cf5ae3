// diffusers GEGLU after its projection: y[r, j] = x[r, j] * gelu_erf(x[r, D + j]), x [rows, 2D] -> y [rows, D].
// Needs (from pipeline/ops/vec.ts) V, VF; d counts storage units (D / W).
struct Params { n: u32, d: u32, row: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

// erf with ~1 ulp float32 error (the rational approximation in shaders/unary.wgsl), clamped where it saturates.
fn erf_f32(v: VF) -> VF {
  let x = clamp(v, VF(-4.0), VF(4.0));
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

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let r = i / p.d;
  let j = i - r * p.d;
  let h = VF(x[2u * p.d * r + j]);
  let g = VF(x[2u * p.d * r + p.d + j]);
  y[i] = V(h * (0.5 * g * (1.0 + erf_f32(g * 0.7071067811865476))));
}
