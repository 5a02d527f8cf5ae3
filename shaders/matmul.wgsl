// Tiled, register-blocked GEMM: y[M, N] = x[M, K] @ w[N, K]^T (+ bias[N]) (+ res[M, N]), f32 accumulation.
// A BM x BN output tile per workgroup, TM x TN outputs per thread (4 or 8 each), K in steps of BK through
// double-buffered shared memory (k-major, so the inner loop reads vec4s): the next K-tile is loaded while this one
// is computed, one barrier per step. The inner product is unrolled by hand: private arrays indexed in loops are
// left in memory by some drivers (llvmpipe: 3x slower) because wgpu's loop bounding can block unrolling.
// Consts: BM, BN, BK, TM, TN, VEC (K % 4 == 0: vec4 loads along K).
// p.flags: 1 = add bias, 2 = add res, 4 = add y's old value (in-place residual; absent ones get placeholders).
struct Params { M: u32, N: u32, K: u32, tilesM: u32, tilesN: u32, tiles: u32, gx: u32, mfast: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T4>;
@group(0) @binding(2) var<storage, read> w: array<T4>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> res: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;

const MT = BM / TM; // threads along M
const NT = BN / TN; // threads along N
const WG = MT * NT;
const KV = BK / 4u; // vec4s per tile row along K
const A_LEN = BK * BM / 4u;
const B_LEN = BK * BN / 4u;

var<workgroup> As: array<vec4<f32>, 2u * A_LEN>; // two buffers of [k][m / 4]
var<workgroup> Bs: array<vec4<f32>, 2u * B_LEN>; // two buffers of [k][n / 4]
var<private> m0: u32;
var<private> n0: u32;
var<private> tx: u32;
var<private> ty: u32;

// Four consecutive K values of row `r` of a [rows, K] matrix, zero outside.
fn load_x(r: u32, k: u32) -> vec4<f32> {
  if (r >= p.M) { return vec4<f32>(0.0); }
  let e = r * p.K + k;
  if (VEC) {
    if (k < p.K) { return vec4<f32>(x[e >> 2u]); }
    return vec4<f32>(0.0);
  }
  var v = vec4<f32>(0.0);
  if (k < p.K) { v.x = f32(x[e >> 2u][e & 3u]); }
  if (k + 1u < p.K) { v.y = f32(x[(e + 1u) >> 2u][(e + 1u) & 3u]); }
  if (k + 2u < p.K) { v.z = f32(x[(e + 2u) >> 2u][(e + 2u) & 3u]); }
  if (k + 3u < p.K) { v.w = f32(x[(e + 3u) >> 2u][(e + 3u) & 3u]); }
  return v;
}

fn load_w(r: u32, k: u32) -> vec4<f32> {
  if (r >= p.N) { return vec4<f32>(0.0); }
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

// K-tile at k0 into shared buffer `buf`, transposing the K-runs into the k-major layout.
fn load_tile(lid: u32, buf: u32, k0: u32) {
  for (var idx = lid; idx < BM * KV; idx += WG) {
    let m = idx / KV;
    let k = (idx % KV) * 4u;
    let v = load_x(m0 + m, k0 + k);
    let a = buf * A_LEN + k * (BM / 4u) + m / 4u;
    As[a][m % 4u] = v.x;
    As[a + BM / 4u][m % 4u] = v.y;
    As[a + BM / 2u][m % 4u] = v.z;
    As[a + 3u * BM / 4u][m % 4u] = v.w;
  }
  for (var idx = lid; idx < BN * KV; idx += WG) {
    let n = idx / KV;
    let k = (idx % KV) * 4u;
    let v = load_w(n0 + n, k0 + k);
    let b = buf * B_LEN + k * (BN / 4u) + n / 4u;
    Bs[b][n % 4u] = v.x;
    Bs[b + BN / 4u][n % 4u] = v.y;
    Bs[b + BN / 2u][n % 4u] = v.z;
    Bs[b + 3u * BN / 4u][n % 4u] = v.w;
  }
}

// Output rows (ty + (r / 4) * MT) * 4 + r % 4 and columns (tx + c * NT) * 4 + 0..3 of the tile: strided vec4
// groups keep the shared-memory reads of neighbouring threads contiguous.
fn emit(r: u32, c: u32, v: vec4<f32>) {
  let row = m0 + (ty + (r / 4u) * MT) * 4u + r % 4u;
  let col = n0 + (tx + c * NT) * 4u;
  if (row >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let n = col + j;
    if (n >= p.N) { return; }
    var o = v[j];
    if ((p.flags & 1u) != 0u) { o += f32(bias[n]); }
    let e = row * p.N + n;
    if ((p.flags & 2u) != 0u) { o += f32(res[e]); }
    if ((p.flags & 4u) != 0u) { o += f32(y[e]); }
    y[e] = T(o);
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = wid.x + wid.y * p.gx;
  if (tile >= p.tiles) { return; }
  if (p.mfast != 0u) {
    m0 = (tile % p.tilesM) * BM;
    n0 = (tile / p.tilesM) * BN;
  } else {
    n0 = (tile % p.tilesN) * BN;
    m0 = (tile / p.tilesN) * BM;
  }
  tx = lid % NT;
  ty = lid / NT;

  // c0..3: rows 0-3 x column group 0; c4..7: rows 4-7 (TM = 8); c8..15: the same for column group 1 (TN = 8).
  var c0 = vec4<f32>(0.0);
  var c1 = vec4<f32>(0.0);
  var c2 = vec4<f32>(0.0);
  var c3 = vec4<f32>(0.0);
  var c4 = vec4<f32>(0.0);
  var c5 = vec4<f32>(0.0);
  var c6 = vec4<f32>(0.0);
  var c7 = vec4<f32>(0.0);
  var c8 = vec4<f32>(0.0);
  var c9 = vec4<f32>(0.0);
  var c10 = vec4<f32>(0.0);
  var c11 = vec4<f32>(0.0);
  var c12 = vec4<f32>(0.0);
  var c13 = vec4<f32>(0.0);
  var c14 = vec4<f32>(0.0);
  var c15 = vec4<f32>(0.0);
  let nk = (p.K + BK - 1u) / BK;
  load_tile(lid, 0u, 0u);
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
    let cur = t % 2u;
    if (t + 1u < nk) { load_tile(lid, 1u - cur, (t + 1u) * BK); }
    let ab = cur * A_LEN + ty;
    let bb = cur * B_LEN + tx;
    for (var k = 0u; k < BK; k++) {
      let a0 = As[ab + k * (BM / 4u)];
      let b0 = Bs[bb + k * (BN / 4u)];
      c0 = fma(vec4<f32>(a0.x), b0, c0);
      c1 = fma(vec4<f32>(a0.y), b0, c1);
      c2 = fma(vec4<f32>(a0.z), b0, c2);
      c3 = fma(vec4<f32>(a0.w), b0, c3);
      if (TM > 4u) {
        let a1 = As[ab + k * (BM / 4u) + MT];
        c4 = fma(vec4<f32>(a1.x), b0, c4);
        c5 = fma(vec4<f32>(a1.y), b0, c5);
        c6 = fma(vec4<f32>(a1.z), b0, c6);
        c7 = fma(vec4<f32>(a1.w), b0, c7);
        if (TN > 4u) {
          let b1 = Bs[bb + k * (BN / 4u) + NT];
          c12 = fma(vec4<f32>(a1.x), b1, c12);
          c13 = fma(vec4<f32>(a1.y), b1, c13);
          c14 = fma(vec4<f32>(a1.z), b1, c14);
          c15 = fma(vec4<f32>(a1.w), b1, c15);
        }
      }
      if (TN > 4u) {
        let b1 = Bs[bb + k * (BN / 4u) + NT];
        c8 = fma(vec4<f32>(a0.x), b1, c8);
        c9 = fma(vec4<f32>(a0.y), b1, c9);
        c10 = fma(vec4<f32>(a0.z), b1, c10);
        c11 = fma(vec4<f32>(a0.w), b1, c11);
      }
    }
    workgroupBarrier();
  }

  emit(0u, 0u, c0);
  emit(1u, 0u, c1);
  emit(2u, 0u, c2);
  emit(3u, 0u, c3);
  if (TM > 4u) {
    emit(4u, 0u, c4);
    emit(5u, 0u, c5);
    emit(6u, 0u, c6);
    emit(7u, 0u, c7);
  }
  if (TN > 4u) {
    emit(0u, 1u, c8);
    emit(1u, 1u, c9);
    emit(2u, 1u, c10);
    emit(3u, 1u, c11);
    if (TM > 4u) {
      emit(4u, 1u, c12);
      emit(5u, 1u, c13);
      emit(6u, 1u, c14);
      emit(7u, 1u, c15);
    }
  }
}
