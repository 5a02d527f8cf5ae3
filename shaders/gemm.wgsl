// The shared core of the tiled, register-blocked GEMM (appended to shaders/matmul.wgsl and shaders/conv2d.wgsl):
// a BM x BN output tile per workgroup, TM x TN outputs per thread (4 or 8 each), K in steps of BK through
// double-buffered shared memory (k-major, so the inner loop reads vec4s): the next K-tile is loaded while this one
// is computed, one barrier per step. The inner product is unrolled by hand: private arrays indexed in loops are
// left in memory by some drivers (llvmpipe: 3x slower) because wgpu's loop bounding can block unrolling.
// Split-K: workgroup g computes tile g % tiles over K slice ks = g / tiles, i.e. K in [ks * kSplit, + kSplit)
// (kSplit a multiple of BK, so a slice's K-tiles never reach into the next one; kSplit >= K: one slice). With
// several slices emit() writes this slice's partial sums and a second kernel adds them (shaders/splitk_sum.wgsl):
// a small output over a deep reduction (SD's 8x8 and 16x16 levels at batch 2) then fills a big GPU.
// The including kernel provides Params (with K, tilesM, tilesN, tiles, gx, mfast, kSplit), load_tile(lid, buf, k0),
// emit(r, c, v) and prepare(lid) (per-thread setup after the tile is known; ks is set by then).
const MT = BM / TM; // threads along M
const NT = BN / TN; // threads along N
const WG = MT * NT;
const KV = BK / 4u; // vec4s per tile row along K
const A_LEN = BK * BM / 4u;
const B_LEN = BK * BN / 4u;

var<workgroup> As: array<vec4<f32>, 2u * A_LEN>; // two buffers of [k][m / 4]
var<workgroup> Bs: array<vec4<f32>, 2u * B_LEN>; // two buffers of [k][n / 4]
var<private> m0: u32;
var<private> n0: u32;
var<private> tx: u32;
var<private> ty: u32;
var<private> ks: u32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * p.gx;
  let tile = g % p.tiles;
  ks = g / p.tiles;
  let kb = ks * p.kSplit; // this slice's first K
  if (kb >= p.K) { return; } // past the last slice (or the folded grid's tail)
  if (p.mfast != 0u) {
    m0 = (tile % p.tilesM) * BM;
    n0 = (tile / p.tilesM) * BN;
  } else {
    n0 = (tile % p.tilesN) * BN;
    m0 = (tile / p.tilesN) * BM;
  }
  tx = lid % NT;
  ty = lid / NT;
  prepare(lid);

  // c0..3: rows 0-3 x column group 0; c4..7: rows 4-7 (TM = 8); c8..15: the same for column group 1 (TN = 8).
  var c0 = vec4<f32>(0.0);
  var c1 = vec4<f32>(0.0);
  var c2 = vec4<f32>(0.0);
  var c3 = vec4<f32>(0.0);
  var c4 = vec4<f32>(0.0);
  var c5 = vec4<f32>(0.0);
  var c6 = vec4<f32>(0.0);
  var c7 = vec4<f32>(0.0);
  var c8 = vec4<f32>(0.0);
  var c9 = vec4<f32>(0.0);
  var c10 = vec4<f32>(0.0);
  var c11 = vec4<f32>(0.0);
  var c12 = vec4<f32>(0.0);
  var c13 = vec4<f32>(0.0);
  var c14 = vec4<f32>(0.0);
  var c15 = vec4<f32>(0.0);
  let nk = (min(p.K - kb, p.kSplit) + BK - 1u) / BK;
  load_tile(lid, 0u, kb);
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
    let cur = t % 2u;
    if (t + 1u < nk) { load_tile(lid, 1u - cur, kb + (t + 1u) * BK); }
    let ab = cur * A_LEN + ty;
    let bb = cur * B_LEN + tx;
    for (var k = 0u; k < BK; k++) {
      let a0 = As[ab + k * (BM / 4u)];
      let b0 = Bs[bb + k * (BN / 4u)];
      c0 = fma(vec4<f32>(a0.x), b0, c0);
      c1 = fma(vec4<f32>(a0.y), b0, c1);
      c2 = fma(vec4<f32>(a0.z), b0, c2);
      c3 = fma(vec4<f32>(a0.w), b0, c3);
      if (TM > 4u) {
        let a1 = As[ab + k * (BM / 4u) + MT];
        c4 = fma(vec4<f32>(a1.x), b0, c4);
        c5 = fma(vec4<f32>(a1.y), b0, c5);
        c6 = fma(vec4<f32>(a1.z), b0, c6);
        c7 = fma(vec4<f32>(a1.w), b0, c7);
        if (TN > 4u) {
          let b1 = Bs[bb + k * (BN / 4u) + NT];
          c12 = fma(vec4<f32>(a1.x), b1, c12);
          c13 = fma(vec4<f32>(a1.y), b1, c13);
          c14 = fma(vec4<f32>(a1.z), b1, c14);
          c15 = fma(vec4<f32>(a1.w), b1, c15);
        }
      }
      if (TN > 4u) {
        let b1 = Bs[bb + k * (BN / 4u) + NT];
        c8 = fma(vec4<f32>(a0.x), b1, c8);
        c9 = fma(vec4<f32>(a0.y), b1, c9);
        c10 = fma(vec4<f32>(a0.z), b1, c10);
        c11 = fma(vec4<f32>(a0.w), b1, c11);
      }
    }
    workgroupBarrier();
  }

  emit(0u, 0u, c0);
  emit(1u, 0u, c1);
  emit(2u, 0u, c2);
  emit(3u, 0u, c3);
  if (TM > 4u) {
    emit(4u, 0u, c4);
    emit(5u, 0u, c5);
    emit(6u, 0u, c6);
    emit(7u, 0u, c7);
  }
  if (TN > 4u) {
    emit(0u, 1u, c8);
    emit(1u, 1u, c9);
    emit(2u, 1u, c10);
    emit(3u, 1u, c11);
    if (TM > 4u) {
      emit(4u, 1u, c12);
      emit(5u, 1u, c13);
      emit(6u, 1u, c14);
      emit(7u, 1u, c15);
    }
  }
}
