// LayerNorm: one workgroup per row of C = units * W elements. The row stays in registers (when CACHE) for an exact
// two-pass mean/variance; the second pass also sums the residuals, which corrects the rounding of the mean
// (corrected two-pass algorithm), so a large common offset costs no precision.
// Needs (from pipeline/ops/vec.ts) V, VF, W, hsum; consts WG (threads), R (= ceil(units / WG)), CACHE, RC; wsum()
// from layernorm_sum.wgsl (workgroup memory) or layernorm_sum_sg.wgsl (subgroups; pipeline/gpu/subgroups.ts).
struct Params { rows: u32, units: u32, gx: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> gamma: array<V>;
@group(0) @binding(3) var<storage, read> beta: array<V>;
@group(0) @binding(4) var<storage, read_write> y: array<V>;

var<private> cache: array<VF, RC>;
fn value(k: u32, i: u32) -> VF {
  if (CACHE) { return cache[k]; }
  return VF(x[i]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let row = wid.x + wid.y * p.gx;
  if (row >= p.rows) { return; }
  let base = row * p.units;
  let n = f32(p.units * W);
  var s = VF(0.0);
  for (var k = 0u; k < R; k++) {
    let i = t + k * WG;
    if (i < p.units) {
      let v = VF(x[base + i]);
      if (CACHE) { cache[k] = v; }
      s += v;
    }
  }
  let m0 = wsum(vec2f(hsum(s), 0.0), t).x / n;
  var s1 = VF(0.0);
  var s2 = VF(0.0);
  for (var k = 0u; k < R; k++) {
    let i = t + k * WG;
    if (i < p.units) {
      let d = value(k, base + i) - m0;
      s1 += d;
      s2 += d * d;
    }
  }
  let r = wsum(vec2f(hsum(s1), hsum(s2)), t) / n;
  // r.x is the mean of the residuals; var = E[d^2] - E[d]^2.
  let rstd = inverseSqrt(max(r.y - r.x * r.x, 0.0) + p.eps);
  for (var k = 0u; k < R; k++) {
    let i = t + k * WG;
    if (i < p.units) {
      let v = ((value(k, base + i) - m0) - r.x) * rstd;
      y[base + i] = V(v * VF(gamma[i]) + VF(beta[i]));
    }
  }
}
