// y[i] = w0*a[o0+i] + w1*b[o1+i] + w2*c[o2+i] (the first TERMS terms), accumulated in f32. One kernel serves
// classifier-free guidance (a, b, c are slices of one stacked noise batch, addressed by element offsets so no
// aligned views are needed), DDPM forward noising, the Euler-ancestral update and model-input scaling.
struct Params { n: u32, row: u32, o0: u32, o1: u32, o2: u32, w0: f32, w1: f32, w2: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read> c: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  var acc = p.w0 * f32(a[p.o0 + i]);
  if (TERMS > 1u) { acc += p.w1 * f32(b[p.o1 + i]); }
  if (TERMS > 2u) { acc += p.w2 * f32(c[p.o2 + i]); }
  y[i] = T(acc);
}
