// conv2d for small outputs: one thread per output element, summing over input channels and only the kernel taps
// inside the image (no shared memory, no barriers). At a few pixels per image (the UNet's 1x1-4x4 levels) the tiled
// implicit GEMM (conv2d.wgsl) spends its time on padding taps, empty tile rows and barriers; this does none.
// Consts: KH, KW, COFAST (neighbouring threads take neighbouring output channels of one pixel, for outputs with
// fewer pixels than channels; else neighbouring pixels of one channel).
// p.flags: as conv2d.wgsl (shaders/conv_epilogue.wgsl).
struct Params {
  Cout: u32, Cin: u32, H: u32, W: u32, Wo: u32, HWo: u32, npix: u32, n: u32,
  padT: i32, padL: i32, stride: u32, flags: u32, ebOff: u32, ebStride: u32, row: u32, pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> res: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;
@group(0) @binding(6) var<storage, read> eb: array<T>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  if (i >= p.n) { return; }
  var co: u32;
  var pix: u32;
  if (COFAST) {
    co = i % p.Cout;
    pix = i / p.Cout;
  } else {
    pix = i % p.npix;
    co = i / p.npix;
  }
  let img = pix / p.HWo;
  let q = pix % p.HWo;
  let iy0 = i32((q / p.Wo) * p.stride) - p.padT;
  let ix0 = i32((q % p.Wo) * p.stride) - p.padL;
  // The taps inside the image.
  let ky0 = u32(max(-iy0, 0));
  let ky1 = u32(clamp(i32(p.H) - iy0, 0, i32(KH)));
  let kx0 = u32(max(-ix0, 0));
  let kx1 = u32(clamp(i32(p.W) - ix0, 0, i32(KW)));
  var acc = 0.0;
  for (var ci = 0u; ci < p.Cin; ci++) {
    let xb = ((img * p.Cin + ci) * p.H) * p.W;
    let wb = (co * p.Cin + ci) * KH * KW;
    for (var ky = ky0; ky < ky1; ky++) {
      let xr = xb + u32(iy0 + i32(ky)) * p.W;
      for (var kx = kx0; kx < kx1; kx++) {
        acc = fma(f32(x[xr + u32(ix0 + i32(kx))]), f32(w[wb + ky * KW + kx]), acc);
      }
    }
  }
  let e = (img * p.Cout + co) * p.HWo + q;
  y[e] = T(epilogue(acc, co, img, e));
}
