// Canny step 1: 3x3 Sobel (BORDER_REPLICATE), L1 magnitude |dx|+|dy| and OpenCV's direction sector, on RGB24 frames.
// As cv2.Canny: on a colour image each pixel keeps the channel with the largest magnitude (first on ties); with
// GRAY the frame is first converted like cv2.cvtColor(RGB2GRAY) (fixed point, 14 bits). Integer arithmetic
// throughout, so the result is exact.
// grad[i] = magnitude | (sector << 16); sector 0: horizontal gradient (compare left/right), 1: vertical
// (up/down), 2: diagonal with dx, dy of the same sign (up-left/down-right), 3: opposite signs (up-right/down-left).
struct Params { w: u32, h: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;   // packed RGB24 bytes, frame-major
@group(0) @binding(2) var<storage, read_write> grad: array<u32>;

fn byte_at(i: u32) -> i32 {
  return i32((src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
}

// Channel c (or the grey value) of pixel (x, y) of frame f, with the coordinates clamped (replicated border).
fn px(f: u32, x: i32, y: i32, c: u32) -> i32 {
  let xc = u32(clamp(x, 0, i32(p.w) - 1));
  let yc = u32(clamp(y, 0, i32(p.h) - 1));
  let base = ((f * p.h + yc) * p.w + xc) * 3u;
  if (GRAY) {
    return (byte_at(base) * 4899 + byte_at(base + 1u) * 9617 + byte_at(base + 2u) * 1868 + 8192) >> 14u;
  }
  return byte_at(base + c);
}

const TG22: i32 = 13573; // int(tan(22.5 deg) * 2^15 + 0.5), OpenCV's CANNY_SHIFT = 15

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x >= p.w || gid.y >= p.h) { return; }
  let x = i32(gid.x);
  let y = i32(gid.y);
  let f = gid.z;
  var best = -1;
  var bdx = 0;
  var bdy = 0;
  let nc = select(3u, 1u, GRAY);
  for (var c = 0u; c < nc; c++) {
    let a = px(f, x - 1, y - 1, c);
    let b = px(f, x, y - 1, c);
    let d = px(f, x + 1, y - 1, c);
    let l = px(f, x - 1, y, c);
    let r = px(f, x + 1, y, c);
    let e = px(f, x - 1, y + 1, c);
    let g = px(f, x, y + 1, c);
    let k = px(f, x + 1, y + 1, c);
    let dx = (d + 2 * r + k) - (a + 2 * l + e);
    let dy = (e + 2 * g + k) - (a + 2 * b + d);
    let m = abs(dx) + abs(dy);
    if (m > best) {
      best = m;
      bdx = dx;
      bdy = dy;
    }
  }
  let ax = abs(bdx);
  let ay = abs(bdy) << 15u;
  let tg22x = ax * TG22;
  var sector = 0u;
  if (ay >= tg22x) {
    let tg67x = tg22x + (ax << 16u);
    if (ay > tg67x) {
      sector = 1u;
    } else {
      sector = select(2u, 3u, (bdx ^ bdy) < 0);
    }
  }
  grad[(f * p.h + gid.y) * p.w + gid.x] = u32(best) | (sector << 16u);
}
