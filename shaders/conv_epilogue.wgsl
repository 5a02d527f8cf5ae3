// conv2d's epilogue, shared by conv2d.wgsl, conv2d_direct.wgsl and splitk_sum.wgsl (appended by pipeline/ops/conv2d.ts):
// the sum o of output channel co of image img, element e of y, plus what p.flags asks for, in this order:
// 1 = bias[co], 8 = the per-image bias eb[ebOff + img * ebStride + co] (a resnet's time-embedding projection),
// 2 = res[e], 4 = y's old value (in-place residual). The including kernel binds bias, eb, res and y.
fn epilogue(o: f32, co: u32, img: u32, e: u32) -> f32 {
  var v = o;
  if ((p.flags & 1u) != 0u) { v += f32(bias[co]); }
  if ((p.flags & 8u) != 0u) { v += f32(eb[p.ebOff + img * p.ebStride + co]); }
  if ((p.flags & 2u) != 0u) { v += f32(res[e]); }
  if ((p.flags & 4u) != 0u) { v += f32(y[e]); }
  return v;
}
