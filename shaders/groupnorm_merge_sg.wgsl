// reduce() for groupnorm_reduce.wgsl on subgroups (pipeline/gpu/subgroups.ts: lanes fill subgroups in invocation
// order, >= 4 of them): a butterfly of shuffles merges each subgroup with no barrier, then every thread merges the
// subgroups' results from workgroup memory (WG / size of them, at most WG / 4): one barrier instead of 1 + log2(WG).
var<workgroup> sgm: array<vec3f, max(WG / 4u, 1u)>;

// Merge one (count, mean, M2) per thread across the workgroup; every thread gets the total. Called once per
// workgroup (a second call would need a barrier first).
fn reduce(v: vec3f, t: u32) -> vec3f {
  let size = subgroupAdd(1u);
  var a = v;
  for (var m = 1u; m < size; m <<= 1u) { a = merge(a, subgroupShuffleXor(a, m)); }
  if (t % size == 0u) { sgm[t / size] = a; }
  workgroupBarrier();
  var r = sgm[0];
  for (var i = 1u; i < (WG + size - 1u) / size; i++) { r = merge(r, sgm[i]); }
  return r;
}
