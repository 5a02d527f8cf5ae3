// Winograd F(2x2, 3x3) weight transform (pipeline/ops/winograd.ts): U = G g G^T for each 3x3 filter g = w[co, ci],
// G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], written as 16 GEMM operands
// u[xi][co][ci] (xi = 4 i + j, element (i, j) of the 4x4 U): the A operand of the batched GEMM
// (shaders/winograd_gemm.wgsl). Computed in f32 and rounded to T once. Runs once per weight, not per step.
// One thread per (co, ci): n = Cout * Cin.
struct Params {
  n: u32, row: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read_write> u: array<T>;

// G's rows times a 3-vector (one column or row of g).
fn g4(a: f32, b: f32, c: f32) -> vec4<f32> {
  return vec4<f32>(a, 0.5 * (a + b + c), 0.5 * (a - b + c), c);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let o = i * 9u;
  // G g: 4 rows x 3 columns (column c = G times g's column c).
  let c0 = g4(f32(w[o]), f32(w[o + 3u]), f32(w[o + 6u]));
  let c1 = g4(f32(w[o + 1u]), f32(w[o + 4u]), f32(w[o + 7u]));
  let c2 = g4(f32(w[o + 2u]), f32(w[o + 5u]), f32(w[o + 8u]));
  // (G g) G^T: row r of U = G times row r of G g.
  let r0 = g4(c0.x, c1.x, c2.x);
  let r1 = g4(c0.y, c1.y, c2.y);
  let r2 = g4(c0.z, c1.z, c2.z);
  let r3 = g4(c0.w, c1.w, c2.w);
  u[i] = T(r0.x);
  u[i + p.n] = T(r0.y);
  u[i + 2u * p.n] = T(r0.z);
  u[i + 3u * p.n] = T(r0.w);
  u[i + 4u * p.n] = T(r1.x);
  u[i + 5u * p.n] = T(r1.y);
  u[i + 6u * p.n] = T(r1.z);
  u[i + 7u * p.n] = T(r1.w);
  u[i + 8u * p.n] = T(r2.x);
  u[i + 9u * p.n] = T(r2.y);
  u[i + 10u * p.n] = T(r2.z);
  u[i + 11u * p.n] = T(r2.w);
  u[i + 12u * p.n] = T(r3.x);
  u[i + 13u * p.n] = T(r3.y);
  u[i + 14u * p.n] = T(r3.z);
  u[i + 15u * p.n] = T(r3.w);
}
