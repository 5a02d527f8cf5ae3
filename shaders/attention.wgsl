// Memory-efficient multi-head attention (flash-attention style online softmax; the Nq x Nk scores never exist).
// Each query row is owned by TPR threads: each holds a 1/TPR slice of the row's q and output accumulator in registers
// (vec4 columns u, u+TPR, ..., DV of them) and the row's running max and sum (f32). Tiles of BT keys of K and V stream
// through workgroup memory, where every row reads the same key (broadcast loads), and are scored BK keys at a time
// (BT > BK: fewer barriers and load phases per key, each load's latency spread over more math). With TPR > 1 the partial q.k dots
// are summed by row_sums() from attention_rows.wgsl (workgroup memory) or attention_rows_sg.wgsl (subgroups). Head
// dims past 160 use attention_tiled.wgsl (the registers would not hold a row).
// Unrolled by hand, like the GEMM core (shaders/gemm.wgsl): private arrays indexed in loops stay in memory on some
// drivers (llvmpipe) because wgpu's loop bounding can block unrolling. So the q slice (q0..q9), the accumulator
// (o0..o9) and the tile's scores (s0..s3: 4 keys each) are named registers, and the constant guards below fold away.
// Constants from pipeline/ops/attention.ts: D (head dim), DV (vec4 columns per thread, <= 10), TPR, WG, BK (4, 8 or
// 16 keys scored at once), BT (keys per workgroup-memory tile, a multiple of BK).
// Grid: x = query block, y = head, z = query batch.
// Parameters, bindings, row addressing and loads, score mask, output store: shaders/attention_io.wgsl.
const BQ = WG / TPR; // query rows per workgroup
const DVT = DV * TPR; // vec4 columns of a key row

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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let row0 = wid.x * BQ;
  let h = wid.y;
  let b = wid.z;
  let r = t / TPR;
  let u = t % TPR;
  let qi = row0 + r;
  let kbase = k_base(b, h);
  let vbase = v_base(b, h);
  let kend = key_end(row0, BQ);

  load_q(q_row(b, qi, h), u, qi < p.nq);
  var m = NEG;
  var l = 0.0;

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
      let k0 = t0 + c;
      s0 = qk4(c, u);
      if (BK > 4u) { s1 = qk4(c + 4u, u); }
      if (BK > 8u) {
        s2 = qk4(c + 8u, u);
        s3 = qk4(c + 12u, u);
      }
      if (TPR > 1u) { row_sums(t, r); }
      s0 = mask(s0, k0, qi);
      var mx = max(m, max4(s0));
      if (BK > 4u) {
        s1 = mask(s1, k0 + 4u, qi);
        mx = max(mx, max4(s1));
      }
      if (BK > 8u) {
        s2 = mask(s2, k0 + 8u, qi);
        s3 = mask(s3, k0 + 12u, qi);
        mx = max(mx, max(max4(s2), max4(s3)));
      }
      let a = exp2(m - mx);
      m = mx;
      l *= a;
      rescale(a);

      let w0 = exp2(s0 - vec4f(m));
      l += sum4(w0);
      pv4(c, u, w0);
      if (BK > 4u) {
        let w1 = exp2(s1 - vec4f(m));
        l += sum4(w1);
        pv4(c + 4u, u, w1);
      }
      if (BK > 8u) {
        let w2 = exp2(s2 - vec4f(m));
        let w3 = exp2(s3 - vec4f(m));
        l += sum4(w2) + sum4(w3);
        pv4(c + 8u, u, w2);
        pv4(c + 12u, u, w3);
      }
    }
    workgroupBarrier();
  }

  if (qi >= p.nq) { return; }
  let inv = 1.0 / l;
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
