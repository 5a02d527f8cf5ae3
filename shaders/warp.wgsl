// Text2Video-Zero latent warp for one frame (METHOD §1.3 closed form of diffusers' bilinear-resized sampling grid
// + grid_sample(mode="nearest", padding_mode="reflection", align_corners=False)):
//   out[c,y,x] = in[c, Y, X],  X = rne(reflect_w(x + shift_x)),  Y = rne(reflect_h(y + shift_y))
// shift = (strength*frame_id - 0.5) * size/512. Frames are addressed by element offsets (src, dst).
struct Params { n: u32, row: u32, w: u32, h: u32, src: u32, dst: u32, shift_x: f32, shift_y: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

// torch's reflect_coordinates(u, -1, 2*size-1) then clip to [0, size-1]: mirror u into [-0.5, size-0.5]
// (period 2*size), clamp, and round half to even (WGSL round() is half-to-even like std::nearbyint).
fn source_index(u: f32, size: u32) -> u32 {
  let span = f32(size);
  let d = abs(u + 0.5);
  let flips = floor(d / span);
  let extra = d - flips * span;
  let r = select(span - extra, extra, (u32(flips) & 1u) == 0u) - 0.5;
  return u32(round(clamp(r, 0.0, span - 1.0)));
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let x = i % p.w;
  let y = (i / p.w) % p.h;
  let plane = i - x - y * p.w;
  let sx = source_index(f32(x) + p.shift_x, p.w);
  let sy = source_index(f32(y) + p.shift_y, p.h);
  out[p.dst + i] = inp[p.src + plane + sy * p.w + sx];
}
