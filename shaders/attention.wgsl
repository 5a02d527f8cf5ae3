// Memory-efficient multi-head attention (flash-attention style online softmax; the Nq x Nk scores never exist).
// Each query row is owned by TPR threads: each holds a 1/TPR slice of the row's q and output accumulator in registers
// (vec4 columns u, u+TPR, ..., DV of them) and the row's running max and sum (f32). Tiles of BT keys of K and V stream
// through workgroup memory, where every row reads the same key (broadcast loads), and are scored BK keys at a time
// (BT > BK: fewer barriers and load phases per key, each load's latency spread over more math). With TPR > 1 the
// partial q.k dots are summed by row_sums() from attention_rows.wgsl (workgroup memory) or attention_rows_sg.wgsl
// (subgroups). Head dims past 160 use attention_tiled.wgsl (the registers would not hold a row).
// Two rows per thread (QPT = 2; DV <= 5, BK <= 8): a thread also owns row qi + WG / TPR, with its q slice in q5..q9,
// its accumulator in o5..o9 and its scores in s2/s3, so each vec4 of K or V read from workgroup memory feeds 8 FMAs
// instead of 4: on a GPU where those reads, not the FMAs, bound the kernel (the broadcast loads issue at a quarter of
// the FMA rate on NVIDIA), up to twice the rate for twice the registers.
// Unrolled by hand, like the GEMM core (shaders/gemm.wgsl): private arrays indexed in loops stay in memory on some
// drivers (llvmpipe) because wgpu's loop bounding can block unrolling. So the q slice (q0..q9), the accumulator
// (o0..o9) and the tile's scores (s0..s3: 4 keys each) are named registers, and the constant guards below fold away.
// Constants from pipeline/ops/attention.ts: D (head dim), DV (vec4 columns per thread and row, <= 10), TPR, WG, BK (4,
// 8 or 16 keys scored at once), BT (keys per workgroup-memory tile, a multiple of BK), QPT (rows per thread, 1 or 2).
// Grid: x = query block, y = head, z = query batch.
// Parameters, row addressing, score mask: shaders/attention_io.wgsl; bindings, loads and the output store:
// shaders/attention_load.wgsl or attention_load_vec4.wgsl.
const RPW = WG / TPR; // rows of the first (only, with QPT = 1) set per workgroup
const BQ = RPW * QPT; // query rows per workgroup
const DVT = DV * TPR; // vec4 columns of a key row
// Score registers in use: s0 always, s1 from 8 keys, s2 and s3 at 16 keys or as row B's (QPT = 2: s2, s3 from 8 keys).
const S1 = BK > 4u;
const S2 = BK > 8u || QPT == 2u;
const S3 = BK > 8u || (QPT == 2u && BK > 4u);
const NS = select(select(select(1u, 2u, S1), 3u, S2), 4u, S3); // s0..s(NS-1) span them

var<workgroup> kt: array<vec4f, BT * DVT>;
var<workgroup> vt: array<vec4f, BT * DVT>;

// This thread's slice of its query row (pre-scaled by scale*log2(e): scores come out in log2 units for exp2), of its
// output accumulator, and its scores of the current key tile (s0: keys 0-3, s1: 4-7, s2/s3: 8-15).
var<private> q0: vec4f;
var<private> q1: vec4f;
var<private> q2: vec4f;
var<private> q3: vec4f;
var<private> q4: vec4f;
var<private> q5: vec4f;
var<private> q6: vec4f;
var<private> q7: vec4f;
var<private> q8: vec4f;
var<private> q9: vec4f;
var<private> o0: vec4f;
var<private> o1: vec4f;
var<private> o2: vec4f;
var<private> o3: vec4f;
var<private> o4: vec4f;
var<private> o5: vec4f;
var<private> o6: vec4f;
var<private> o7: vec4f;
var<private> o8: vec4f;
var<private> o9: vec4f;
var<private> s0: vec4f;
var<private> s1: vec4f;
var<private> s2: vec4f;
var<private> s3: vec4f;
// The running max and sum (log2 units) of row A (the thread's first) and row B (QPT = 2).
var<private> mA: f32;
var<private> lA: f32;
var<private> mB: f32;
var<private> lB: f32;

