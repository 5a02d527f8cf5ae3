// GroupNorm pass 1: statistics of one chunk of one (n, group), written as (count, mean, M2) for pass 2.
// A group is contiguous in NCHW. Values are shifted by the group's first element (so a large common offset
// does not cost precision), accumulated per thread with Welford and merged with Chan's formula.
// Needs (from pipeline/ops/vec.ts) V, VF, W, hsum, lane0.
struct Params { units: u32, chunk: u32, chunks: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> part: array<vec4f>;

// WG (threads, a power of two) comes from pipeline/ops/norm.ts, sized to the chunk.
var<workgroup> sn: array<f32, WG>;
var<workgroup> sm: array<f32, WG>;
var<workgroup> sq: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let k = wid.x;
  let ng = wid.y;
  let base = ng * p.units;
  let shift = lane0(VF(x[base]));
  let lo = k * p.chunk;
  let hi = min(lo + p.chunk, p.units);
  var n = 0.0;
  var m = VF(0.0);
  var q = VF(0.0);
  for (var i = lo + t; i < hi; i += WG) {
    let v = VF(x[base + i]) - shift;
    n += 1.0;
    let d = v - m;
    m += d / n;
    q += d * (v - m);
  }
  // Merge the W lanes (equal counts).
  let mean = hsum(m) / f32(W);
  let dm = m - mean;
  sn[t] = n * f32(W);
  sm[t] = mean;
  sq[t] = hsum(q) + n * hsum(dm * dm);
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      let na = sn[t];
      let nb = sn[t + s];
      let nt = na + nb;
      if (nt > 0.0) {
        let d = sm[t + s] - sm[t];
        sm[t] += d * (nb / nt);
        sq[t] += sq[t + s] + d * d * (na * nb / nt);
        sn[t] = nt;
      }
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    part[ng * p.chunks + k] = vec4f(sn[0], sm[0], sq[0], 0.0);
  }
}
