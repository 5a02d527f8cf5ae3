// Canny step 3: double threshold on the suppressed magnitudes (OpenCV: m > low makes a candidate, m > high an
// edge; low/high are the floored thresholds). state: 0 = not an edge, 1 = weak (edge if connected), 2 = edge.
struct Params { n: u32, row: u32, low: i32, high: i32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> nms: array<u32>;
@group(0) @binding(2) var<storage, read_write> state: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let v = nms[i];
  var s = 0u;
  if (v != 0u) {
    let m = i32(v - 1u);
    if (m > p.high) { s = 2u; } else if (m > p.low) { s = 1u; }
  }
  state[i] = s;
}
