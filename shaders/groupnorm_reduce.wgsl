// Shared by groupnorm_stats.wgsl and groupnorm.wgsl (appended by pipeline/ops/norm.ts): Welford statistics
// (count, mean, M2) of a range of x, shifted by the group's first element so a large common offset costs no
// precision, merged across lanes and threads with Chan's formula. Needs x: array<V>, WG, W, VF, hsum, and reduce()
// from groupnorm_merge.wgsl (workgroup memory) or groupnorm_merge_sg.wgsl (subgroups; pipeline/gpu/subgroups.ts).
fn merge(a: vec3f, b: vec3f) -> vec3f {
  let nt = a.x + b.x;
  if (nt == 0.0) { return a; }
  let d = b.y - a.y;
  return vec3f(nt, a.y + d * (b.x / nt), a.z + b.z + d * d * (a.x * b.x / nt));
}

// Statistics of units [lo, hi) after `base`, relative to `shift`, reduced over the workgroup.
fn range_stats(base: u32, lo: u32, hi: u32, shift: f32, t: u32) -> vec3f {
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
  return reduce(vec3f(n * f32(W), mean, hsum(q) + n * hsum(dm * dm)), t);
}