// This thread's slice of query row `row` (absent rows: zeros).
fn load_q(row: u32, u: u32, valid: bool) {
  if (!valid) { return; }
  q0 = ld_q(row, u * 4u) * p.cl2;
  if (DV > 1u) { q1 = ld_q(row, (u + TPR) * 4u) * p.cl2; }
  if (DV > 2u) { q2 = ld_q(row, (u + 2u * TPR) * 4u) * p.cl2; }
  if (DV > 3u) { q3 = ld_q(row, (u + 3u * TPR) * 4u) * p.cl2; }
  if (DV > 4u) { q4 = ld_q(row, (u + 4u * TPR) * 4u) * p.cl2; }
  if (DV > 5u) { q5 = ld_q(row, (u + 5u * TPR) * 4u) * p.cl2; }
  if (DV > 6u) { q6 = ld_q(row, (u + 6u * TPR) * 4u) * p.cl2; }
  if (DV > 7u) { q7 = ld_q(row, (u + 7u * TPR) * 4u) * p.cl2; }
  if (DV > 8u) { q8 = ld_q(row, (u + 8u * TPR) * 4u) * p.cl2; }
  if (DV > 9u) { q9 = ld_q(row, (u + 9u * TPR) * 4u) * p.cl2; }
}

// The partial q.k dot of tile key j: a = j * DVT + u indexes this thread's first vec4 of the key's row.
fn qk(a: u32) -> f32 {
  var d = dot(q0, kt[a]);
  if (DV > 1u) { d += dot(q1, kt[a + TPR]); }
  if (DV > 2u) { d += dot(q2, kt[a + 2u * TPR]); }
  if (DV > 3u) { d += dot(q3, kt[a + 3u * TPR]); }
  if (DV > 4u) { d += dot(q4, kt[a + 4u * TPR]); }
  if (DV > 5u) { d += dot(q5, kt[a + 5u * TPR]); }
  if (DV > 6u) { d += dot(q6, kt[a + 6u * TPR]); }
  if (DV > 7u) { d += dot(q7, kt[a + 7u * TPR]); }
  if (DV > 8u) { d += dot(q8, kt[a + 8u * TPR]); }
  if (DV > 9u) { d += dot(q9, kt[a + 9u * TPR]); }
  return d;
}

// Partial dots of the four keys j0..j0+3.
fn qk4(j0: u32, u: u32) -> vec4f {
  let a = j0 * DVT + u;
  return vec4f(qk(a), qk(a + DVT), qk(a + 2u * DVT), qk(a + 3u * DVT));
}

// o += pj * (this thread's slice of tile key j's value row, starting at a).
fn pv(a: u32, pj: f32) {
  let w = vec4f(pj);
  o0 = fma(w, vt[a], o0);
  if (DV > 1u) { o1 = fma(w, vt[a + TPR], o1); }
  if (DV > 2u) { o2 = fma(w, vt[a + 2u * TPR], o2); }
  if (DV > 3u) { o3 = fma(w, vt[a + 3u * TPR], o3); }
  if (DV > 4u) { o4 = fma(w, vt[a + 4u * TPR], o4); }
  if (DV > 5u) { o5 = fma(w, vt[a + 5u * TPR], o5); }
  if (DV > 6u) { o6 = fma(w, vt[a + 6u * TPR], o6); }
  if (DV > 7u) { o7 = fma(w, vt[a + 7u * TPR], o7); }
  if (DV > 8u) { o8 = fma(w, vt[a + 8u * TPR], o8); }
  if (DV > 9u) { o9 = fma(w, vt[a + 9u * TPR], o9); }
}

