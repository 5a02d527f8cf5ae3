// Winograd F(2x2, 3x3) input transform (pipeline/ops/winograd.ts; after shaders/winograd_input_io.wgsl, TILE = 2):
// V = B^T d B for the 4x4 input patch d of every 2x2 output tile and input channel,
// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] (only adds), written to v[xi][ci][q] for
// xi = 4 i + j (i along y). One thread per input channel and four tiles q0 .. q0 + 3 (n = Cin * P / 4), stored as one
// vec4 per xi: in f16 (F16MATH) a scalar store moves 2 bytes, which GPUs stream far below their bandwidth (H200:
// scalar f16 elementwise kernels at a sixth of f32's GB/s).
@group(0) @binding(2) var<storage, read_write> v: array<vec4<V>>;

// B^T times a 4-vector (one column or row).
fn bt(d: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(d.x - d.z, d.y + d.z, d.z - d.y, d.y - d.w);
}

// Tile q's V in channel ci, row i in element i (zero past the tiles).
fn tile_v(ci: u32, q: u32) -> array<vec4<f32>, 4> {
  if (q >= p.tiles) { return array<vec4<f32>, 4>(); }
  let d = patch_of(ci, q);
  let d0 = quad(d.base, d.iy, d.ix);
  let d1 = quad(d.base, d.iy + 1, d.ix);
  let d2 = quad(d.base, d.iy + 2, d.ix);
  let d3 = quad(d.base, d.iy + 3, d.ix);
  // B^T d: row combinations; then (B^T d) B: the same on each row.
  return array<vec4<f32>, 4>(bt(d0 - d2), bt(d1 + d2), bt(d2 - d1), bt(d1 - d3));
}

// Row i of four tiles' V (a, b, c, d) as four vec4s along q, at xi = 4 i .. 4 i + 3 (o: this thread's vec4, s: one
// xi plane in vec4s).
fn put_row(o: u32, s: u32, i: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) {
  let r = transpose(mat4x4<f32>(a, b, c, d));
  v[o + 4u * i * s] = vec4<V>(r[0]);
  v[o + (4u * i + 1u) * s] = vec4<V>(r[1]);
  v[o + (4u * i + 2u) * s] = vec4<V>(r[2]);
  v[o + (4u * i + 3u) * s] = vec4<V>(r[3]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let P4 = p.P / 4u;
  let ci = i / P4;
  let q0 = (i % P4) * 4u;
  let a = tile_v(ci, q0);
  let b = tile_v(ci, q0 + 1u);
  let c = tile_v(ci, q0 + 2u);
  let d = tile_v(ci, q0 + 3u);
  let s = p.Cin * P4; // one xi plane
  let o = ci * P4 + q0 / 4u;
  put_row(o, s, 0u, a[0], b[0], c[0], d[0]);
  put_row(o, s, 1u, a[1], b[1], c[1], d[1]);
  put_row(o, s, 2u, a[2], b[2], c[2], d[2]);
  put_row(o, s, 3u, a[3], b[3], c[3], d[3]);
}
