// Nearest upsampling by exactly 2 in both dimensions, [planes, H, W] -> [planes, 2H, 2W] with W a multiple of 4 (the
// UNet's and the VAE's upsamplers; torch "nearest" then reads src = floor(dst / 2)). One invocation per input vec4:
// it reads x once and writes its 2x2 copies, two vec4s on each of its two output rows. Why: the general kernel
// (upsample.wgsl) reads 4 scalars per output vec4, and a scalar f16 is a 2-byte access, which GPUs stream far below
// their bandwidth. Pure copies in the storage type: bit-exact.
// n: input vec4s in this dispatch; wu: vec4s per input row.
struct Params { n: u32, wu: u32, row: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T4>;
@group(0) @binding(2) var<storage, read_write> y: array<T4>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let r = i / p.wu;      // input row over all planes (plane * H + iy): output rows 2r and 2r + 1
  let u = i - r * p.wu;
  let v = x[i];
  let lo = T4(v.x, v.x, v.y, v.y);
  let hi = T4(v.z, v.z, v.w, v.w);
  let o = 4u * r * p.wu + 2u * u; // output rows are 2 * wu vec4s long
  y[o] = lo;
  y[o + 1u] = hi;
  y[o + 2u * p.wu] = lo;
  y[o + 2u * p.wu + 1u] = hi;
}