// The four keys j0..j0+3 with probabilities w.
fn pv4(j0: u32, u: u32, w: vec4f) {
  let a = j0 * DVT + u;
  pv(a, w.x);
  pv(a + DVT, w.y);
  pv(a + 2u * DVT, w.z);
  pv(a + 3u * DVT, w.w);
}

fn rescale(a: f32) {
  o0 *= a;
  if (DV > 1u) { o1 *= a; }
  if (DV > 2u) { o2 *= a; }
  if (DV > 3u) { o3 *= a; }
  if (DV > 4u) { o4 *= a; }
  if (DV > 5u) { o5 *= a; }
  if (DV > 6u) { o6 *= a; }
  if (DV > 7u) { o7 *= a; }
  if (DV > 8u) { o8 *= a; }
  if (DV > 9u) { o9 *= a; }
}

// QPT = 2 ---------------------------------------------------------------------------------------------------------

// Row B's slice into q5..q9 (row A's: load_q, which stops at q4 since DV <= 5; absent rows: zeros).
fn load_q_b(row: u32, u: u32, valid: bool) {
  if (!valid) { return; }
  q5 = ld_q(row, u * 4u) * p.cl2;
  if (DV > 1u) { q6 = ld_q(row, (u + TPR) * 4u) * p.cl2; }
  if (DV > 2u) { q7 = ld_q(row, (u + 2u * TPR) * 4u) * p.cl2; }
  if (DV > 3u) { q8 = ld_q(row, (u + 3u * TPR) * 4u) * p.cl2; }
  if (DV > 4u) { q9 = ld_q(row, (u + 4u * TPR) * 4u) * p.cl2; }
}

// Both rows' partial dots with tile key slice a (x: row A, y: row B), each vec4 of K read once.
fn qk2(a: u32) -> vec2f {
  var k = kt[a];
  var d = vec2f(dot(q0, k), dot(q5, k));
  if (DV > 1u) {
    k = kt[a + TPR];
    d += vec2f(dot(q1, k), dot(q6, k));
  }
  if (DV > 2u) {
    k = kt[a + 2u * TPR];
    d += vec2f(dot(q2, k), dot(q7, k));
  }
  if (DV > 3u) {
    k = kt[a + 3u * TPR];
    d += vec2f(dot(q3, k), dot(q8, k));
  }
  if (DV > 4u) {
    k = kt[a + 4u * TPR];
    d += vec2f(dot(q4, k), dot(q9, k));
  }
  return d;
}

// Scores of keys j0..j0+3 into sa (row A) and sb (row B).
fn qk4x2(j0: u32, u: u32, sa: ptr<private, vec4f>, sb: ptr<private, vec4f>) {
  let a = j0 * DVT + u;
  let d0 = qk2(a);
  let d1 = qk2(a + DVT);
  let d2 = qk2(a + 2u * DVT);
  let d3 = qk2(a + 3u * DVT);
  *sa = vec4f(d0.x, d1.x, d2.x, d3.x);
  *sb = vec4f(d0.y, d1.y, d2.y, d3.y);
}

// oA += pa * v, oB += pb * v for tile key slice a, each vec4 of V read once.
fn pv2(a: u32, pa: f32, pb: f32) {
  let wa = vec4f(pa);
  let wb = vec4f(pb);
  var v = vt[a];
  o0 = fma(wa, v, o0);
  o5 = fma(wb, v, o5);
  if (DV > 1u) {
    v = vt[a + TPR];
    o1 = fma(wa, v, o1);
    o6 = fma(wb, v, o6);
  }
  if (DV > 2u) {
    v = vt[a + 2u * TPR];
    o2 = fma(wa, v, o2);
    o7 = fma(wb, v, o7);
  }
  if (DV > 3u) {
    v = vt[a + 3u * TPR];
    o3 = fma(wa, v, o3);
    o8 = fma(wb, v, o8);
  }
  if (DV > 4u) {
    v = vt[a + 4u * TPR];
    o4 = fma(wa, v, o4);
    o9 = fma(wb, v, o9);
  }
}

