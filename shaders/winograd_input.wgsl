// Winograd F(2x2, 3x3) input transform (pipeline/ops/winograd.ts): V = B^T d B for the 4x4 input patch d of every
// 2x2 output tile and input channel, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] (only adds).
// A pass covers tile rows [ty0, ty0 + TH) of its images (all rows, or a band of one image's when its scratch is too
// big). Output tile (ty0 + ty, tx) of image b reads x[b, ci, 2 (ty0 + ty) - padT + 0..3, 2 tx - padL + 0..3] (zero
// outside the image) and writes v[xi][ci][q], q = (b * TH + ty) * TW + tx, for xi = 4 i + j: the B operand of the
// batched GEMM (shaders/winograd_gemm.wgsl), in its multiply type V: f32 (no rounding in f16 runs on f32 math), or
// f16 under F16MATH, where the GEMM would round it to f16 in shared memory anyway (the same bits, half the bytes).
// Columns q >= images * TH * TW (up to P, the GEMM's N rounded to 4) are written as zeros. One thread per (ci, q):
// n = Cin * P.
struct Params {
  n: u32, P: u32, Cin: u32, H: u32, W: u32, TH: u32, TW: u32, tiles: u32, ty0: u32, padT: i32, padL: i32, row: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> v: array<V>;

// Row iy of the patch: the four inputs at columns ix..ix+3 (zero outside the image).
fn at(o: u32, c: i32) -> f32 {
  if (c < 0 || c >= i32(p.W)) { return 0.0; }
  return f32(x[o + u32(c)]);
}

fn row(base: u32, iy: i32, ix: i32) -> vec4<f32> {
  if (iy < 0 || iy >= i32(p.H)) { return vec4<f32>(0.0); }
  let o = base + u32(iy) * p.W;
  return vec4<f32>(at(o, ix), at(o, ix + 1), at(o, ix + 2), at(o, ix + 3));
}

// B^T times a 4-vector (one column or row).
fn bt(d: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(d.x - d.z, d.y + d.z, d.z - d.y, d.y - d.w);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  let ci = i / p.P;
  let q = i % p.P;
  var t0 = vec4<f32>(0.0);
  var t1 = vec4<f32>(0.0);
  var t2 = vec4<f32>(0.0);
  var t3 = vec4<f32>(0.0);
  if (q < p.tiles) {
    let tw = q % p.TW;
    let th = (q / p.TW) % p.TH;
    let b = q / (p.TW * p.TH);
    let base = (b * p.Cin + ci) * p.H * p.W;
    let iy = i32(2u * (p.ty0 + th)) - p.padT;
    let ix = i32(2u * tw) - p.padL;
    let d0 = row(base, iy, ix);
    let d1 = row(base, iy + 1, ix);
    let d2 = row(base, iy + 2, ix);
    let d3 = row(base, iy + 3, ix);
    // B^T d: row combinations; then (B^T d) B: the same on each row.
    t0 = bt(d0 - d2);
    t1 = bt(d1 + d2);
    t2 = bt(d2 - d1);
    t3 = bt(d1 - d3);
  }
  let s = p.Cin * p.P; // one xi plane
  let o = ci * p.P + q;
  v[o] = V(t0.x);
  v[o + s] = V(t0.y);
  v[o + 2u * s] = V(t0.z);
  v[o + 3u * s] = V(t0.w);
  v[o + 4u * s] = V(t1.x);
  v[o + 5u * s] = V(t1.y);
  v[o + 6u * s] = V(t1.z);
  v[o + 7u * s] = V(t1.w);
  v[o + 8u * s] = V(t2.x);
  v[o + 9u * s] = V(t2.y);
  v[o + 10u * s] = V(t2.z);
  v[o + 11u * s] = V(t2.w);
  v[o + 12u * s] = V(t3.x);
  v[o + 13u * s] = V(t3.y);
  v[o + 14u * s] = V(t3.z);
  v[o + 15u * s] = V(t3.w);
}
