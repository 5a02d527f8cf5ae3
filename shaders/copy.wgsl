// Strided block copy: element i of `n` goes from src[so + b*ss + j] to dst[do + b*ds + j] with b = i / blk,
// j = i % blk (all counted in storage units V). Serves concat along dim 1 and row gathers.
// V (a const alias from pipeline/ops/layout.ts, copyUnit): the widest word, vec4u / vec2u / u32, that every count and
// offset fills whole, else the element type T. A copy moves bits, so the unit need not be the element type: f16 data
// moves 16 bytes an invocation like f32 (a scalar f16 is a 2-byte access, which GPUs stream far below their
// bandwidth). Bit-exact either way.
struct Params { n: u32, blk: u32, ss: u32, ds: u32, so: u32, dst_off: u32, row: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let b = i / p.blk;
  let j = i - b * p.blk;
  y[p.dst_off + b * p.ds + j] = x[p.so + b * p.ss + j];
}
