// wsum() for layernorm.wgsl without subgroups: a tree over the workgroup in workgroup memory, one barrier a level.
var<workgroup> sh: array<vec2f, WG>;

// The sum of v over the workgroup; every thread gets it (callable again right after: it ends with a barrier).
fn wsum(v: vec2f, t: u32) -> vec2f {
  sh[t] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { sh[t] += sh[t + s]; }
    workgroupBarrier();
  }
  let r = sh[0];
  workgroupBarrier();
  return r;
}