fn pv4x2(j0: u32, u: u32, wa: vec4f, wb: vec4f) {
  let a = j0 * DVT + u;
  pv2(a, wa.x, wb.x);
  pv2(a + DVT, wa.y, wb.y);
  pv2(a + 2u * DVT, wa.z, wb.z);
  pv2(a + 3u * DVT, wa.w, wb.w);
}

fn rescale2(aa: f32, ab: f32) {
  o0 *= aa;
  o5 *= ab;
  if (DV > 1u) {
    o1 *= aa;
    o6 *= ab;
  }
  if (DV > 2u) {
    o2 *= aa;
    o7 *= ab;
  }
  if (DV > 3u) {
    o3 *= aa;
    o8 *= ab;
  }
  if (DV > 4u) {
    o4 *= aa;
    o9 *= ab;
  }
}

// The online softmax of rows A and B over the BK tile keys from c (global index k0).
fn step2(c: u32, k0: u32, t: u32, r: u32, u: u32, qa: u32, qb: u32) {
  qk4x2(c, u, &s0, &s2);
  if (BK > 4u) { qk4x2(c + 4u, u, &s1, &s3); }
  if (TPR > 1u) { row_sums(t, r); }
  s0 = mask(s0, k0, qa);
  s2 = mask(s2, k0, qb);
  var xa = max(mA, max4(s0));
  var xb = max(mB, max4(s2));
  if (BK > 4u) {
    s1 = mask(s1, k0 + 4u, qa);
    s3 = mask(s3, k0 + 4u, qb);
    xa = max(xa, max4(s1));
    xb = max(xb, max4(s3));
  }
  let aa = exp2(mA - xa);
  let ab = exp2(mB - xb);
  mA = xa;
  mB = xb;
  lA *= aa;
  lB *= ab;
  rescale2(aa, ab);
  let wa0 = exp2(s0 - vec4f(mA));
  let wb0 = exp2(s2 - vec4f(mB));
  lA += sum4(wa0);
  lB += sum4(wb0);
  pv4x2(c, u, wa0, wb0);
  if (BK > 4u) {
    let wa1 = exp2(s1 - vec4f(mA));
    let wb1 = exp2(s3 - vec4f(mB));
    lA += sum4(wa1);
    lB += sum4(wb1);
    pv4x2(c + 4u, u, wa1, wb1);
  }
}

// Row B's output (row A's: store1, which stops at o4 since DV <= 5).
fn store_b(b: u32, h: u32, u: u32, qb: u32) {
  if (qb < p.nq) {
    let inv = 1.0 / lB;
    let at = o_row(b, qb, h);
    store(at, u * 4u, o5, inv);
    if (DV > 1u) { store(at, (u + TPR) * 4u, o6, inv); }
    if (DV > 2u) { store(at, (u + 2u * TPR) * 4u, o7, inv); }
    if (DV > 3u) { store(at, (u + 3u * TPR) * 4u, o8, inv); }
    if (DV > 4u) { store(at, (u + 4u * TPR) * 4u, o9, inv); }
  }
}

// QPT = 1 (and row A's output with QPT = 2) ---------------------------------------------------------------------

