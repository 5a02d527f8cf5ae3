// Multi-head attention for small head dims as two register-blocked products per key tile (flash-attention style
// online softmax; the Nq x Nk scores never exist). attention.wgsl gives each thread one query row, so every vec4 it
// reads from workgroup memory feeds 4 FMAs; here a thread owns a 4 x 4 block of each product, so a vec4 read feeds 16
// (a GEMM's register blocking), and its registers stay few (16 scores, 16 outputs).
// One workgroup: BQ queries of one (batch, head), WG = BQ / 4 * NCT threads, key tiles of BK = 4 * NCT keys, where
// NCT = DC / CPT threads share the DC vec4 columns of the head dim (padded to CPT), CPT each; so the same thread grid
// fits both products:
//   1. S = Q K^T: thread (tq, tk) scores queries 4tq..+3 against keys 4tk..+3 over the head dim (s0..s3: one query
//      each, its 4 keys), from Q (resident, d-major) and the K tile (d-major);
//   2. online softmax: each row's max over the tile from the NCT threads' partial maxima (a thread per row merges),
//      P = exp2(S - max) into workgroup memory (key-major), the row sums likewise;
//   3. O = O * rescale + P V: thread (tq, tk) owns queries 4tq..+3 x vec4 columns tk (o0..o3) and, with CPT = 2,
//      tk + NCT (o4..o7), from P and the V tile (key-major; it reuses K's buffer).
// CPT = 2 halves the K/V tile (larger head dims fit: D = 80) and doubles the FMAs per P read.
// All f32 in workgroup memory and registers, whatever T.
// Constants from pipeline/ops/attention.ts: D (head dim), D4 = ceil(D / 4), BQ (multiple of 4), CPT (1 or 2).
// Grid: x = query block, y = head, z = query batch.
// Parameters, row addressing, score mask: shaders/attention_io.wgsl; bindings, loads and the output store:
// shaders/attention_load.wgsl or attention_load_vec4.wgsl.
const QG = BQ / 4u; // query groups of 4
const NCT = (D4 + CPT - 1u) / CPT; // threads along the head dim's vec4 columns (phase 3) and along keys (phase 1)
const DC = NCT * CPT; // vec4 columns of a V row in workgroup memory (zeros past D)
const WG = QG * NCT;
const BK = 4u * NCT; // keys per tile
const KG = NCT; // key groups of 4

var<workgroup> qs: array<vec4f, 4u * D4 * QG>; // [d][query group]: 4 queries' element d, pre-scaled
var<workgroup> kv: array<vec4f, 4u * DC * KG>; // K: [d][key group]; V: [key][vec4 column]
var<workgroup> ps: array<vec4f, BK * QG>; // P: [key][query group]
var<workgroup> part: array<f32, KG * BQ>; // per (key group, row): partial max, later partial sum
var<workgroup> rmax: array<f32, BQ>;
var<workgroup> rsum: array<f32, BQ>;
var<workgroup> rscale: array<f32, BQ>;

