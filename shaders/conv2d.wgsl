// conv2d as implicit GEMM: y[co, pix] = w[co, k] @ patch[k, pix] (+ bias[co]) (+ res), with M = Cout,
// N = images * Ho * Wo, K = Cin * KH * KW, on the shared core in shaders/gemm.wgsl (appended by pipeline/ops/conv2d.ts). The patch tile is gathered
// from x while it is loaded into shared memory (zero padding = bounds check), so no im2col buffer exists.
// Consts: BM, BN, BK, TM, TN, KH, KW, VEC (K % 4 == 0: vec4 weight loads), DIRECT (1x1, stride 1, no
// padding, Ho*Wo % 4 == 0: the patch is x itself, loaded as vec4 along pixels).
// Split-K (OUT = f32, p.flags = 0): y is the partial sums [slices][images][Cout][Ho*Wo], slice ks at ks * partStride;
// shaders/splitk_sum.wgsl adds them and applies the flags. Otherwise OUT = T and partStride = 0.
// p.flags (shaders/conv_epilogue.wgsl): 1 = add bias, 2 = add res, 4 = add y's old value (in-place residual), 8 = add
// the per-image bias eb[ebOff + image * ebStride + co] (a resnet's time-embedding projection); absent ones get
// placeholders.
struct Params {
  Cout: u32, Cin: u32, H: u32, W: u32, Wo: u32, HWo: u32, npix: u32, K: u32,
  padT: i32, padL: i32, tilesM: u32, tilesN: u32, tiles: u32, gx: u32, mfast: u32, stride: u32, flags: u32,
  ebOff: u32, ebStride: u32, kSplit: u32, partStride: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T4>;
@group(0) @binding(2) var<storage, read> w: array<T4>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> res: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<OUT>;
@group(0) @binding(6) var<storage, read> eb: array<T>;

const KK = KH * KW;
// Gather: each thread owns one pixel column of the patch tile and every KSTEP-th of its rows (WG % BN == 0).
const KSTEP = WG / BN;

// This thread's gather column: image base offset in x and the top-left input position of its window.
var<private> g_ok: bool;
var<private> g_base: u32;
var<private> g_iy: i32;
var<private> g_ix: i32;

fn load_w(r: u32, k: u32) -> vec4<f32> {
  if (r >= p.Cout) { return vec4<f32>(0.0); }
  let e = r * p.K + k;
  if (VEC) {
    if (k < p.K) { return vec4<f32>(w[e >> 2u]); }
    return vec4<f32>(0.0);
  }
  var v = vec4<f32>(0.0);
  if (k < p.K) { v.x = f32(w[e >> 2u][e & 3u]); }
  if (k + 1u < p.K) { v.y = f32(w[(e + 1u) >> 2u][(e + 1u) & 3u]); }
  if (k + 2u < p.K) { v.z = f32(w[(e + 2u) >> 2u][(e + 2u) & 3u]); }
  if (k + 3u < p.K) { v.w = f32(w[(e + 3u) >> 2u][(e + 3u) & 3u]); }
  return v;
}

fn load_patch(k: u32) -> f32 {
  if (!g_ok || k >= p.K) { return 0.0; }
  let ci = k / KK;
  let r = k % KK;
  let iy = g_iy + i32(r / KW);
  let ix = g_ix + i32(r % KW);
  if (iy < 0 || ix < 0 || iy >= i32(p.H) || ix >= i32(p.W)) { return 0.0; }
  let e = g_base + (ci * p.H + u32(iy)) * p.W + u32(ix);
  return f32(x[e >> 2u][e & 3u]);
}

// DIRECT: pixels pix..pix+3 of channel k (one image, since HWo % 4 == 0).
fn load_direct(k: u32, pix: u32) -> vec4<f32> {
  if (k >= p.K || pix >= p.npix) { return vec4<f32>(0.0); }
  let e = ((pix / p.HWo) * p.Cin + k) * p.HWo + pix % p.HWo;
  return vec4<f32>(x[e >> 2u]);
}

// Staging (shaders/gemm.wgsl): A slot idx is w's (row idx / KV, K run idx % KV); B slot idx with DIRECT is x's
// (channel idx / (BN / 4), 4-pixel run idx % (BN / 4)), already k-major; B slot s otherwise gathers patch rows
// lid / BN + (4s + j) * KSTEP (j = 0..3) of this thread's pixel column lid % BN.
fn fetch_a(s: u32, lid: u32, k0: u32) -> vec4<S> {
  let idx = lid + s * WG;
  if (idx >= A_LEN) { return vec4<S>(0.0); }
  return vec4<S>(load_w(m0 + idx / KV, k0 + (idx % KV) * 4u));
}

fn put_a(s: u32, lid: u32, buf: u32, v: vec4<S>) {
  let idx = lid + s * WG;
  if (idx < A_LEN) { put_rows_a(buf, idx, v); }
}

fn fetch_b(s: u32, lid: u32, k0: u32) -> vec4<S> {
  if (DIRECT) {
    let idx = lid + s * WG;
    if (idx >= B_LEN) { return vec4<S>(0.0); }
    return vec4<S>(load_direct(k0 + idx / (BN / 4u), n0 + (idx % (BN / 4u)) * 4u));
  }
  let k = k0 + lid / BN + 4u * s * KSTEP;
  return vec4<S>(
    vec4<f32>(load_patch(k), load_patch(k + KSTEP), load_patch(k + 2u * KSTEP), load_patch(k + 3u * KSTEP)),
  );
}

fn put_b(s: u32, lid: u32, buf: u32, v: vec4<S>) {
  if (DIRECT) {
    let idx = lid + s * WG;
    if (idx < B_LEN) { Bs[buf * B_LEN + idx] = v; }
    return;
  }
  let c = lid % BN;
  let k = lid / BN + 4u * s * KSTEP;
  if (k >= BK) { return; }
  let b = buf * B_LEN + k * (BN / 4u) + c / 4u;
  Bs[b][c % 4u] = v.x;
  Bs[b + KSTEP * (BN / 4u)][c % 4u] = v.y;
  Bs[b + 2u * KSTEP * (BN / 4u)][c % 4u] = v.z;
  Bs[b + 3u * KSTEP * (BN / 4u)][c % 4u] = v.w;
}

// Output channels (ty + (r / 4) * MT) * 4 + r % 4 and pixels (tx + c * NT) * 4 + 0..3 of the tile.
fn emit(r: u32, c: u32, v: vec4<f32>) {
  let co = m0 + (ty + (r / 4u) * MT) * 4u + r % 4u;
  let col = n0 + (tx + c * NT) * 4u;
  if (co >= p.Cout) { return; }
  for (var j = 0u; j < 4u; j++) {
    let pix = col + j;
    if (pix >= p.npix) { return; }
    let img = pix / p.HWo;
    let e = (img * p.Cout + co) * p.HWo + pix % p.HWo;
    y[ks * p.partStride + e] = OUT(epilogue(v[j], co, img, e));
  }
}

// The gather position of this thread's pixel column.
fn prepare(lid: u32) {
  if (!DIRECT) {
    let pix = n0 + lid % BN;
    g_ok = pix < p.npix;
    let q = pix % p.HWo;
    g_base = (pix / p.HWo) * p.Cin * p.H * p.W;
    g_iy = i32((q / p.Wo) * p.stride) - p.padT;
    g_ix = i32((q % p.Wo) * p.stride) - p.padL;
  }
}
