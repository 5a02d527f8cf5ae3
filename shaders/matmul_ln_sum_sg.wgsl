// ln_reduce() for matmul.wgsl's LayerNorm prologue on subgroups (pipeline/gpu/subgroups.ts: lanes fill subgroups in
// invocation order, >= 4 of them, so a row's LNP <= 4 consecutive threads share one): a butterfly of shuffles, no
// workgroup memory, no barrier.

// Sum of v over the LNP threads of each row (every thread of the row gets it).
fn ln_reduce(lid: u32, v: vec2<f32>) -> vec2<f32> {
  var s = v;
  for (var m = 1u; m < LNP; m <<= 1u) { s += subgroupShuffleXor(s, m); }
  return s;
}
