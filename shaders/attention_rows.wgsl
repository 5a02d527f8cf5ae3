// row_sums() for attention.wgsl without subgroups: the TPR threads of a query row add their partial q.k dots of the
// BK keys of this tile (the score registers in use, S1..S3) through workgroup memory (one barrier; the tile loop's
// barriers keep `part` from being overwritten while read, and with BT > BK a second one here before the next BK keys
// write it).
var<workgroup> part: array<vec4f, select(1u, NS * WG, TPR > 1u)>;

fn row_sum(i: u32, r: u32) -> vec4f {
  var d = vec4f(0.0);
  for (var w = 0u; w < TPR; w++) { d += part[i * WG + r * TPR + w]; }
  return d;
}

fn row_sums(t: u32, r: u32) {
  part[t] = s0;
  if (S1) { part[WG + t] = s1; }
  if (S2) { part[2u * WG + t] = s2; }
  if (S3) { part[3u * WG + t] = s3; }
  workgroupBarrier();
  s0 = row_sum(0u, r);
  if (S1) { s1 = row_sum(1u, r); }
  if (S2) { s2 = row_sum(2u, r); }
  if (S3) { s3 = row_sum(3u, r); }
  if (BT > BK) { workgroupBarrier(); }
}
