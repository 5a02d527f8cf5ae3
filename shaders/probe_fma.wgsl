// Ceiling probe for gpu-check: each thread runs CHAINS independent vec4 multiply-add chains of `iters` steps in the
// storage type T (f32 or f16), x = x * a + b, and stores their sum. Independent chains hide FMA latency, so the
// rate approaches the adapter's peak; a and b come from the uniforms so nothing folds at compile time.
// UNROLL (a const: 1 or 8) steps per loop iteration, then the rest one by one: every loop carries Naga's bounding
// counter (a 64-bit count in a local variable, which also hides the trip count from the driver's own unrolling), and
// with one step per iteration its increment, compare and branch can cost as much as the 4 vec4 FMAs (8 packed f16
// ones) beside them. gpu-check times both and keeps the faster: llvmpipe runs f16 (emulated) faster without.
struct Params { n: u32, iters: u32, row: u32, a: f32, b: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<T4>;

const CHAINS: u32 = 4u;

var<private> x0: T4;
var<private> x1: T4;
var<private> x2: T4;
var<private> x3: T4;

// One step of every chain.
fn step(a: T4, b: T4) {
  x0 = fma(x0, a, b);
  x1 = fma(x1, a, b);
  x2 = fma(x2, a, b);
  x3 = fma(x3, a, b);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let a = T4(T(p.a));
  let b = T4(T(p.b));
  // Chains start apart (lane and chain offsets) so no two compute the same values.
  let s = T(f32(i % 7u) * 0.125);
  x0 = T4(s, s + T(0.25), s + T(0.5), s + T(0.75));
  x1 = x0 + T4(T(0.0625));
  x2 = x0 + T4(T(0.125));
  x3 = x0 + T4(T(0.1875));
  let whole = p.iters / UNROLL * UNROLL;
  var k = 0u;
  for (; k < whole; k += UNROLL) {
    step(a, b);
    if (UNROLL > 1u) {
      step(a, b);
      step(a, b);
      step(a, b);
      step(a, b);
      step(a, b);
      step(a, b);
      step(a, b);
    }
  }
  for (; k < p.iters; k++) {
    step(a, b);
  }
  y[i] = x0 + x1 + x2 + x3;
}
