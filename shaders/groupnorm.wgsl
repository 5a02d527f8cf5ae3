// GroupNorm: y = ((x - shift) - mean) * rstd * gamma[c] + beta[c], optionally followed by SiLU, over this
// workgroup's chunk of one (n, group). ONEPASS (the group is one chunk): the statistics are computed here, so
// GroupNorm is one dispatch. GIVEN: `part` holds each (n, group)'s statistics of the whole map, (count, mean, M2)
// unshifted, computed elsewhere (the banded VAE decode normalises a band of rows with the map's statistics).
// Otherwise pass 2: merge the chunk statistics of groupnorm_stats.wgsl.
// merge/range_stats come from groupnorm_reduce.wgsl, reduce from groupnorm_merge.wgsl or its subgroup variant.
// Needs (from pipeline/ops/vec.ts) V, VF, W, hsum, lane0; W = 4 only when a channel's spatial size is a multiple of 4.
struct Params { units: u32, chunk: u32, chunks: u32, cunits: u32, groups: u32, cg: u32, eps: f32, g0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> part: array<f32>; // (count, mean, M2, -) per chunk
@group(0) @binding(3) var<storage, read> gamma: array<T>;
@group(0) @binding(4) var<storage, read> beta: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<V>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let k = wid.x;
  let ng = wid.y;
  let base = ng * p.units;
  var shift = lane0(VF(x[base]));
  var s: vec3f;
  if (GIVEN) {
    shift = 0.0;
    s = vec3f(part[ng * 4u], part[ng * 4u + 1u], part[ng * 4u + 2u]);
  } else if (ONEPASS) {
    s = range_stats(base, 0u, p.units, shift, t);
  } else {
    var acc = vec3f(0.0);
    for (var j = t; j < p.chunks; j += WG) {
      let e = (ng * p.chunks + j) * 4u;
      acc = merge(acc, vec3f(part[e], part[e + 1u], part[e + 2u]));
    }
    s = reduce(acc, t);
  }
  let mean = s.y;
  let rstd = inverseSqrt(max(s.z / s.x, 0.0) + p.eps);
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
