// y[i] = a[i] OP b[(i / inner) % nb]: one kernel serves same-shape, per-channel (NCHW bias) and per-row broadcast.
// off: index of this dispatch's first element in the whole of a (a dispatch may cover a range past the binding limit).
struct Params { n: u32, inner: u32, nb: u32, row: u32, alpha: f32, off: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let va = f32(a[i]);
  let vb = p.alpha * f32(b[((i + p.off) / p.inner) % p.nb]);
  var r: f32;
  switch OP {
    case 0u: { r = va + vb; }
    case 1u: { r = va * vb; }
    case 2u: { r = va - vb; }
    default: { r = va; }
  }
  y[i] = T(r);
}
