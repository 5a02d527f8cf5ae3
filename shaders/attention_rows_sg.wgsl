// row_sums() for attention.wgsl on subgroups (pipeline/gpu/subgroups.ts: lanes fill subgroups in invocation order,
// >= 4 of them, so a row's TPR <= 4 consecutive threads share one): a butterfly of shuffles gives every thread of the
// row the sum of its partial q.k dots of the tile's keys (the score registers in use), with no workgroup memory and no
// barrier. Each lane adds the same two values at each step, so all lanes hold the same sums.
fn row_sums(t: u32, r: u32) {
  for (var m = 1u; m < TPR; m <<= 1u) {
    s0 += subgroupShuffleXor(s0, m);
    if (S1) { s1 += subgroupShuffleXor(s1, m); }
    if (S2) { s2 += subgroupShuffleXor(s2, m); }
    if (S3) { s3 += subgroupShuffleXor(s3, m); }
  }
}