// The online softmax of the thread's row over the BK tile keys from c (global index k0).
fn step1(c: u32, k0: u32, t: u32, r: u32, u: u32, qi: u32) {
  s0 = qk4(c, u);
  if (BK > 4u) { s1 = qk4(c + 4u, u); }
  if (BK > 8u) {
    s2 = qk4(c + 8u, u);
    s3 = qk4(c + 12u, u);
  }
  if (TPR > 1u) { row_sums(t, r); }
  s0 = mask(s0, k0, qi);
  var mx = max(mA, max4(s0));
  if (BK > 4u) {
    s1 = mask(s1, k0 + 4u, qi);
    mx = max(mx, max4(s1));
  }
  if (BK > 8u) {
    s2 = mask(s2, k0 + 8u, qi);
    s3 = mask(s3, k0 + 12u, qi);
    mx = max(mx, max(max4(s2), max4(s3)));
  }
  let a = exp2(mA - mx);
  mA = mx;
  lA *= a;
  rescale(a);

  let w0 = exp2(s0 - vec4f(mA));
  lA += sum4(w0);
  pv4(c, u, w0);
  if (BK > 4u) {
    let w1 = exp2(s1 - vec4f(mA));
    lA += sum4(w1);
    pv4(c + 4u, u, w1);
  }
  if (BK > 8u) {
    let w2 = exp2(s2 - vec4f(mA));
    let w3 = exp2(s3 - vec4f(mA));
    lA += sum4(w2) + sum4(w3);
    pv4(c + 8u, u, w2);
    pv4(c + 12u, u, w3);
  }
}

// The thread's (first) row's output.
fn store1(b: u32, h: u32, u: u32, qi: u32) {
  if (qi >= p.nq) { return; }
  let inv = 1.0 / lA;
  let at = o_row(b, qi, h);
  store(at, u * 4u, o0, inv);
  if (DV > 1u) { store(at, (u + TPR) * 4u, o1, inv); }
  if (DV > 2u) { store(at, (u + 2u * TPR) * 4u, o2, inv); }
  if (DV > 3u) { store(at, (u + 3u * TPR) * 4u, o3, inv); }
  if (DV > 4u) { store(at, (u + 4u * TPR) * 4u, o4, inv); }
  if (DV > 5u) { store(at, (u + 5u * TPR) * 4u, o5, inv); }
  if (DV > 6u) { store(at, (u + 6u * TPR) * 4u, o6, inv); }
  if (DV > 7u) { store(at, (u + 7u * TPR) * 4u, o7, inv); }
  if (DV > 8u) { store(at, (u + 8u * TPR) * 4u, o8, inv); }
  if (DV > 9u) { store(at, (u + 9u * TPR) * 4u, o9, inv); }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let row0 = wid.x * BQ;
  let h = wid.y;
  let b = wid.z;
  let r = t / TPR;
  let u = t % TPR;
  let qa = row0 + r; // row A
  let qb = qa + RPW; // row B (QPT = 2)
  let kbase = k_base(b, h);
  let vbase = v_base(b, h);
  let kend = key_end(row0, BQ);

  load_q(q_row(b, qa, h), u, qa < p.nq);
  if (QPT == 2u) { load_q_b(q_row(b, qb, h), u, qb < p.nq); }
  mA = NEG;
  mB = NEG;

  for (var t0 = 0u; t0 < kend; t0 += BT) {
    // Zeros past Nk keep P * V finite (P is 0 there).
    for (var e = t; e < BT * DVT; e += WG) {
      let j = e / DVT;
      let col = (e % DVT) * 4u;
      var kx = vec4f(0.0);
      var vx = vec4f(0.0);
      if (t0 + j < p.nk) {
        kx = ld_k(kbase + (t0 + j) * p.ks, col);
        vx = ld_v(vbase + (t0 + j) * p.vs, col);
      }
      kt[e] = kx;
      vt[e] = vx;
    }
    workgroupBarrier();

    // BK keys at a time; a sub-tile wholly past the last key is skipped (uniform: every thread sees the same t0 + c).
    for (var c = 0u; c < BT && t0 + c < kend; c += BK) {
      if (QPT == 1u) {
        step1(c, t0 + c, t, r, u, qa);
      } else {
        step2(c, t0 + c, t, r, u, qa, qb);
      }
    }
    workgroupBarrier();
  }

  store1(b, h, u, qa);
  if (QPT == 2u) { store_b(b, h, u, qb); }
}
