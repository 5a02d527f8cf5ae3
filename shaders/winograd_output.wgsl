// Winograd F(2x2, 3x3) output transform (pipeline/ops/winograd.ts): the batched GEMM (shaders/winograd_gemm.wgsl)
// left m[s][xi][co][q] in f32 (s < p.S K slices, added here in order like shaders/splitk_sum.wgsl); this forms
// Y = A^T m A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], the 2x2 outputs of tile q = (b * TH + ty) * TW + tx of channel
// co (tile rows [ty0, ty0 + TH) of the pass's images), and writes y[b, co, 2 (ty0 + ty) + r, 2 tx + c] (inside
// Ho x Wo) through conv2d's epilogue (shaders/conv_epilogue.wgsl: bias, per-image bias, residual), rounded to T once.
// One thread per (co, q): n = Cout * tiles.
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

// Row i of m: xi = 4 i .. 4 i + 3, each summed over the K slices.
fn mrow(o: u32, i: u32) -> vec4<f32> {
  let plane = p.Cout * p.P;
  var r = vec4<f32>(0.0);
  for (var s = 0u; s < p.S; s++) {
    let e = o + (s * 16u + 4u * i) * plane;
    r += vec4<f32>(m[e], m[e + plane], m[e + 2u * plane], m[e + 3u * plane]);
  }
  return r;
}

// A^T times a 4-vector.
fn at2(v: vec4<f32>) -> vec2<f32> {
  return vec2<f32>(v.x + v.y + v.z, v.y - v.z - v.w);
}

fn put(b: u32, co: u32, oy: u32, ox: u32, v: f32) {
  if (oy >= p.Ho || ox >= p.Wo) { return; }
  let e = ((b * p.Cout + co) * p.Ho + oy) * p.Wo + ox;
  y[e] = T(epilogue(v, co, b, e));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let co = i / p.tiles;
  let q = i % p.tiles;
  let o = co * p.P + q;
  let m0 = mrow(o, 0u);
  let m1 = mrow(o, 1u);
  let m2 = mrow(o, 2u);
  let m3 = mrow(o, 3u);
  // A^T m: two rows; then (A^T m) A: A^T on each row.
  let y0 = at2(m0 + m1 + m2);
  let y1 = at2(m1 - m2 - m3);
  let tx = q % p.TW;
  let ty = p.ty0 + (q / p.TW) % p.TH;
  let b = q / (p.TW * p.TH);
  put(b, co, 2u * ty, 2u * tx, y0.x);
  put(b, co, 2u * ty, 2u * tx + 1u, y0.y);
  put(b, co, 2u * ty + 1u, 2u * tx, y1.x);
  put(b, co, 2u * ty + 1u, 2u * tx + 1u, y1.y);
}
