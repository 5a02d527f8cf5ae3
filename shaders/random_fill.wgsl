// Deterministic random weights generated in place (pipeline/ops/random.ts: randomFill, and randomValues, its
// TypeScript twin). Value j of a tensor with seed s:
//   key = hash32(s), h = hash32(hash32(j ^ key) + key)   (u32, wrapping; hash32: the "lowbias32" integer hash)
//   v_j = lo + step * f32(h >> 16)                      (f32)
// Counter-based, so any range of a tensor (a row block of a stacked weight, a chunk past the binding limit) is filled
// on its own. Bit-exact with the twin whatever the driver does with the affine: h >> 16 has 16 bits (its f32 is
// exact) and the wrapper gives `step` at most 8 significant bits, so step * f32(h >> 16) is an exact f32 and the one
// rounding is the add (none at all for a zero offset, where lo = -32768 * step), the same whether or not the compiler
// fuses the multiply-add into an FMA. f16 storage rounds that f32 once, as the host's Float16Array does.
// One invocation per storage unit V: a vec4 (W = 4) when the count and the first element's index in the binding are
// multiples of 4, else a scalar (f16 scalars are distinct 2-byte stores: nothing outside the range is written).
// Params: n units in this dispatch; row (grid fold: unit i = gid.x + gid.y * row); at, the binding's unit that takes
// the range's first element; first, the counter j of that element (unit i holds j = first + i * W, ...); seed, lo,
// step. Needs (from pipeline/ops/vec.ts) V, VF, W, pack.
struct Params { n: u32, row: u32, at: u32, first: u32, seed: u32, lo: f32, step: f32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<V>;

fn hash32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn value(j: u32, key: u32) -> f32 {
  let h = hash32(hash32(j ^ key) + key);
  return p.lo + p.step * f32(h >> 16u);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let key = hash32(p.seed);
  let j = p.first + i * W;
  if (W == 4u) {
    y[p.at + i] = V(pack(value(j, key), value(j + 1u, key), value(j + 2u, key), value(j + 3u, key)));
  } else {
    y[p.at + i] = V(pack(value(j, key), 0.0, 0.0, 0.0));
  }
}
