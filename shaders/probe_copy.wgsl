// Ceiling probe for gpu-check: a plain vec4 copy, y[i] = x[i]. Bytes read plus bytes written over its time is the
// memory bandwidth an elementwise kernel can reach on this adapter.
struct Params { n: u32, row: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  y[i] = x[i];
}
