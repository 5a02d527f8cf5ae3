// Batched transpose [B, A, C] -> [B, C, A] through a padded 32x32 shared tile (coalesced reads and writes).
// W = 4 when A and C are multiples of 4: each invocation reads a vec4 of 4 consecutive c of one row a and writes a
// vec4 of 4 consecutive a of one column c (a scalar f16 is a 2-byte access, which GPUs stream far below their
// bandwidth; vec4<f16> moves 8 bytes). W = 1: scalars. The workgroup is (32 / W) x (8 * W) = 256 invocations; each
// moves 32 * 32 / 256 / W units each way. Bank conflicts: the tile's 33-float rows put the 4 lanes of the 32
// invocations of a subgroup (and the scalar case's 32 columns) on distinct banks, for both the stores and the loads.
// Values pass through f32 (exact for f16 and f32 storage).
// Needs (from pipeline/ops/vec.ts) V, VF, W, lane, pack.
struct Params { a: u32, c: u32, b0: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

const TILE = 32u;
const TX = TILE / W;  // invocations along a tile row, W elements each
const TY = 8u * W;    // tile rows handled at once
var<workgroup> tile: array<f32, 1056>; // 32 x 33: the pad column avoids bank conflicts

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let plane = (wid.z + p.b0) * p.a * p.c;
  let a0 = wid.y * TILE;
  let c0 = wid.x * TILE;
  let j = lid.x * W; // this invocation's first element along a tile row
  for (var r = 0u; r < TILE; r += TY) {
    let a = a0 + lid.y + r;
    let c = c0 + j;
    // A and C are multiples of W: a unit is wholly inside or outside the matrix.
    if (a < p.a && c < p.c) {
      let v = VF(x[(plane + a * p.c + c) / W]);
      for (var k = 0u; k < W; k++) { tile[(lid.y + r) * (TILE + 1u) + j + k] = lane(v, k); }
    }
  }
  workgroupBarrier();
  for (var r = 0u; r < TILE; r += TY) {
    let c = c0 + lid.y + r;
    let a = a0 + j;
    if (a < p.a && c < p.c) {
      // Lanes k at tile rows j + k; W = 1 uses lane 0 only (s = 0 keeps the unused reads in bounds).
      let t = (lid.y + r) + j * (TILE + 1u);
      let s = (TILE + 1u) * (W / 4u);
      y[(plane + c * p.a + a) / W] = V(pack(tile[t], tile[t + s], tile[t + 2u * s], tile[t + 3u * s]));
    }
  }
}
