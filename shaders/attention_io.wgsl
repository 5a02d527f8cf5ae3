// The I/O shared by the attention kernels (prepended to shaders/attention.wgsl, attention_flash.wgsl and
// attention_tiled.wgsl, after one of attention_load.wgsl / attention_load_vec4.wgsl, the bindings and the loads and
// stores of four head elements):
// parameters, where a head's q/k/v/o rows start and which keys a query block needs, the causal/length mask of four
// scores. q/k/v rows may be strided (qs, ks, vs) and start at a column offset (qo, ko, vo): Q, K and V of one packed
// projection [B, N, 3C] are read in place. o is [B, Nq, c]. div: query batch b reads k/v batch b / div. cl2: the
// softmax scale times log2(e) (scores in log2 units for exp2).
struct Params { nq: u32, nk: u32, c: u32, div: u32, causal: u32, cl2: f32, qs: u32, ks: u32, vs: u32, qo: u32, ko: u32, vo: u32 }
@group(0) @binding(0) var<uniform> p: Params;

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
