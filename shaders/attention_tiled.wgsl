// Memory-efficient multi-head attention for large head dims (the VAE's D = 512; attention.wgsl holds a query row in
// registers, which stops fitting past D = 160). Flash-attention style: one workgroup owns BQ queries of one (batch, head),
// streams BK-key tiles of K and V through workgroup memory and keeps the running max/sum per query in workgroup memory
// and its output rows in registers (f32), so the Nq x Nk score matrix never exists. Per key tile:
//   1. S = Q K^T (RS x CS scores per thread), accumulated over NCH chunks of the head dim;
//   2. online softmax per query row (one thread per row): new max, P = exp2(S - max), rescale factor, running sum;
//   3. O = O * rescale + P V (RO rows x CPC vec4 columns per chunk per thread).
// Constants from pipeline/ops/attention.ts: D (head dim), DV (vec4 columns per chunk), NCH (DV*NCH*4 >= D), BQ, BK,
// WG (threads), CS (phase-1 keys per thread), TCO (phase-3 threads along the head dim).
// Grid: x = query block, y = head, z = query batch.
// Parameters, row addressing and NEG (the masked score): shaders/attention_io.wgsl; bindings, loads and the output
// store: shaders/attention_load.wgsl or attention_load_vec4.wgsl.

const TCS = BK / CS; // phase-1 threads along keys
const TRS = WG / TCS; // phase-1 threads along queries
const RS = BQ / TRS; // phase-1 query rows per thread
const TRO = WG / TCO; // phase-3 threads along queries
const RO = BQ / TRO; // phase-3 query rows per thread
const CPC = DV / TCO; // phase-3 vec4 columns per thread per chunk
const KS = DV | 1u; // odd vec4 row stride: the 8 lanes of one 128-bit shared load phase hit distinct banks
const SS = BK + 1u; // padded score row stride: the row-per-thread softmax pass is conflict-free

var<workgroup> qs: array<vec4f, BQ * DV>;
var<workgroup> kvs: array<vec4f, BK * KS>;
var<workgroup> ss: array<f32, BQ * SS>;
var<workgroup> rmax: array<f32, BQ>;
var<workgroup> rsum: array<f32, BQ>;
var<workgroup> rscale: array<f32, BQ>;

// Q rows q0.. of chunk ch into qs (zeros past D and past Nq).
fn load_q(base: u32, q0: u32, ch: u32, t: u32) {
  for (var e = t; e < BQ * DV; e += WG) {
    let r = e / DV;
    var x = vec4f(0.0);
    if (q0 + r < p.nq) { x = ld_q(base + (q0 + r) * p.qs, (ch * DV + e % DV) * 4u); }
    qs[e] = x;
  }
}