// This thread's four rows' partial maxima or sums (one per row, from its key group) at pr = key group * BQ + row.
fn put_part(pr: u32, x: vec4f) {
  part[pr] = x.x;
  part[pr + 1u] = x.y;
  part[pr + 2u] = x.z;
  part[pr + 3u] = x.w;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let row0 = wid.x * BQ;
  let h = wid.y;
  let b = wid.z;
  let tq = t / NCT;
  let tk = t % NCT; // phase 1: key group; phase 3: first vec4 column
  let qr = 4u * tq; // this thread's first query in the block
  let qi = row0 + qr;
  let kbase = k_base(b, h);
  let vbase = v_base(b, h);
  let kend = key_end(row0, BQ);

  // Q tile, transposed to [d][query group] (zeros past Nq and D).
  for (var e = t; e < BQ * D4; e += WG) {
    let r = e / D4;
    let c = e % D4;
    var x = vec4f(0.0);
    if (row0 + r < p.nq) { x = ld_q(q_row(b, row0 + r, h), 4u * c) * p.cl2; }
    let a = 4u * c * QG + r / 4u;
    qs[a][r % 4u] = x.x;
    qs[a + QG][r % 4u] = x.y;
    qs[a + 2u * QG][r % 4u] = x.z;
    qs[a + 3u * QG][r % 4u] = x.w;
  }
  for (var r = t; r < BQ; r += WG) {
    rmax[r] = NEG;
    rsum[r] = 0.0;
  }
  var o0 = vec4f(0.0);
  var o1 = vec4f(0.0);
  var o2 = vec4f(0.0);
  var o3 = vec4f(0.0);
  var o4 = vec4f(0.0);
  var o5 = vec4f(0.0);
  var o6 = vec4f(0.0);
  var o7 = vec4f(0.0);

  for (var k0 = 0u; k0 < kend; k0 += BK) {
    // K tile, transposed to [d][key group] (zeros past Nk).
    for (var e = t; e < BK * D4; e += WG) {
      let j = e / D4;
      let c = e % D4;
      var x = vec4f(0.0);
      if (k0 + j < p.nk) { x = ld_k(kbase + (k0 + j) * p.ks, 4u * c); }
      let a = 4u * c * KG + j / 4u;
      kv[a][j % 4u] = x.x;
      kv[a + KG][j % 4u] = x.y;
      kv[a + 2u * KG][j % 4u] = x.z;
      kv[a + 3u * KG][j % 4u] = x.w;
    }
    workgroupBarrier();

    // 1. Scores: s_i = queries qi + i against keys k0 + 4tk .. +3.
    var s0 = vec4f(0.0);
    var s1 = vec4f(0.0);
    var s2 = vec4f(0.0);
    var s3 = vec4f(0.0);
    for (var d = 0u; d < D; d++) {
      let a = qs[d * QG + tq];
      let kk = kv[d * KG + tk];
      s0 = fma(vec4f(a.x), kk, s0);
      s1 = fma(vec4f(a.y), kk, s1);
      s2 = fma(vec4f(a.z), kk, s2);
      s3 = fma(vec4f(a.w), kk, s3);
    }
    let key = k0 + 4u * tk;
    s0 = mask(s0, key, qi);
    s1 = mask(s1, key, qi + 1u);
    s2 = mask(s2, key, qi + 2u);
    s3 = mask(s3, key, qi + 3u);
    let pr = tk * BQ + qr;
    put_part(pr, vec4f(max4(s0), max4(s1), max4(s2), max4(s3)));
    workgroupBarrier();

    // 2. Each row's new max and rescale factor (a thread per row); K is consumed, so V's tile goes in meanwhile.
    for (var r = t; r < BQ; r += WG) {
      let mold = rmax[r];
      var m = mold;
      for (var g = 0u; g < KG; g++) { m = max(m, part[g * BQ + r]); }
      rscale[r] = exp2(mold - m);
      rmax[r] = m;
    }
    for (var e = t; e < BK * DC; e += WG) {
      let j = e / DC;
      var x = vec4f(0.0);
      if (k0 + j < p.nk) { x = ld_v(vbase + (k0 + j) * p.vs, 4u * (e % DC)); }
      kv[e] = x;
    }
    workgroupBarrier();
    let w0 = exp2(s0 - vec4f(rmax[qr]));
    let w1 = exp2(s1 - vec4f(rmax[qr + 1u]));
    let w2 = exp2(s2 - vec4f(rmax[qr + 2u]));
    let w3 = exp2(s3 - vec4f(rmax[qr + 3u]));
    let pa = 4u * tk * QG + tq;
    ps[pa] = vec4f(w0.x, w1.x, w2.x, w3.x);
    ps[pa + QG] = vec4f(w0.y, w1.y, w2.y, w3.y);
    ps[pa + 2u * QG] = vec4f(w0.z, w1.z, w2.z, w3.z);
    ps[pa + 3u * QG] = vec4f(w0.w, w1.w, w2.w, w3.w);
    put_part(pr, vec4f(sum4(w0), sum4(w1), sum4(w2), sum4(w3)));
    workgroupBarrier();
    for (var r = t; r < BQ; r += WG) {
      var l = 0.0;
      for (var g = 0u; g < KG; g++) { l += part[g * BQ + r]; }
      rsum[r] = rsum[r] * rscale[r] + l;
    }

    // 3. O = O * rescale + P V for queries qi..+3, vec4 columns tk (and tk + NCT).
    let a = vec4f(rscale[qr], rscale[qr + 1u], rscale[qr + 2u], rscale[qr + 3u]);
    o0 *= a.x;
    o1 *= a.y;
    o2 *= a.z;
    o3 *= a.w;
    if (CPT > 1u) {
      o4 *= a.x;
      o5 *= a.y;
      o6 *= a.z;
      o7 *= a.w;
    }
    for (var j = 0u; j < BK; j++) {
      let w = ps[j * QG + tq];
      let vv = kv[j * DC + tk];
      o0 = fma(vec4f(w.x), vv, o0);
      o1 = fma(vec4f(w.y), vv, o1);
      o2 = fma(vec4f(w.z), vv, o2);
      o3 = fma(vec4f(w.w), vv, o3);
      if (CPT > 1u) {
        let v1 = kv[j * DC + tk + NCT];
        o4 = fma(vec4f(w.x), v1, o4);
        o5 = fma(vec4f(w.y), v1, o5);
        o6 = fma(vec4f(w.z), v1, o6);
        o7 = fma(vec4f(w.w), v1, o7);
      }
    }
    workgroupBarrier();
  }

  let inv = 1.0 / vec4f(rsum[qr], rsum[qr + 1u], rsum[qr + 2u], rsum[qr + 3u]);
  let col = 4u * tk;
  let at = o_row(b, qi, h);
  if (qi < p.nq) { store(at, col, o0, inv.x); }
  if (qi + 1u < p.nq) { store(at + p.c, col, o1, inv.y); }
  if (qi + 2u < p.nq) { store(at + 2u * p.c, col, o2, inv.z); }
  if (qi + 3u < p.nq) { store(at + 3u * p.c, col, o3, inv.w); }
  if (CPT > 1u) {
    let col1 = col + 4u * NCT;
    if (qi < p.nq) { store(at, col1, o4, inv.x); }
    if (qi + 1u < p.nq) { store(at + p.c, col1, o5, inv.y); }
    if (qi + 2u < p.nq) { store(at + 2u * p.c, col1, o6, inv.z); }
    if (qi + 3u < p.nq) { store(at + 3u * p.c, col1, o7, inv.w); }
  }
}
