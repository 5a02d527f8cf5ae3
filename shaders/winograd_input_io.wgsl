// What the Winograd input transforms share (prepended to shaders/winograd_input.wgsl, F(2x2, 3x3), and
// shaders/winograd4_input.wgsl, F(4x4, 3x3); pipeline/ops/winograd.ts): Params, bindings, and where a tile's patch
// lies. A pass covers tile rows [ty0, ty0 + TH) of its images (all rows, or a band of one image's when its scratch is
// too big); tile q = (b * TH + ty) * TW + tx has TILE x TILE outputs (TILE: a const, 2 or 4) and reads the
// (TILE + 2)-square patch of x[b, ci] from row TILE (ty0 + ty) - padT, column TILE tx - padL (zero outside the image).
// v[xi][ci][q] (bound by the transform) is the B operand of the batched GEMM (shaders/winograd_gemm.wgsl), in its
// multiply type V: f32 (no rounding in f16 runs on f32 math), or f16 under F16MATH, where the GEMM would round it to
// f16 in shared memory anyway (the same bits, half the bytes). Columns q >= images * TH * TW (up to P, the GEMM's N
// rounded to 4) are written as zeros.
struct Params {
  n: u32, P: u32, Cin: u32, H: u32, W: u32, TH: u32, TW: u32, tiles: u32, ty0: u32, padT: i32, padL: i32, row: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;

fn at(o: u32, c: i32) -> f32 {
  if (c < 0 || c >= i32(p.W)) { return 0.0; }
  return f32(x[o + u32(c)]);
}

// Four inputs of row iy from column ix (zero outside the image); base: the channel plane's first element.
fn quad(base: u32, iy: i32, ix: i32) -> vec4<f32> {
  if (iy < 0 || iy >= i32(p.H)) { return vec4<f32>(0.0); }
  let o = base + u32(iy) * p.W;
  return vec4<f32>(at(o, ix), at(o, ix + 1), at(o, ix + 2), at(o, ix + 3));
}

// Tile q's patch in channel ci: the plane's first element and the patch's top-left row and column.
struct Patch { base: u32, iy: i32, ix: i32 }

fn patch_of(ci: u32, q: u32) -> Patch {
  let tx = q % p.TW;
  let ty = (q / p.TW) % p.TH;
  let b = q / (p.TW * p.TH);
  return Patch((b * p.Cin + ci) * p.H * p.W, i32(TILE * (p.ty0 + ty)) - p.padT, i32(TILE * tx) - p.padL);
}
