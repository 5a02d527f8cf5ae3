// The 16 GEMMs of a Winograd F(2x2, 3x3) convolution in one dispatch (pipeline/ops/winograd.ts), on the shared core
// in shaders/gemm.wgsl (appended): for xi = wid.z, m[ks][xi][co][q] = sum over ci in slice ks of u[xi][co][ci] *
// v[xi][ci][q], with M = Cout, N = P (the tiles, rounded up to 4), K = Cin. u (T, shaders/winograd_weights.wgsl) is
// row-major like a weight; v (V, the core's multiply type S, from shaders/winograd_input.wgsl) is already k-major,
// so both stage as vec4s like a 1x1 convolution's operands, and m is written in f32 as vec4s along q for
// shaders/winograd_output.wgsl.
// Consts: BM, BN, BK, TM, TN (the core's), VEC (Cin % 4 == 0: vec4 loads of u), type V (v's).
struct Params {
  Cout: u32, K: u32, P: u32, tilesM: u32, tilesN: u32, tiles: u32, gx: u32, mfast: u32, kSplit: u32, partStride: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> u: array<T4>;
@group(0) @binding(2) var<storage, read> v: array<vec4<V>>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;

fn load_u(r: u32, k: u32) -> vec4<f32> {
  if (r >= p.Cout) { return vec4<f32>(0.0); }
  let e = (bz * p.Cout + r) * p.K + k;
  if (VEC) {
    if (k < p.K) { return vec4<f32>(u[e >> 2u]); }
    return vec4<f32>(0.0);
  }
  var a = vec4<f32>(0.0);
  if (k < p.K) { a.x = f32(u[e >> 2u][e & 3u]); }
  if (k + 1u < p.K) { a.y = f32(u[(e + 1u) >> 2u][(e + 1u) & 3u]); }
  if (k + 2u < p.K) { a.z = f32(u[(e + 2u) >> 2u][(e + 2u) & 3u]); }
  if (k + 3u < p.K) { a.w = f32(u[(e + 3u) >> 2u][(e + 3u) & 3u]); }
  return a;
}

// Staging (shaders/gemm.wgsl): A slot idx is u's (row idx / KV, K run idx % KV); B slot idx is v's (channel
// idx / (BN / 4), 4-column run idx % (BN / 4)), stored as is.
fn fetch_a(s: u32, lid: u32, k0: u32) -> vec4<S> {
  let idx = lid + s * WG;
  if (idx >= A_LEN) { return vec4<S>(0.0); }
  return vec4<S>(load_u(m0 + idx / KV, k0 + (idx % KV) * 4u));
}

fn put_a(s: u32, lid: u32, buf: u32, a: vec4<S>) {
  let idx = lid + s * WG;
  if (idx < A_LEN) { put_rows_a(buf, idx, a); }
}

fn fetch_b(s: u32, lid: u32, k0: u32) -> vec4<S> {
  let idx = lid + s * WG;
  if (idx >= B_LEN) { return vec4<S>(0.0); }
  let k = k0 + idx / (BN / 4u);
  let q = n0 + (idx % (BN / 4u)) * 4u;
  if (k >= p.K || q >= p.P) { return vec4<S>(0.0); }
  return vec4<S>(v[((bz * p.K + k) * p.P + q) >> 2u]);
}

fn put_b(s: u32, lid: u32, buf: u32, b: vec4<S>) {
  let idx = lid + s * WG;
  if (idx < B_LEN) { Bs[buf * B_LEN + idx] = b; }
}

// Output channel (ty + (r / 4) * MT) * 4 + r % 4, columns (tx + c * NT) * 4 + 0..3 (P % 4 == 0: all or none).
fn emit(r: u32, c: u32, o: vec4<f32>) {
  let co = m0 + (ty + (r / 4u) * MT) * 4u + r % 4u;
  let q = n0 + (tx + c * NT) * 4u;
  if (co >= p.Cout || q >= p.P) { return; }
  m[(ks * p.partStride + (bz * p.Cout + co) * p.P + q) >> 2u] = o;
}

fn prepare(lid: u32) {}
