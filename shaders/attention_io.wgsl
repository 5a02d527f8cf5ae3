// The I/O shared by the attention kernels (prepended to shaders/attention.wgsl, attention_flash.wgsl and
// attention_tiled.wgsl):
// parameters, bindings, where a head's q/k/v/o rows start and which keys a query block needs, the loads of four head
// elements of a q, k or v row as f32, the causal/length mask of four scores and the store of four output elements.
// q/k/v rows may be strided (qs, ks, vs) and start at a column offset (qo, ko, vo): Q, K and V of one packed
// projection [B, N, 3C] are read in place. o is [B, Nq, c]. div: query batch b reads k/v batch b / div. cl2: the
// softmax scale times log2(e) (scores in log2 units for exp2).
struct Params { nq: u32, nk: u32, c: u32, div: u32, causal: u32, cl2: f32, qs: u32, ks: u32, vs: u32, qo: u32, ko: u32, vo: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

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

// Where row i of query batch b starts in q (head h's columns) and in o.
fn q_row(b: u32, i: u32, h: u32) -> u32 {
  return (b * p.nq + i) * p.qs + p.qo + h * D;
}

fn o_row(b: u32, i: u32, h: u32) -> u32 {
  return (b * p.nq + i) * p.c + h * D;
}

// Where head h's columns of query batch b's keys and values start (k/v batch b / div), key 0.
fn k_base(b: u32, h: u32) -> u32 {
  return (b / p.div) * p.nk * p.ks + p.ko + h * D;
}

fn v_base(b: u32, h: u32) -> u32 {
  return (b / p.div) * p.nk * p.vs + p.vo + h * D;
}

// The keys a block of n queries from row0 needs: all, or with the causal mask those up to its last query (later
// tiles would be masked for every row, so they are skipped).
fn key_end(row0: u32, n: u32) -> u32 {
  return select(p.nk, min(p.nk, row0 + n), p.causal != 0u);
}

const NEG = -1e30; // masked score; finite so that exp2(NEG - m) is 0 and never NaN

// Scores of keys key..key+3 past Nk, or after query qi when causal, become NEG.
fn mask(s: vec4f, key: u32, qi: u32) -> vec4f {
  let keys = vec4u(key) + vec4u(0u, 1u, 2u, 3u);
  let ok = keys < vec4u(p.nk) & (vec4u(p.causal) == vec4u(0u) | keys <= vec4u(qi));
  return select(vec4f(NEG), s, ok);
}

fn max4(s: vec4f) -> f32 {
  return max(max(s.x, s.y), max(s.z, s.w));
}

fn sum4(s: vec4f) -> f32 {
  return (s.x + s.y) + (s.z + s.w);
}

// Four elements (from column col) of the output row starting at `at`, scaled by inv; nothing past D.
fn store(at: u32, col: u32, x: vec4f, inv: f32) {
  if (col >= D) { return; }
  let y = x * inv;
  o[at + col] = T(y.x);
  if (D % 4u == 0u || col + 1u < D) { o[at + col + 1u] = T(y.y); }
  if (D % 4u == 0u || col + 2u < D) { o[at + col + 2u] = T(y.z); }
  if (D % 4u == 0u || col + 3u < D) { o[at + col + 3u] = T(y.w); }
}
