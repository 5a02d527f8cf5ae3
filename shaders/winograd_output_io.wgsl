// What the Winograd output transforms share (prepended to shaders/winograd_output.wgsl, F(2x2, 3x3), and
// shaders/winograd4_output.wgsl, F(4x4, 3x3); pipeline/ops/winograd.ts): Params, bindings, m's sums over the K slices,
// where a tile's outputs lie and the store through conv2d's epilogue (shaders/conv_epilogue.wgsl, appended: bias,
// per-image bias, residual), rounded to T once. The batched GEMM (shaders/winograd_gemm.wgsl) left m[s][xi][co][q] in
// f32, s < p.S K slices (added in order, like shaders/splitk_sum.wgsl). Tile q = (b * TH + ty) * TW + tx of channel co
// (tile rows [ty0, ty0 + TH) of the pass's images) has its TILE x TILE outputs (TILE: a const, 2 or 4) at
// y[b, co, TILE (ty0 + ty) + r, TILE tx + c], those inside Ho x Wo written. One thread per (co, q): n = Cout * tiles.
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

const XI = (TILE + 2u) * (TILE + 2u); // products a tile: m's planes per K slice

fn put(b: u32, co: u32, oy: u32, ox: u32, v: f32) {
  if (oy >= p.Ho || ox >= p.Wo) { return; }
  let e = ((b * p.Cout + co) * p.Ho + oy) * p.Wo + ox;
  y[e] = T(epilogue(v, co, b, e));
}

// m at xi .. xi + 3 of output o = co * P + q (xi .. xi + 1 with `two`; the rest zero), each summed over the K slices.
fn mq(o: u32, xi: u32, two: bool) -> vec4<f32> {
  let plane = p.Cout * p.P;
  var r = vec4<f32>(0.0);
  for (var s = 0u; s < p.S; s++) {
    let e = o + (s * XI + xi) * plane;
    if (two) {
      r += vec4<f32>(m[e], m[e + plane], 0.0, 0.0);
    } else {
      r += vec4<f32>(m[e], m[e + plane], m[e + 2u * plane], m[e + 3u * plane]);
    }
  }
  return r;
}

// Tile q's image and its first output row and column.
struct Tile { b: u32, oy: u32, ox: u32 }

fn tile_of(q: u32) -> Tile {
  return Tile(q / (p.TW * p.TH), TILE * (p.ty0 + (q / p.TW) % p.TH), TILE * (q % p.TW));
}
