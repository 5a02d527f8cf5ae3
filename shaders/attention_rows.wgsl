// row_sums() for attention.wgsl without subgroups: the TPR threads of a query row add their partial q.k dots of the
// BK keys of this tile through workgroup memory (one barrier; the tile loop's barriers keep `part` from being
// overwritten while read).
var<workgroup> part: array<f32, select(1u, BK * WG, TPR > 1u)>;

fn row_sums(s: ptr<function, array<f32, BK>>, t: u32, r: u32) {
  for (var j = 0u; j < BK; j++) { part[j * WG + t] = (*s)[j]; }
  workgroupBarrier();
  for (var j = 0u; j < BK; j++) {
    var d = 0.0;
    for (var w = 0u; w < TPR; w++) { d += part[j * WG + r * TPR + w]; }
    (*s)[j] = d;
  }
}
