// diffusers GEGLU after its projection: y[r, j] = x[r, j] * gelu_erf(x[r, D + j]), x [rows, 2D] -> y [rows, D].
// Needs (from pipeline/ops/vec.ts) V, VF; d counts storage units (D / W).
struct Params { n: u32, d: u32, row: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

// erf_f32 comes from shaders/erf.wgsl.
alias ERF_T = VF;

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
