// y[e] = a[e] OP alpha * b[((e + off) / inner) % nb]: one kernel serves same-shape, per-channel (NCHW bias) and
// per-row broadcast; computed in f32. off: index of this dispatch's first element in the whole of a (a dispatch may
// cover a range past the binding limit; the wrapper keeps it a multiple of W).
// One invocation per storage unit V of a and y: a vec4 (W = 4) when the element count is a multiple of 4, else a
// scalar (a scalar f16 is a 2-byte access, which GPUs stream far below their bandwidth). b is read as
//   BMODE 0: b has a's shape: a unit of b beside each unit of a (BS = V);
//   BMODE 1: one b value per unit (inner % W == 0), loaded once and splat (BS = T);
//   BMODE 2: b varies inside a unit (inner not a multiple of 4): each lane computes its own index (BS = T).
// Each lane runs the scalar kernel's math, so every width and mode gives the same values.
// Needs (from pipeline/ops/vec.ts) V, VF, W, pack; consts OP, BMODE, and the alias BS.
struct Params { n: u32, inner: u32, nb: u32, row: u32, alpha: f32, off: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<V>;
@group(0) @binding(2) var<storage, read> b: array<BS>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;

fn bidx(e: u32) -> u32 { return ((e + p.off) / p.inner) % p.nb; }

// b[k] widened to 4 lanes: a whole unit when BS = T4, else one element splat (so every mode type-checks).
fn bload(k: u32) -> vec4f { return vec4f(T4(b[k])); }

// alpha * b for unit u, lane by lane.
fn bval(u: u32) -> VF {
  if (BMODE == 0u) {
    let v = bload(u);
    return p.alpha * pack(v.x, v.y, v.z, v.w);
  }
  let e = u * W;
  if (BMODE == 1u) { return VF(p.alpha * bload(bidx(e)).x); }
  return p.alpha * pack(bload(bidx(e)).x, bload(bidx(e + 1u)).x, bload(bidx(e + 2u)).x, bload(bidx(e + 3u)).x);
}

// p.n: units (elements / W) in this dispatch.
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let va = VF(a[i]);
  let vb = bval(i);
  var r: VF;
  switch OP {
    case 0u: { r = va + vb; }
    case 1u: { r = va * vb; }
    case 2u: { r = va - vb; }
    default: { r = va; }
  }
  y[i] = V(r);
}
