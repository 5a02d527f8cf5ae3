// wsum() for layernorm.wgsl on subgroups (pipeline/gpu/subgroups.ts: lanes fill subgroups in invocation order, >= 4
// of them): each subgroup sums with subgroupAdd, then every thread adds the subgroups' sums from workgroup memory.
var<workgroup> sgs: array<vec2f, max(WG / 4u, 1u)>;

// The sum of v over the workgroup; every thread gets it (callable again right after: it ends with a barrier).
fn wsum(v: vec2f, t: u32) -> vec2f {
  let size = subgroupAdd(1u);
  let s = subgroupAdd(v);
  if (t % size == 0u) { sgs[t / size] = s; }
  workgroupBarrier();
  var r = vec2f(0.0);
  for (var i = 0u; i < (WG + size - 1u) / size; i++) { r += sgs[i]; }
  workgroupBarrier();
  return r;
}
