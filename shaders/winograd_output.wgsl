// Winograd F(2x2, 3x3) output transform (pipeline/ops/winograd.ts; after shaders/winograd_output_io.wgsl, TILE = 2):
// Y = A^T m A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], from m[s][xi][co][q], xi = 4 i + j.

// A^T times a 4-vector.
fn at2(v: vec4<f32>) -> vec2<f32> {
  return vec2<f32>(v.x + v.y + v.z, v.y - v.z - v.w);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let co = i / p.tiles;
  let q = i % p.tiles;
  let o = co * p.P + q;
  // Row i of m: xi = 4 i .. 4 i + 3.
  let m0 = mq(o, 0u, false);
  let m1 = mq(o, 4u, false);
  let m2 = mq(o, 8u, false);
  let m3 = mq(o, 12u, false);
  // A^T m: two rows; then (A^T m) A: A^T on each row.
  let y0 = at2(m0 + m1 + m2);
  let y1 = at2(m1 - m2 - m3);
  let t = tile_of(q);
  put(t.b, co, t.oy, t.ox, y0.x);
  put(t.b, co, t.oy, t.ox + 1u, y0.y);
  put(t.b, co, t.oy + 1u, t.ox, y1.x);
  put(t.b, co, t.oy + 1u, t.ox + 1u, y1.y);
}
