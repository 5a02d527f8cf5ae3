// row_sums() for attention.wgsl on subgroups (pipeline/gpu/subgroups.ts: lanes fill subgroups in invocation order,
// >= 4 of them, so a row's TPR <= 4 consecutive threads share one): a butterfly of shuffles gives every thread of the
// row the sum of its partial q.k dots, with no workgroup memory and no barrier. Each lane adds the same two values at
// each step, so all lanes hold the same sums.
fn row_sums(s: ptr<function, array<f32, BK>>, t: u32, r: u32) {
  for (var j = 0u; j < BK; j++) {
    var d = (*s)[j];
    for (var m = 1u; m < TPR; m <<= 1u) { d += subgroupShuffleXor(d, m); }
    (*s)[j] = d;
  }
}
