// Split-K's second pass (pipeline/ops/conv2d.ts): conv2d.wgsl wrote each K slice's partial sums in f32,
// part[s * n + i] for s < p.S and output element i < n of [images, Cout, Ho*Wo]; this adds them in slice order
// (deterministic, unlike atomics) and applies conv2d's epilogue once (p.flags, shaders/conv_epilogue.wgsl), then
// rounds to T. One thread per output.
struct Params {
  n: u32, S: u32, Cout: u32, HWo: u32, flags: u32, ebOff: u32, ebStride: u32, row: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read> res: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read> eb: array<T>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  var o = 0.0;
  for (var s = 0u; s < p.S; s++) { o += part[s * p.n + i]; }
  y[i] = T(epilogue(o, (i / p.HWo) % p.Cout, i / (p.HWo * p.Cout), i));
}