// K (isv false) or V rows k0.. of chunk ch into kvs (zeros past D and past Nk: P * V must stay finite there).
fn load_kv(base: u32, k0: u32, ch: u32, t: u32, isv: bool) {
  for (var e = t; e < BK * DV; e += WG) {
    let r = e / DV;
    let g = e % DV;
    let col = (ch * DV + g) * 4u;
    var x = vec4f(0.0);
    if (k0 + r < p.nk) {
      if (isv) {
        x = ld_v(base + (k0 + r) * p.vs, col);
      } else {
        x = ld_k(base + (k0 + r) * p.ks, col);
      }
    }
    kvs[r * KS + g] = x;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let q0 = wid.x * BQ;
  let h = wid.y;
  let b = wid.z;
  let qbase = q_row(b, 0u, h);
  let kbase = k_base(b, h);
  let vbase = v_base(b, h);
  let kend = key_end(q0, BQ);

  let tcs = t % TCS;
  let trs = t / TCS;
  let tco = t % TCO;
  let tro = t / TCO;

  if (t < BQ) {
    rmax[t] = NEG;
    rsum[t] = 0.0;
  }
  var acc: array<vec4f, RO * CPC * NCH>;
  for (var i = 0u; i < RO * CPC * NCH; i++) { acc[i] = vec4f(0.0); }
  if (NCH == 1u) { load_q(qbase, q0, 0u, t); }

  for (var k0 = 0u; k0 < kend; k0 += BK) {
    // 1. Scores for this key tile.
    var s: array<f32, RS * CS>;
    for (var i = 0u; i < RS * CS; i++) { s[i] = 0.0; }
    for (var ch = 0u; ch < NCH; ch++) {
      if (NCH > 1u) { load_q(qbase, q0, ch, t); }
      load_kv(kbase, k0, ch, t, false);
      workgroupBarrier();
      for (var g = 0u; g < DV; g++) {
        var kr: array<vec4f, CS>;
        for (var j = 0u; j < CS; j++) { kr[j] = kvs[(tcs + j * TCS) * KS + g]; }
        for (var i = 0u; i < RS; i++) {
          let qv = qs[(trs + i * TRS) * DV + g];
          for (var j = 0u; j < CS; j++) { s[i * CS + j] += dot(qv, kr[j]); }
        }
      }
      workgroupBarrier();
    }
    for (var i = 0u; i < RS; i++) {
      let r = trs + i * TRS;
      for (var j = 0u; j < CS; j++) {
        let c = tcs + j * TCS;
        let key = k0 + c;
        let ok = key < p.nk && (p.causal == 0u || key <= q0 + r);
        ss[r * SS + c] = select(NEG, s[i * CS + j] * p.cl2, ok);
      }
    }
    // K is consumed: start streaming V's first chunk in the same barrier interval.
    load_kv(vbase, k0, 0u, t, true);
    workgroupBarrier();

    // 2. Online softmax, one thread per query row (scores are already in log2 units).
    if (t < BQ) {
      let row = t * SS;
      let mold = rmax[t];
      var m = mold;
      for (var j = 0u; j < BK; j++) { m = max(m, ss[row + j]); }
      var sum = 0.0;
      for (var j = 0u; j < BK; j++) {
        let e = exp2(ss[row + j] - m);
        ss[row + j] = e;
        sum += e;
      }
      let a = exp2(mold - m);
      rscale[t] = a;
      rmax[t] = m;
      rsum[t] = rsum[t] * a + sum;
    }
    workgroupBarrier();

    // 3. O = O * rescale + P V.
    for (var i = 0u; i < RO; i++) {
      let a = rscale[tro + i * TRO];
      for (var j = 0u; j < CPC * NCH; j++) { acc[i * CPC * NCH + j] *= a; }
    }
    for (var ch = 0u; ch < NCH; ch++) {
      if (ch > 0u) {
        load_kv(vbase, k0, ch, t, true);
        workgroupBarrier();
      }
      for (var kk = 0u; kk < BK; kk++) {
        var vr: array<vec4f, CPC>;
        for (var j = 0u; j < CPC; j++) { vr[j] = kvs[kk * KS + tco + j * TCO]; }
        for (var i = 0u; i < RO; i++) {
          let pv = ss[(tro + i * TRO) * SS + kk];
          for (var j = 0u; j < CPC; j++) {
            let a = i * CPC * NCH + ch * CPC + j;
            acc[a] = fma(vec4f(pv), vr[j], acc[a]);
          }
        }
      }
      workgroupBarrier();
    }
  }

  for (var i = 0u; i < RO; i++) {
    let r = tro + i * TRO;
    if (q0 + r >= p.nq) { continue; }
    let inv = 1.0 / rsum[r];
    let base = o_row(b, q0 + r, h);
    for (var ch = 0u; ch < NCH; ch++) {
      for (var j = 0u; j < CPC; j++) {
        store(base, (ch * DV + tco + j * TCO) * 4u, acc[i * CPC * NCH + ch * CPC + j], inv);
      }
    }
  }
}
