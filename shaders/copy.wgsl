// Strided block copy: element i of `n` goes from src[so + b*ss + j] to dst[do + b*ds + j] with b = i / blk,
// j = i % blk (all counted in storage units V). Serves concat along dim 1 and row gathers.
// Needs (from pipeline/ops/vec.ts) V.
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
