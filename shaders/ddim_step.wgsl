// One DDIM update (diffusers DDIMScheduler.step) with coefficients computed on the CPU in float64:
//   x0   = x0_x*x + x0_e*m            (m = model output; eps / v / sample prediction are all linear in x and m)
//   x0   = clamp(x0, -clip, clip)     (clip_sample; eps below is taken from the unclipped values, as diffusers does)
//   eps  = ep_x*x + ep_e*m
//   prev = a_prev*x0 + dir*eps (+ noise_w*noise = std_dev_t*noise when eta > 0)
// One invocation per storage unit V: a vec4 (W = 4) when the element count is a multiple of 4, else a scalar (a
// scalar f16 is a 2-byte access, which GPUs stream far below their bandwidth); p.n counts units. Each lane runs the
// scalar kernel's f32 math, so both widths give the same values.
// Needs (from pipeline/ops/vec.ts) V, VF.
struct Params {
  n: u32, row: u32,
  x0_x: f32, x0_e: f32, ep_x: f32, ep_e: f32,
  a_prev: f32, dir: f32, noise_w: f32, clip: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<V>;
@group(0) @binding(2) var<storage, read> x: array<V>;
@group(0) @binding(3) var<storage, read> noise: array<V>;
@group(0) @binding(4) var<storage, read_write> prev: array<V>;
@group(0) @binding(5) var<storage, read_write> x0_out: array<V>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let xv = VF(x[i]);
  let mv = VF(m[i]);
  var x0 = p.x0_x * xv + p.x0_e * mv;
  if (CLIP) { x0 = clamp(x0, VF(-p.clip), VF(p.clip)); }
  let eps = p.ep_x * xv + p.ep_e * mv;
  var r = p.a_prev * x0 + p.dir * eps;
  if (NOISE) { r += p.noise_w * VF(noise[i]); }
  prev[i] = V(r);
  x0_out[i] = V(x0);
}
