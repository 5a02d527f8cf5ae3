// reduce() for groupnorm_reduce.wgsl without subgroups: a tree over the workgroup in workgroup memory, one barrier a
// level. (groupnorm_merge_sg.wgsl is the same merge on subgroups.)
var<workgroup> sn: array<f32, WG>;
var<workgroup> sm: array<f32, WG>;
var<workgroup> sq: array<f32, WG>;

// Merge one (count, mean, M2) per thread across the workgroup; every thread gets the total. Called once per
// workgroup (a second call would need a barrier first).
fn reduce(v: vec3f, t: u32) -> vec3f {
  sn[t] = v.x;
  sm[t] = v.y;
  sq[t] = v.z;
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
  return vec3f(sn[0], sm[0], sq[0]);
}
