// Winograd F(4x4, 3x3) output transform (pipeline/ops/winograd.ts; F(2x2, 3x3)'s is shaders/winograd_output.wgsl):
// the batched GEMM (shaders/winograd_gemm.wgsl) left m[s][xi][co][q] in f32 (s < p.S K slices, added here in order),
// xi = 6 i + j; this forms Y = A^T m A, A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
// [0, 1, -1, 8, -8, 1]], the 4x4 outputs of tile q = (b * TH + ty) * TW + tx of channel co, and writes
// y[b, co, 4 (ty0 + ty) + r, 4 tx + c] (inside Ho x Wo) through conv2d's epilogue (shaders/conv_epilogue.wgsl), rounded
// to T once. A^T goes down m's rows (lanes: columns) and then, transposed, along them (lanes: rows), as the input
// transform's B^T. One thread per (co, q): n = Cout * tiles.
struct Params {
  n: u32, S: u32, P: u32, Cout: u32, Ho: u32, Wo: u32, TH: u32, TW: u32, tiles: u32, ty0: u32, flags: u32, ebOff: u32,
  ebStride: u32, row: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read> res: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read> eb: array<T>;

// m at xi .. xi + 3 (xi .. xi + 1 with `two`; the rest zero), each summed over the K slices.
fn mq(o: u32, xi: u32, two: bool) -> vec4<f32> {
  let plane = p.Cout * p.P;
  var r = vec4<f32>(0.0);
  for (var s = 0u; s < p.S; s++) {
    let e = o + (s * 36u + xi) * plane;
    if (two) {
      r += vec4<f32>(m[e], m[e + plane], 0.0, 0.0);
    } else {
      r += vec4<f32>(m[e], m[e + plane], m[e + 2u * plane], m[e + 3u * plane]);
    }
  }
  return r;
}

// A^T times six vectors, lane by lane.
fn at(d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>, d4: vec4<f32>, d5: vec4<f32>) -> array<vec4<f32>, 4> {
  return array<vec4<f32>, 4>(
    d0 + d1 + d2 + d3 + d4,
    d1 - d2 + 2.0 * (d3 - d4),
    d1 + d2 + 4.0 * (d3 + d4),
    d1 - d2 + 8.0 * (d3 - d4) + d5,
  );
}

fn put(b: u32, co: u32, oy: u32, ox: u32, v: f32) {
  if (oy >= p.Ho || ox >= p.Wo) { return; }
  let e = ((b * p.Cout + co) * p.Ho + oy) * p.Wo + ox;
  y[e] = T(epilogue(v, co, b, e));
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
  let tx = q % p.TW;
  let ty = p.ty0 + (q / p.TW) % p.TH;
  let b = q / (p.TW * p.TH);
  put_col(b, co, 4u * ty, 4u * tx, yc[0]);
  put_col(b, co, 4u * ty, 4u * tx + 1u, yc[1]);
  put_col(b, co, 4u * ty, 4u * tx + 2u, yc[2]);
  put_col(b, co, 4u * ty, 4u * tx + 3u, yc[3]);
}
