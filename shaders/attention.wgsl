// Memory-efficient multi-head attention (flash-attention style online softmax; the Nq x Nk scores never exist).
// Each query row is owned by TPR threads: each holds a 1/TPR slice of the row's q and output accumulator in registers
// (vec4 columns u, u+TPR, ...) and the row's running max and sum (f32). Tiles of BK keys of K and V stream through
// workgroup memory, where every row reads the same key (broadcast loads). With TPR > 1 the partial q.k dots are
// summed by row_sums() from attention_rows.wgsl (workgroup memory) or attention_rows_sg.wgsl (subgroups). Head dims
// past 160 use attention_tiled.wgsl (the registers would not hold a row).
// Constants from pipeline/ops/attention.ts: D (head dim), DV (vec4 columns per thread), TPR, WG, BK.
// Grid: x = query block, y = head, z = query batch.
// q/k/v rows may be strided (qs, ks, vs) and start at a column offset (qo, ko, vo): Q, K and V of one packed
// projection [B, N, 3C] are read in place. o is [B, Nq, c].
struct Params { nq: u32, nk: u32, c: u32, div: u32, causal: u32, cl2: f32, qs: u32, ks: u32, vs: u32, qo: u32, ko: u32, vo: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

const BQ = WG / TPR; // query rows per workgroup
const DVT = DV * TPR; // vec4 columns of a key row
const NEG = -1e30; // masked score; finite so that exp2(NEG - m) is 0 and never NaN

var<workgroup> kt: array<vec4f, BK * DVT>;
var<workgroup> vt: array<vec4f, BK * DVT>;

// Four head elements of row `row` starting at column `col`, zero past D.
fn ld_q(row: u32, col: u32) -> vec4f {
  var x = vec4f(0.0);
  if (D % 4u == 0u) {
    if (col < D) { x = vec4f(f32(q[row + col]), f32(q[row + col + 1u]), f32(q[row + col + 2u]), f32(q[row + col + 3u])); }
  } else {
    if (col < D) { x.x = f32(q[row + col]); }
    if (col + 1u < D) { x.y = f32(q[row + col + 1u]); }
    if (col + 2u < D) { x.z = f32(q[row + col + 2u]); }
    if (col + 3u < D) { x.w = f32(q[row + col + 3u]); }
  }
  return x;
}

fn ld_k(row: u32, col: u32) -> vec4f {
  var x = vec4f(0.0);
  if (D % 4u == 0u) {
    if (col < D) { x = vec4f(f32(k[row + col]), f32(k[row + col + 1u]), f32(k[row + col + 2u]), f32(k[row + col + 3u])); }
  } else {
    if (col < D) { x.x = f32(k[row + col]); }
    if (col + 1u < D) { x.y = f32(k[row + col + 1u]); }
    if (col + 2u < D) { x.z = f32(k[row + col + 2u]); }
    if (col + 3u < D) { x.w = f32(k[row + col + 3u]); }
  }
  return x;
}

fn ld_v(row: u32, col: u32) -> vec4f {
  var x = vec4f(0.0);
  if (D % 4u == 0u) {
    if (col < D) { x = vec4f(f32(v[row + col]), f32(v[row + col + 1u]), f32(v[row + col + 2u]), f32(v[row + col + 3u])); }
  } else {
    if (col < D) { x.x = f32(v[row + col]); }
    if (col + 1u < D) { x.y = f32(v[row + col + 1u]); }
    if (col + 2u < D) { x.z = f32(v[row + col + 2u]); }
    if (col + 3u < D) { x.w = f32(v[row + col + 3u]); }
  }
  return x;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let q0 = wid.x * BQ;
  let h = wid.y;
  let b = wid.z;
  let r = t / TPR;
  let u = t % TPR;
  let qi = q0 + r;
  let kbase = (b / p.div) * p.nk * p.ks + p.ko + h * D;
  let vbase = (b / p.div) * p.nk * p.vs + p.vo + h * D;
  // Causal: keys past the block's last query are masked for every row, so skip their tiles.
  let kend = select(p.nk, min(p.nk, q0 + BQ), p.causal != 0u);

  // q pre-scaled by scale*log2(e): scores come out in log2 units for exp2.
  var qv: array<vec4f, DV>;
  let qrow = (b * p.nq + qi) * p.qs + p.qo + h * D;
  for (var g = 0u; g < DV; g++) {
    qv[g] = vec4f(0.0);
    if (qi < p.nq) { qv[g] = ld_q(qrow, (u + g * TPR) * 4u) * p.cl2; }
  }
  var acc: array<vec4f, DV>;
  for (var g = 0u; g < DV; g++) { acc[g] = vec4f(0.0); }
  var m = NEG;
  var l = 0.0;

  for (var k0 = 0u; k0 < kend; k0 += BK) {
    // Zeros past Nk keep P * V finite (P is 0 there).
    for (var e = t; e < BK * DVT; e += WG) {
      let j = e / DVT;
      let col = (e % DVT) * 4u;
      var kx = vec4f(0.0);
      var vx = vec4f(0.0);
      if (k0 + j < p.nk) {
        kx = ld_k(kbase + (k0 + j) * p.ks, col);
        vx = ld_v(vbase + (k0 + j) * p.vs, col);
      }
      kt[e] = kx;
      vt[e] = vx;
    }
    workgroupBarrier();

    var s: array<f32, BK>;
    for (var j = 0u; j < BK; j++) {
      var d = 0.0;
      for (var g = 0u; g < DV; g++) { d += dot(qv[g], kt[j * DVT + u + g * TPR]); }
      s[j] = d;
    }
    if (TPR > 1u) { row_sums(&s, t, r); }
    var mx = m;
    for (var j = 0u; j < BK; j++) {
      let key = k0 + j;
      if (key >= p.nk || (p.causal != 0u && key > qi)) { s[j] = NEG; }
      mx = max(mx, s[j]);
    }
    let a = exp2(m - mx);
    m = mx;
    l *= a;
    for (var g = 0u; g < DV; g++) { acc[g] *= a; }

    for (var j = 0u; j < BK; j++) {
      let pj = exp2(s[j] - m);
      l += pj;
      for (var g = 0u; g < DV; g++) {
        acc[g] = fma(vec4f(pj), vt[j * DVT + u + g * TPR], acc[g]);
      }
    }
    workgroupBarrier();
  }

  if (qi >= p.nq) { return; }
  let inv = 1.0 / l;
  for (var g = 0u; g < DV; g++) {
    let col = (u + g * TPR) * 4u;
    if (col >= D) { continue; }
    let y = acc[g] * inv;
    let at = (b * p.nq + qi) * p.c + h * D + col;
    o[at] = T(y.x);
    if (D % 4u == 0u || col + 1u < D) { o[at + 1u] = T(y.y); }
    if (D % 4u == 0u || col + 2u < D) { o[at + 2u] = T(y.z); }
    if (D % 4u == 0u || col + 3u < D) { o[at + 3u] = T(y.w); }
  }
}
