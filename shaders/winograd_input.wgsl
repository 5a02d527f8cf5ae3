// Winograd F(2x2, 3x3) input transform (pipeline/ops/winograd.ts; after shaders/winograd_input_io.wgsl, TILE = 2):
// V = B^T d B for the 4x4 input patch d of every 2x2 output tile and input channel,
// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] (only adds), written to v[xi][ci][q] for
// xi = 4 i + j (i along y).

// B^T times a 4-vector (one column or row).
fn bt(d: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(d.x - d.z, d.y + d.z, d.z - d.y, d.y - d.w);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let ci = i / p.P;
  let q = i % p.P;
  var t0 = vec4<f32>(0.0);
  var t1 = vec4<f32>(0.0);
  var t2 = vec4<f32>(0.0);
  var t3 = vec4<f32>(0.0);
  if (q < p.tiles) {
    let d = patch_of(ci, q);
    let d0 = quad(d.base, d.iy, d.ix);
    let d1 = quad(d.base, d.iy + 1, d.ix);
    let d2 = quad(d.base, d.iy + 2, d.ix);
    let d3 = quad(d.base, d.iy + 3, d.ix);
    // B^T d: row combinations; then (B^T d) B: the same on each row.
    t0 = bt(d0 - d2);
    t1 = bt(d1 + d2);
    t2 = bt(d2 - d1);
    t3 = bt(d1 - d3);
  }
  let s = p.Cin * p.P; // one xi plane
  let o = ci * p.P + q;
  v[o] = V(t0.x);
  v[o + s] = V(t0.y);
  v[o + 2u * s] = V(t0.z);
  v[o + 3u * s] = V(t0.w);
  v[o + 4u * s] = V(t1.x);
  v[o + 5u * s] = V(t1.y);
  v[o + 6u * s] = V(t1.z);
  v[o + 7u * s] = V(t1.w);
  v[o + 8u * s] = V(t2.x);
  v[o + 9u * s] = V(t2.y);
  v[o + 10u * s] = V(t2.z);
  v[o + 11u * s] = V(t2.w);
  v[o + 12u * s] = V(t3.x);
  v[o + 13u * s] = V(t3.y);
  v[o + 14u * s] = V(t3.z);
  v[o + 15u * s] = V(t3.w);
}
