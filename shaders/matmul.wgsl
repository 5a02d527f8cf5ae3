// GEMM operands for linear layers: y[M, N] = x[M, K] @ w[N, K]^T (+ bias[N]) (+ res[M, N]), f32 accumulation,
// on the shared core in shaders/gemm.wgsl (appended by pipeline/ops/matmul.ts).
// Consts: BM, BN, BK, TM, TN, VEC (K % 4 == 0: vec4 loads along K).
// p.flags: 1 = add bias, 2 = add res, 4 = add y's old value (in-place residual; absent ones get placeholders).
struct Params { M: u32, N: u32, K: u32, tilesM: u32, tilesN: u32, tiles: u32, gx: u32, mfast: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T4>;
@group(0) @binding(2) var<storage, read> w: array<T4>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> res: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;

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

fn prepare(lid: u32) {}
