// Winograd F(4x4, 3x3) output transform (pipeline/ops/winograd.ts; after shaders/winograd_output_io.wgsl, TILE = 4):
// Y = A^T m A, A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], from
// m[s][xi][co][q], xi = 6 i + j. A^T goes down m's rows (lanes: columns) and then, transposed, along them (lanes:
// rows), as the input transform's B^T.

// A^T times six vectors, lane by lane.
fn at(d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>, d4: vec4<f32>, d5: vec4<f32>) -> array<vec4<f32>, 4> {
  return array<vec4<f32>, 4>(
    d0 + d1 + d2 + d3 + d4,
    d1 - d2 + 2.0 * (d3 - d4),
    d1 + d2 + 4.0 * (d3 + d4),
    d1 - d2 + 8.0 * (d3 - d4) + d5,
  );
}

// Output column ox of rows oy .. oy + 3 (lanes).
fn put_col(b: u32, co: u32, oy: u32, ox: u32, c: vec4<f32>) {
  put(b, co, oy, ox, c.x);
  put(b, co, oy + 1u, ox, c.y);
  put(b, co, oy + 2u, ox, c.z);
  put(b, co, oy + 3u, ox, c.w);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let co = i / p.tiles;
  let q = i % p.tiles;
  let o = co * p.P + q;
  // A^T m: row r's columns 0-3 in l[r], 4-5 in h[r].xy.
  let l = at(
    mq(o, 0u, false), mq(o, 6u, false), mq(o, 12u, false), mq(o, 18u, false), mq(o, 24u, false), mq(o, 30u, false),
  );
  let h = at(mq(o, 4u, true), mq(o, 10u, true), mq(o, 16u, true), mq(o, 22u, true), mq(o, 28u, true), mq(o, 34u, true));
  // (A^T m) A: transposed, lanes are the output rows and column k is element k.
  let a = transpose(mat4x4<f32>(l[0], l[1], l[2], l[3]));
  let ah = transpose(mat4x4<f32>(h[0], h[1], h[2], h[3]));
  let yc = at(a[0], a[1], a[2], a[3], ah[0], ah[1]);
  let t = tile_of(q);
  put_col(t.b, co, t.oy, t.ox, yc[0]);
  put_col(t.b, co, t.oy, t.ox + 1u, yc[1]);
  put_col(t.b, co, t.oy, t.ox + 2u, yc[2]);
  put_col(t.b, co, t.oy, t.ox + 3u, yc[3]);
}
