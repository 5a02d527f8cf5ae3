// GroupNorm pass 2: merge the chunk statistics of one (n, group), then normalise this workgroup's chunk:
// y = ((x - shift) - mean) * rstd * gamma[c] + beta[c], optionally followed by SiLU.
// Needs (from pipeline/ops/vec.ts) V, VF, W, lane0; W = 4 only when a channel's spatial size is a multiple of 4.
struct Params { units: u32, chunk: u32, chunks: u32, cunits: u32, groups: u32, cg: u32, eps: f32, g0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> part: array<vec4f>;
@group(0) @binding(3) var<storage, read> gamma: array<T>;
@group(0) @binding(4) var<storage, read> beta: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<V>;

// WG (threads, a power of two) comes from pipeline/ops/norm.ts, sized to the chunk.
var<workgroup> sn: array<f32, WG>;
var<workgroup> sm: array<f32, WG>;
var<workgroup> sq: array<f32, WG>;

fn merge(a: vec3f, b: vec3f) -> vec3f {
  let nt = a.x + b.x;
  if (nt == 0.0) { return a; }
  let d = b.y - a.y;
  return vec3f(nt, a.y + d * (b.x / nt), a.z + b.z + d * d * (a.x * b.x / nt));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let k = wid.x;
  let ng = wid.y;
  let base = ng * p.units;
  var acc = vec3f(0.0);
  for (var j = t; j < p.chunks; j += WG) {
    acc = merge(acc, part[ng * p.chunks + j].xyz);
  }
  sn[t] = acc.x;
  sm[t] = acc.y;
  sq[t] = acc.z;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      let r = merge(vec3f(sn[t], sm[t], sq[t]), vec3f(sn[t + s], sm[t + s], sq[t + s]));
      sn[t] = r.x;
      sm[t] = r.y;
      sq[t] = r.z;
    }
    workgroupBarrier();
  }
  let mean = sm[0];
  let rstd = inverseSqrt(max(sq[0] / sn[0], 0.0) + p.eps);
  let shift = lane0(VF(x[base]));
  // g0: the group of this dispatch's first row (a dispatch may start inside an image past the binding limit).
  let c0 = ((ng + p.g0) % p.groups) * p.cg;
  let lo = k * p.chunk;
  let hi = min(lo + p.chunk, p.units);
  for (var i = lo + t; i < hi; i += WG) {
    let c = c0 + i / p.cunits;
    var v = ((VF(x[base + i]) - shift) - mean) * (rstd * f32(gamma[c])) + f32(beta[c]);
    if (SILU) {
      v = v / (1.0 + exp(-v));
    }
    y[base + i] = V(v);
  }
}
