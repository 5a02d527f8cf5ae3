// y[i] = w0*a[o0+i] + w1*b[o1+i] + w2*c[o2+i] (the first TERMS terms), accumulated in f32. One kernel serves
// classifier-free guidance (a, b, c are slices of one stacked noise batch, addressed by element offsets so no
// aligned views are needed), DDPM forward noising, the Euler-ancestral update and model-input scaling.
// One invocation per storage unit V: a vec4 (W = 4) when the count and every offset are multiples of 4, else a
// scalar (a scalar f16 is a 2-byte access, which GPUs stream far below their bandwidth); n and the offsets are in
// units. Each lane runs the scalar kernel's math, so both widths give the same values.
// Needs (from pipeline/ops/vec.ts) V, VF.
struct Params { n: u32, row: u32, o0: u32, o1: u32, o2: u32, w0: f32, w1: f32, w2: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<V>;
@group(0) @binding(2) var<storage, read> b: array<V>;
@group(0) @binding(3) var<storage, read> c: array<V>;
@group(0) @binding(4) var<storage, read_write> y: array<V>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  var acc = p.w0 * VF(a[p.o0 + i]);
  if (TERMS > 1u) { acc += p.w1 * VF(b[p.o1 + i]); }
  if (TERMS > 2u) { acc += p.w2 * VF(c[p.o2 + i]); }
  y[i] = V(acc);
}
