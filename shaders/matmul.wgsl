// GEMM operands for linear layers: y[M, N] = x[M, K] @ w[N, K]^T (+ bias[N]) (+ res[M, N]), f32 accumulation
// (F16MATH: per K-tile in f16),
// on the shared core in shaders/gemm.wgsl (appended by pipeline/ops/matmul.ts).
// Consts: BM, BN, BK, TM, TN, VEC / WVEC (x / w rows start 4-aligned: vec4 loads along K), XCF (x is channels-first [B, K, S]: row
// b*S + s is x[b, :, s]; SV: S % 4 == 0, vec4 loads along rows), YCF (y and res are channels-first [B, N, S]),
// GEGLU (diffusers' GEGLU fused: GEMM column 2j is hidden unit j (weight row j), column 2j+1 its gate (weight row
// N/2 + j), so one thread holds both and writes y[row, j] = hidden * gelu(gate); y has N/2 columns), LN (x's rows
// go through LayerNorm(gamma, beta, p.eps) as they are loaded: each workgroup first computes the statistics of its
// BM rows (exact two-pass with the mean's correction, like shaders/layernorm.wgsl), WG / BM threads per row, summed
// by ln_reduce() from matmul_ln_sum.wgsl (workgroup memory) or matmul_ln_sum_sg.wgsl (subgroups)).
// p.flags: 1 = add bias, 2 = add res, 4 = add y's old value (in-place residual; absent ones get placeholders),
// 16 = SiLU of the sum (diffusers' act(linear(x))).
// wOff, bOff: element offsets of w and bias in their bindings (views into stacked weights). kSplit = K: no split-K.
struct Params {
  M: u32, N: u32, K: u32, tilesM: u32, tilesN: u32, tiles: u32, gx: u32, mfast: u32, flags: u32, S: u32,
  wOff: u32, bOff: u32, eps: f32, kSplit: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T4>;
@group(0) @binding(2) var<storage, read> w: array<T4>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> res: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;

@group(0) @binding(6) var<storage, read> gamma: array<T>;
@group(0) @binding(7) var<storage, read> beta: array<T>;

// erf_f32 comes from shaders/erf.wgsl (GEGLU).
alias ERF_T = f32;

const LNP = max(WG / BM, 1u); // LN: threads per row
var<workgroup> ln_m: array<vec3<f32>, select(1u, BM, LN)>; // (first-pass mean, correction, rstd) per row

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

// Weight row of GEMM column n (GEGLU interleaves hidden and gate rows).
fn w_row(n: u32) -> u32 {
  if (GEGLU) { return select(n / 2u, p.N / 2u + n / 2u, (n & 1u) == 1u); }
  return n;
}

fn load_w(r: u32, k: u32) -> vec4<f32> {
  if (r >= p.N) { return vec4<f32>(0.0); }
  let e = p.wOff + w_row(r) * p.K + k;
  if (WVEC) {
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

// Channels-first x: element (row, k) of the [M, K] operand.
fn x_cf(row: u32, k: u32) -> f32 {
  if (row >= p.M || k >= p.K) { return 0.0; }
  let b = row / p.S;
  let e = (b * p.K + k) * p.S + row - b * p.S;
  return f32(x[e >> 2u][e & 3u]);
}

// Channels-first x: four consecutive rows at column k, already k-major (one vec4 load when S % 4 == 0).
fn load_x_cf(row: u32, k: u32) -> vec4<f32> {
  if (SV) {
    if (row >= p.M || k >= p.K) { return vec4<f32>(0.0); }
    let b = row / p.S;
    return vec4<f32>(x[((b * p.K + k) * p.S + row - b * p.S) >> 2u]);
  }
  return vec4<f32>(x_cf(row, k), x_cf(row + 1u, k), x_cf(row + 2u, k), x_cf(row + 3u, k));
}

// Staging (shaders/gemm.wgsl): A slot idx is x's (row idx / KV, K run idx % KV), or with XCF its (k idx / (BM / 4),
// 4-row run idx % (BM / 4)), already k-major; B slot idx is w's (row idx / KV, K run idx % KV).
fn fetch_a(s: u32, lid: u32, k0: u32) -> vec4<S> {
  let idx = lid + s * WG;
  if (idx >= A_LEN) { return vec4<S>(0.0); }
  if (XCF) { return vec4<S>(load_x_cf(m0 + (idx % (BM / 4u)) * 4u, k0 + idx / (BM / 4u))); }
  let m = idx / KV;
  let k = k0 + (idx % KV) * 4u;
  var v = load_x(m0 + m, k);
  if (LN) { v = ln_apply(m, k, v); }
  return vec4<S>(v);
}

fn put_a(s: u32, lid: u32, buf: u32, v: vec4<S>) {
  let idx = lid + s * WG;
  if (idx >= A_LEN) { return; }
  if (XCF) {
    As[buf * A_LEN + idx] = v;
  } else {
    put_rows_a(buf, idx, v);
  }
}

fn fetch_b(s: u32, lid: u32, k0: u32) -> vec4<S> {
  let idx = lid + s * WG;
  if (idx >= B_LEN) { return vec4<S>(0.0); }
  return vec4<S>(load_w(n0 + idx / KV, k0 + (idx % KV) * 4u));
}

fn put_b(s: u32, lid: u32, buf: u32, v: vec4<S>) {
  let idx = lid + s * WG;
  if (idx < B_LEN) { put_rows_b(buf, idx, v); }
}

// Output rows (ty + (r / 4) * MT) * 4 + r % 4 and columns (tx + c * NT) * 4 + 0..3 of the tile: strided vec4
// groups keep the shared-memory reads of neighbouring threads contiguous.
fn emit(r: u32, c: u32, v: vec4<f32>) {
  let row = m0 + (ty + (r / 4u) * MT) * 4u + r % 4u;
  let col = n0 + (tx + c * NT) * 4u;
  if (row >= p.M) { return; }
  if (GEGLU) {
    for (var j = 0u; j < 4u; j += 2u) {
      let n = col + j;
      if (n >= p.N) { return; }
      var h = v[j];
      var g = v[j + 1u];
      if ((p.flags & 1u) != 0u) {
        h += f32(bias[p.bOff + w_row(n)]);
        g += f32(bias[p.bOff + w_row(n + 1u)]);
      }
      y[row * (p.N / 2u) + n / 2u] = T(h * (0.5 * g * (1.0 + erf_f32(g * 0.7071067811865476))));
    }
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let n = col + j;
    if (n >= p.N) { return; }
    var o = v[j];
    if ((p.flags & 1u) != 0u) { o += f32(bias[p.bOff + n]); }
    var e = row * p.N + n;
    if (YCF) {
      let b = row / p.S;
      e = (b * p.N + n) * p.S + row - b * p.S;
    }
    if ((p.flags & 2u) != 0u) { o += f32(res[e]); }
    if ((p.flags & 4u) != 0u) { o += f32(y[e]); }
    if ((p.flags & 16u) != 0u) { o = o / (1.0 + exp(-o)); }
    y[e] = T(o);
  }
}

// LN: sum over this thread's share of row r's elements (every LNP-th from u) of (x - c), or of (x - c) and its
// square.
fn ln_sum(r: u32, u: u32, c: f32) -> vec2<f32> {
  var s = vec2<f32>(0.0);
  let row = m0 + r;
  if (row >= p.M) { return s; }
  for (var k = u; k < p.K; k += LNP) {
    let e = row * p.K + k;
    let d = f32(x[e >> 2u][e & 3u]) - c;
    s += vec2<f32>(d, d * d);
  }
  return s;
}

// LN statistics of the tile's rows (before the K loop; one row per LNP threads, WG >= BM).
fn prepare(lid: u32) {
  if (!LN) { return; }
  let r = lid / LNP;
  let u = lid % LNP;
  let n = f32(p.K);
  let mean = ln_reduce(lid, ln_sum(r, u, 0.0)).x / n;
  let s = ln_reduce(lid, ln_sum(r, u, mean)) / n;
  if (u == 0u && r < BM) {
    ln_m[r] = vec3<f32>(mean, s.x, inverseSqrt(max(s.y - s.x * s.x, 0.0) + p.eps));
  }
  workgroupBarrier();
}

// LayerNorm of x[m0 + m, k..k+3] (zero past K: the padding must not contribute).
fn ln_apply(m: u32, k: u32, v: vec4<f32>) -> vec4<f32> {
  let st = ln_m[m];
  var o = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < p.K) { o[i] = ((v[i] - st.x) - st.y) * st.z * f32(gamma[k + i]) + f32(beta[k + i]); }
  }
  return o;
}
