// Canny step 2: non-maximum suppression with OpenCV's comparisons (cv::Canny): along the gradient sector the
// magnitude must be > the neighbour on the "previous" side and >= the one on the "next" side (horizontal:
// left/right, vertical: up/down); on diagonals > both. Magnitudes outside the image count as 0.
// nms[i] = magnitude + 1 where the pixel is a local maximum, else 0 (a maximum always has magnitude >= 1).
struct Params { w: u32, h: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<u32>;
@group(0) @binding(2) var<storage, read_write> nms: array<u32>;

fn mag(f: u32, x: i32, y: i32) -> u32 {
  if (x < 0 || y < 0 || x >= i32(p.w) || y >= i32(p.h)) { return 0u; }
  return grad[(f * p.h + u32(y)) * p.w + u32(x)] & 0xffffu;
}

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x >= p.w || gid.y >= p.h) { return; }
  let x = i32(gid.x);
  let y = i32(gid.y);
  let f = gid.z;
  let i = (f * p.h + gid.y) * p.w + gid.x;
  let g = grad[i];
  let m = g & 0xffffu;
  let sector = g >> 16u;
  var keep = false;
  switch sector {
    case 0u: { keep = m > mag(f, x - 1, y) && m >= mag(f, x + 1, y); }
    case 1u: { keep = m > mag(f, x, y - 1) && m >= mag(f, x, y + 1); }
    case 2u: { keep = m > mag(f, x - 1, y - 1) && m > mag(f, x + 1, y + 1); }
    default: { keep = m > mag(f, x + 1, y - 1) && m > mag(f, x - 1, y + 1); }
  }
  nms[i] = select(0u, m + 1u, keep);
}
