// GroupNorm pass 1 (groups too large for one workgroup): statistics of one chunk of one (n, group), written as
// (count, mean, M2) for pass 2. A group is contiguous in NCHW. range_stats comes from groupnorm_reduce.wgsl.
// Needs (from pipeline/ops/vec.ts) V, VF, W, hsum, lane0.
struct Params { units: u32, chunk: u32, chunks: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>; // (count, mean, M2, -) per chunk

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let k = wid.x;
  let ng = wid.y;
  let base = ng * p.units;
  let lo = k * p.chunk;
  let s = range_stats(base, lo, min(lo + p.chunk, p.units), lane0(VF(x[base])), t);
  if (t == 0u) {
    let e = (ng * p.chunks + k) * 4u;
    part[e] = s.x;
    part[e + 1u] = s.y;
    part[e + 2u] = s.z;
  }
}
