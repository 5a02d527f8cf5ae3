// Canny step 4: one hysteresis pass. Weak pixels (1) 8-connected to an edge (2) become edges. Each workgroup loads
// a 16x16 tile plus a 1-pixel halo into workgroup memory and propagates inside it until the tile is stable, so
// one pass carries an edge across a whole tile; the host repeats passes until one changes nothing.
// flag[0] is set to 1 when this pass changed any pixel (the host clears it before the pass it checks).
struct Params { w: u32, h: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> flag: array<atomic<u32>>;

const TS: u32 = 16u;
const TW: u32 = 18u; // tile width with the halo
var<workgroup> tile: array<atomic<u32>, 324>;
var<workgroup> any_change: atomic<u32>;
var<workgroup> any_copy: u32;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let f = wid.z;
  let x0 = i32(wid.x * TS) - 1;
  let y0 = i32(wid.y * TS) - 1;
  let plane = f * p.w * p.h;
  for (var k = li; k < TW * TW; k += TS * TS) {
    let x = x0 + i32(k % TW);
    let y = y0 + i32(k / TW);
    var v = 0u;
    if (x >= 0 && y >= 0 && x < i32(p.w) && y < i32(p.h)) { v = atomicLoad(&state[plane + u32(y) * p.w + u32(x)]); }
    atomicStore(&tile[k], v);
  }
  if (li == 0u) { atomicStore(&any_change, 0u); }
  workgroupBarrier();

  let me = (lid.y + 1u) * TW + lid.x + 1u;
  let gx = wid.x * TS + lid.x;
  let gy = wid.y * TS + lid.y;
  let inside = gx < p.w && gy < p.h;
  var promoted = false;
  loop {
    if (inside && !promoted && atomicLoad(&tile[me]) == 1u) {
      var strong = false;
      for (var dy = 0u; dy < 3u; dy++) {
        for (var dx = 0u; dx < 3u; dx++) {
          strong = strong || atomicLoad(&tile[me + dy * TW + dx - TW - 1u]) == 2u;
        }
      }
      if (strong) {
        atomicStore(&tile[me], 2u);
        promoted = true;
        atomicStore(&any_change, 1u);
      }
    }
    workgroupBarrier();
    if (li == 0u) { any_copy = atomicExchange(&any_change, 0u); }
    if (workgroupUniformLoad(&any_copy) == 0u) { break; }
  }
  if (promoted) {
    atomicStore(&state[plane + gy * p.w + gx], 2u);
    atomicStore(&flag[0], 1u);
  }
}
