// Winograd F(4x4, 3x3) weight transform (pipeline/ops/winograd.ts; F(2x2, 3x3)'s is shaders/winograd_weights.wgsl):
// U = G g G^T for each 3x3 filter g = w[co, ci], G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
// [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]], written as 36 GEMM operands u[xi][co][ci] (xi = 6 i + j, element
// (i, j) of the 6x6 U, i along y). Computed in f32 and rounded to T once, once per weight. G goes down g's rows (lanes:
// columns) and then, transposed, along them (lanes: rows). One thread per (co, ci): n = Cout * Cin.
struct Params {
  n: u32, row: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read_write> u: array<T>;

// G times three vectors, lane by lane.
fn g6(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>) -> array<vec4<f32>, 6> {
  return array<vec4<f32>, 6>(
    a / 4.0,
    -(a + b + c) / 6.0,
    -(a - b + c) / 6.0,
    a / 24.0 + b / 12.0 + c / 6.0,
    a / 24.0 - b / 12.0 + c / 6.0,
    c,
  );
}

// Column j of U's rows 0-3 (lanes) and of rows 4-5 (lanes x, y of `r45`).
fn put(i: u32, j: u32, r03: vec4<f32>, r45: vec4<f32>) {
  u[i + j * p.n] = T(r03.x);
  u[i + (6u + j) * p.n] = T(r03.y);
  u[i + (12u + j) * p.n] = T(r03.z);
  u[i + (18u + j) * p.n] = T(r03.w);
  u[i + (24u + j) * p.n] = T(r45.x);
  u[i + (30u + j) * p.n] = T(r45.y);
}

fn wrow(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(w[o]), f32(w[o + 1u]), f32(w[o + 2u]), 0.0);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let o = i * 9u;
  // G g: row r in k[r] (lanes: g's columns).
  let k = g6(wrow(o), wrow(o + 3u), wrow(o + 6u));
  // (G g) G^T: transposed, lanes are U's rows (0-3, then 4-5) and column c of G g is element c.
  let a = transpose(mat4x4<f32>(k[0], k[1], k[2], k[3]));
  let c = transpose(mat4x4<f32>(k[4], k[5], vec4<f32>(0.0), vec4<f32>(0.0)));
  let u03 = g6(a[0], a[1], a[2]);
  let u45 = g6(c[0], c[1], c[2]);
  put(i, 0u, u03[0], u45[0]);
  put(i, 1u, u03[1], u45[1]);
  put(i, 2u, u03[2], u45[2]);
  put(i, 3u, u03[3], u45[3]);
  put(i, 4u, u03[4], u45[4]);
  put(i, 5u, u03[5], u45[5]);
}
