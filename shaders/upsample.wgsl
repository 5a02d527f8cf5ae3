// Nearest upsampling [planes, H, W] -> [planes, Ho, Wo] with src = floor(dst * in / out) (torch "nearest").
// One thread per W output elements (W = 4 when Wo is a multiple of 4: a vec4 store).
// Needs (from pipeline/ops/vec.ts) V, VF, W, pack.
struct Params { n: u32, h: u32, w: u32, ho: u32, wo: u32, row: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

fn src(base: u32, ox: u32) -> f32 {
  return f32(x[base + ox * p.w / p.wo]);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let e = i * W;
  let ox = e % p.wo;
  let rest = e / p.wo;
  let oy = rest % p.ho;
  let plane = rest / p.ho;
  let base = (plane * p.h + oy * p.h / p.ho) * p.w;
  if (W == 4u) {
    y[i] = V(pack(src(base, ox), src(base, ox + 1u), src(base, ox + 2u), src(base, ox + 3u)));
  } else {
    y[i] = V(VF(src(base, ox)));
  }
}
