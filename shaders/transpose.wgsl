// Batched transpose [B, A, C] -> [B, C, A] through a padded 32x32 shared tile (coalesced reads and writes).
struct Params { a: u32, c: u32, b0: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

const TILE = 32u;
var<workgroup> tile: array<f32, 1056>; // 32 x 33: the pad column avoids bank conflicts

@compute @workgroup_size(32, 8)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let plane = (wid.z + p.b0) * p.a * p.c;
  let a0 = wid.y * TILE;
  let c0 = wid.x * TILE;
  for (var r = 0u; r < TILE; r += 8u) {
    let a = a0 + lid.y + r;
    let c = c0 + lid.x;
    if (a < p.a && c < p.c) {
      tile[(lid.y + r) * (TILE + 1u) + lid.x] = f32(x[plane + a * p.c + c]);
    }
  }
  workgroupBarrier();
  for (var r = 0u; r < TILE; r += 8u) {
    let c = c0 + lid.y + r;
    let a = a0 + lid.x;
    if (a < p.a && c < p.c) {
      y[plane + c * p.a + a] = T(tile[lid.x * (TILE + 1u) + lid.y + r]);
    }
  }
}
