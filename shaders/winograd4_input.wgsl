// Winograd F(4x4, 3x3) input transform (pipeline/ops/winograd.ts; after shaders/winograd_input_io.wgsl, TILE = 4):
// V = B^T d B for the 6x6 input patch d of every 4x4 output tile and input channel, with Lavin & Gray's points 0, +-1,
// +-2: B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
// [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], written to v[xi][ci][q] for xi = 6 i + j (i along y). B^T is applied
// lane by lane to vec4s twice: down the patch's rows (lanes: columns), then, transposed, along them (lanes: rows), so
// both passes are the one bt(). One thread per (ci, q): n = Cin * P (F(4x4, 3x3) runs in f32 only, where scalar
// stores are as fast as any).
@group(0) @binding(2) var<storage, read_write> v: array<V>;

// B^T times six vectors, lane by lane: element i = sum over k of B^T[i][k] d_k.
fn bt(d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>, d4: vec4<f32>, d5: vec4<f32>) -> array<vec4<f32>, 6> {
  return array<vec4<f32>, 6>(
    4.0 * d0 - 5.0 * d2 + d4,
    d3 + d4 - 4.0 * (d1 + d2),
    4.0 * (d1 - d2) - d3 + d4,
    2.0 * (d3 - d1) - d2 + d4,
    2.0 * (d1 - d3) - d2 + d4,
    4.0 * d1 - 5.0 * d3 + d5,
  );
}

// Column j of V's rows 0-3 (lanes) and of rows 4-5 (lanes x, y of `r45`).
fn put(o: u32, s: u32, j: u32, r03: vec4<f32>, r45: vec4<f32>) {
  v[o + j * s] = V(r03.x);
  v[o + (6u + j) * s] = V(r03.y);
  v[o + (12u + j) * s] = V(r03.z);
  v[o + (18u + j) * s] = V(r03.w);
  v[o + (24u + j) * s] = V(r45.x);
  v[o + (30u + j) * s] = V(r45.y);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let ci = i / p.P;
  let q = i % p.P;
  // The patch's columns 0-3 and 4-7 (6 and 7 unused) of rows 0-5; zeros past the tiles.
  var lo = array<vec4<f32>, 6>();
  var hi = array<vec4<f32>, 6>();
  if (q < p.tiles) {
    let d = patch_of(ci, q);
    lo = array<vec4<f32>, 6>(
      quad(d.base, d.iy, d.ix), quad(d.base, d.iy + 1, d.ix), quad(d.base, d.iy + 2, d.ix),
      quad(d.base, d.iy + 3, d.ix), quad(d.base, d.iy + 4, d.ix), quad(d.base, d.iy + 5, d.ix),
    );
    hi = array<vec4<f32>, 6>(
      quad(d.base, d.iy, d.ix + 4), quad(d.base, d.iy + 1, d.ix + 4), quad(d.base, d.iy + 2, d.ix + 4),
      quad(d.base, d.iy + 3, d.ix + 4), quad(d.base, d.iy + 4, d.ix + 4), quad(d.base, d.iy + 5, d.ix + 4),
    );
  }
  // B^T d: row i's columns 0-3 in l[i], 4-5 in h[i].xy.
  let l = bt(lo[0], lo[1], lo[2], lo[3], lo[4], lo[5]);
  let h = bt(hi[0], hi[1], hi[2], hi[3], hi[4], hi[5]);
  // (B^T d) B: transposed, lanes are rows (0-3, then 4-5), and column k is element k.
  let a = transpose(mat4x4<f32>(l[0], l[1], l[2], l[3]));
  let ah = transpose(mat4x4<f32>(h[0], h[1], h[2], h[3]));
  let c = transpose(mat4x4<f32>(l[4], l[5], vec4<f32>(0.0), vec4<f32>(0.0)));
  let ch = transpose(mat4x4<f32>(h[4], h[5], vec4<f32>(0.0), vec4<f32>(0.0)));
  let v03 = bt(a[0], a[1], a[2], a[3], ah[0], ah[1]);
  let v45 = bt(c[0], c[1], c[2], c[3], ch[0], ch[1]);
  let s = p.Cin * p.P; // one xi plane
  let o = ci * p.P + q;
  put(o, s, 0u, v03[0], v45[0]);
  put(o, s, 1u, v03[1], v45[1]);
  put(o, s, 2u, v03[2], v45[2]);
  put(o, s, 3u, v03[3], v45[3]);
  put(o, s, 4u, v03[4], v45[4]);
  put(o, s, 5u, v03[5], v45[5]);
}
