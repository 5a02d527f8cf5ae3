// ln_reduce() for matmul.wgsl's LayerNorm prologue without subgroups: the LNP threads of a row add their partial
// sums through workgroup memory.
var<workgroup> ln_red: array<vec2<f32>, select(1u, WG, LN)>;

// Sum of v over the LNP threads of each row (every thread of the row gets it).
fn ln_reduce(lid: u32, v: vec2<f32>) -> vec2<f32> {
  workgroupBarrier();
  ln_red[lid] = v;
  workgroupBarrier();
  let r0 = (lid / LNP) * LNP;
  var s = vec2<f32>(0.0);
  for (var j = 0u; j < LNP; j++) { s += ln_red[r0 + j]; }
  return s;
}
