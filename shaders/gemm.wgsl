// The shared core of the tiled, register-blocked GEMM (appended to shaders/matmul.wgsl and shaders/conv2d.wgsl):
// a BM x BN output tile per workgroup, TM x TN outputs per thread (4 or 8 each), K in steps of BK through
// double-buffered shared memory (k-major, so the inner loop reads vec4s).
// Pipelining (PREFETCH): the next K-tile's global loads go into registers (fetch) before this K-tile is computed and
// into the other shared buffer (put) after it, so their latency hides behind the FMAs; without PREFETCH the next
// K-tile is stored before the FMAs (fewer live registers: what a CPU-emulated GPU prefers). One barrier per step.
// The inner product is unrolled by hand: private arrays indexed in loops are left in memory by some drivers
// (llvmpipe: 3x slower) because wgpu's loop bounding can block unrolling. The staging registers are named for the
// same reason (NA, NB of them: 1, 2 or 4). The K-tile's BK steps run UNROLL at a time (1, 2, 4, 8 or 16, per tile:
// gpu-check measures it): Naga bounds every loop with a counter held in a local variable, so a driver cannot count a
// loop's trips and no longer unrolls it itself; unrolled, a step's shared-memory reads can issue during the previous
// step's FMAs instead of stalling before them. The accumulators are module-scope (private) so that mac(), one step,
// can update them; every driver keeps them in registers.
// Math: S is the shared-memory and multiply type. S = f32: the FMAs accumulate in f32 (every f32 run; f16 runs by
// default). F16MATH (S = f16, f16 runs only): operands stay f16 in shared memory and the FMAs run on packed f16
// (twice the f32 rate on GPUs with paired f16 ALUs, half the shared-memory traffic); each K-tile's BK products sum in
// f16 and are then added to f32 accumulators, so rounding error grows with BK, not with K.
// PROBE (a diagnostic, 0 in every real run): 1 skips the K loop's global loads and shared-memory stores, so each
// step multiplies the first K-tile again (y = steps x that tile's product); 2 also drops the loop's barriers; 3 is 1
// with every thread reading thread (0, 0)'s shared-memory vec4s (one address per warp: no bank traffic beyond a
// broadcast; each thread's block becomes that thread's); 4 is 1 without shared-memory reads in the steps (each
// K-tile's first step's vec4s, read once, stand in for every step's: y = steps x k = 0's outer product). Timed beside
// the real kernel (gpu-check's kernels rows "inner loop only", "inner loop, no barriers", "... broadcast reads",
// "... no shared reads"), they split a GEMM's time into its loads, its barriers, its shared-memory bandwidth, its
// shared-memory instructions and the FMAs with the loop around them, on a GPU where nothing else can profile it.
// Split-K: workgroup g computes tile g % tiles over K slice ks = g / tiles, i.e. K in [ks * kSplit, + kSplit)
// (kSplit a multiple of BK, so a slice's K-tiles never reach into the next one; kSplit >= K: one slice). With
// several slices emit() writes this slice's partial sums and a second kernel adds them (shaders/splitk_sum.wgsl):
// a small output over a deep reduction (SD's 8x8 and 16x16 levels at batch 2) then fills a big GPU.
// Batches: wid.z is `bz`, which GEMM of a batch this workgroup computes (shaders/winograd_gemm.wgsl's 16; 0 elsewhere).
// The including kernel provides Params (with K, tilesM, tilesN, tiles, gx, mfast, kSplit), fetch_a(s, lid, k0) / fetch_b -> vec4<S> (slot s of the K-tile at k0,
// from global memory), put_a(s, lid, buf, v) / put_b (into shared buffer buf), emit(r, c, v) and prepare(lid)
// (per-thread setup after the tile is known; ks is set by then).
const MT = BM / TM; // threads along M
const NT = BN / TN; // threads along N
const WG = MT * NT;
const KV = BK / 4u; // vec4s per tile row along K
const A_LEN = BK * BM / 4u;
const B_LEN = BK * BN / 4u;
const SA = BM / 4u; // vec4s from one k to the next in As
const SB = BN / 4u; // ... in Bs

var<workgroup> As: array<vec4<S>, 2u * A_LEN>; // two buffers of [k][m / 4]
var<workgroup> Bs: array<vec4<S>, 2u * B_LEN>; // two buffers of [k][n / 4]
var<private> m0: u32;
var<private> n0: u32;
var<private> tx: u32;
var<private> ty: u32;
var<private> ks: u32;
var<private> bz: u32;
var<private> ra0: vec4<S>;
var<private> ra1: vec4<S>;
var<private> ra2: vec4<S>;
var<private> ra3: vec4<S>;
var<private> rb0: vec4<S>;
var<private> rb1: vec4<S>;
var<private> rb2: vec4<S>;
var<private> rb3: vec4<S>;
// h0..3: rows 0-3 x column group 0; h4..7: rows 4-7 (TM = 8); h8..15: the same for column group 1 (TN = 8).
// S = f32: h are the accumulators and c stay zero. F16MATH: h sum one K-tile, c the whole K.
var<private> h0: vec4<S>;
var<private> h1: vec4<S>;
var<private> h2: vec4<S>;
var<private> h3: vec4<S>;
var<private> h4: vec4<S>;
var<private> h5: vec4<S>;
var<private> h6: vec4<S>;
var<private> h7: vec4<S>;
var<private> h8: vec4<S>;
var<private> h9: vec4<S>;
var<private> h10: vec4<S>;
var<private> h11: vec4<S>;
var<private> h12: vec4<S>;
var<private> h13: vec4<S>;
var<private> h14: vec4<S>;
var<private> h15: vec4<S>;
var<private> c0: vec4<f32>;
var<private> c1: vec4<f32>;
var<private> c2: vec4<f32>;
var<private> c3: vec4<f32>;
var<private> c4: vec4<f32>;
var<private> c5: vec4<f32>;
var<private> c6: vec4<f32>;
var<private> c7: vec4<f32>;
var<private> c8: vec4<f32>;
var<private> c9: vec4<f32>;
var<private> c10: vec4<f32>;
var<private> c11: vec4<f32>;
var<private> c12: vec4<f32>;
var<private> c13: vec4<f32>;
var<private> c14: vec4<f32>;
var<private> c15: vec4<f32>;
// PROBE 4: the K-tile's first step's vec4s (qa1, qb1 with TM, TN = 8), standing in for every step's reads.
var<private> qa0: vec4<S>;
var<private> qa1: vec4<S>;
var<private> qb0: vec4<S>;
var<private> qb1: vec4<S>;

// Vec4 slots each thread stages per K-tile (slot s: element lid + s * WG of the tile's A_LEN / B_LEN vec4s).
const NA = max(A_LEN / WG, 1u);
const NB = max(B_LEN / WG, 1u);

// Slot idx of a row-major operand's K-tile (row idx / KV, K run (idx % KV) * 4) into k-major shared memory.
fn put_rows_a(buf: u32, idx: u32, v: vec4<S>) {
  let m = idx / KV;
  let a = buf * A_LEN + (idx % KV) * BM + m / 4u;
  As[a][m % 4u] = v.x;
  As[a + BM / 4u][m % 4u] = v.y;
  As[a + BM / 2u][m % 4u] = v.z;
  As[a + 3u * BM / 4u][m % 4u] = v.w;
}

fn put_rows_b(buf: u32, idx: u32, v: vec4<S>) {
  let n = idx / KV;
  let b = buf * B_LEN + (idx % KV) * BN + n / 4u;
  Bs[b][n % 4u] = v.x;
  Bs[b + BN / 4u][n % 4u] = v.y;
  Bs[b + BN / 2u][n % 4u] = v.z;
  Bs[b + 3u * BN / 4u][n % 4u] = v.w;
}

// The K-tile at k0 from global memory into this thread's staging registers.
fn fetch(lid: u32, k0: u32) {
  ra0 = fetch_a(0u, lid, k0);
  if (NA > 1u) { ra1 = fetch_a(1u, lid, k0); }
  if (NA > 2u) {
    ra2 = fetch_a(2u, lid, k0);
    ra3 = fetch_a(3u, lid, k0);
  }
  rb0 = fetch_b(0u, lid, k0);
  if (NB > 1u) { rb1 = fetch_b(1u, lid, k0); }
  if (NB > 2u) {
    rb2 = fetch_b(2u, lid, k0);
    rb3 = fetch_b(3u, lid, k0);
  }
}

// The staging registers into shared buffer buf.
fn put(lid: u32, buf: u32) {
  put_a(0u, lid, buf, ra0);
  if (NA > 1u) { put_a(1u, lid, buf, ra1); }
  if (NA > 2u) {
    put_a(2u, lid, buf, ra2);
    put_a(3u, lid, buf, ra3);
  }
  put_b(0u, lid, buf, rb0);
  if (NB > 1u) { put_b(1u, lid, buf, rb1); }
  if (NB > 2u) {
    put_b(2u, lid, buf, rb2);
    put_b(3u, lid, buf, rb3);
  }
}

// Shared-memory reads of the steps: As[i] / Bs[i] (`second`: the thread's second vec4, TM or TN = 8), or PROBE 4's
// registers.
fn read_a(i: u32, second: bool) -> vec4<S> {
  if (PROBE == 4u) { return select(qa0, qa1, second); }
  return As[i];
}

fn read_b(i: u32, second: bool) -> vec4<S> {
  if (PROBE == 4u) { return select(qb0, qb1, second); }
  return Bs[i];
}

// One step k of the inner product: this thread's TM x TN block += its TM values of A's column k x its TN values of
// B's row k (ia, ib: their first vec4s in As, Bs).
fn mac(ia: u32, ib: u32) {
  let a0 = read_a(ia, false);
  let b0 = read_b(ib, false);
  h0 = fma(vec4<S>(a0.x), b0, h0);
  h1 = fma(vec4<S>(a0.y), b0, h1);
  h2 = fma(vec4<S>(a0.z), b0, h2);
  h3 = fma(vec4<S>(a0.w), b0, h3);
  if (TM > 4u) {
    let a1 = read_a(ia + MT, true);
    h4 = fma(vec4<S>(a1.x), b0, h4);
    h5 = fma(vec4<S>(a1.y), b0, h5);
    h6 = fma(vec4<S>(a1.z), b0, h6);
    h7 = fma(vec4<S>(a1.w), b0, h7);
    if (TN > 4u) {
      let b1 = read_b(ib + NT, true);
      h12 = fma(vec4<S>(a1.x), b1, h12);
      h13 = fma(vec4<S>(a1.y), b1, h13);
      h14 = fma(vec4<S>(a1.z), b1, h14);
      h15 = fma(vec4<S>(a1.w), b1, h15);
    }
  }
  if (TN > 4u) {
    let b1 = read_b(ib + NT, true);
    h8 = fma(vec4<S>(a0.x), b1, h8);
    h9 = fma(vec4<S>(a0.y), b1, h9);
    h10 = fma(vec4<S>(a0.z), b1, h10);
    h11 = fma(vec4<S>(a0.w), b1, h11);
  }
}

// Four steps from (ia, ib).
fn mac4(ia: u32, ib: u32) {
  mac(ia, ib);
  mac(ia + SA, ib + SB);
  mac(ia + 2u * SA, ib + 2u * SB);
  mac(ia + 3u * SA, ib + 3u * SB);
}

// F16MATH: one K-tile's f16 sum into the f32 accumulator.
fn flush(c: ptr<private, vec4<f32>>, h: ptr<private, vec4<S>>) {
  *c += vec4<f32>(*h);
  *h = vec4<S>(0.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * p.gx;
  bz = wid.z;
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

  let nk = (min(p.K - kb, p.kSplit) + BK - 1u) / BK;
  fetch(lid, kb);
  put(lid, 0u);
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
    let cur = select(t % 2u, 0u, PROBE != 0u);
    let more = t + 1u < nk && PROBE == 0u;
    if (more) {
      fetch(lid, kb + (t + 1u) * BK);
      if (!PREFETCH) { put(lid, 1u - cur); }
    }
    let ab = cur * A_LEN + select(ty, 0u, PROBE == 3u);
    let bb = cur * B_LEN + select(tx, 0u, PROBE == 3u);
    if (PROBE == 4u) {
      qa0 = As[ab];
      qb0 = Bs[bb];
      if (TM > 4u) { qa1 = As[ab + MT]; }
      if (TN > 4u) { qb1 = Bs[bb + NT]; }
    }
    for (var k = 0u; k < BK; k += UNROLL) {
      let ia = ab + k * SA;
      let ib = bb + k * SB;
      if (UNROLL < 4u) {
        mac(ia, ib);
        if (UNROLL > 1u) { mac(ia + SA, ib + SB); }
      } else {
        mac4(ia, ib);
      }
      if (UNROLL > 4u) { mac4(ia + 4u * SA, ib + 4u * SB); }
      if (UNROLL > 8u) {
        mac4(ia + 8u * SA, ib + 8u * SB);
        mac4(ia + 12u * SA, ib + 12u * SB);
      }
    }
    if (F16MATH) {
      flush(&c0, &h0);
      flush(&c1, &h1);
      flush(&c2, &h2);
      flush(&c3, &h3);
      if (TM > 4u) {
        flush(&c4, &h4);
        flush(&c5, &h5);
        flush(&c6, &h6);
        flush(&c7, &h7);
      }
      if (TN > 4u) {
        flush(&c8, &h8);
        flush(&c9, &h9);
        flush(&c10, &h10);
        flush(&c11, &h11);
        if (TM > 4u) {
          flush(&c12, &h12);
          flush(&c13, &h13);
          flush(&c14, &h14);
          flush(&c15, &h15);
        }
      }
    }
    if (PREFETCH && more) { put(lid, 1u - cur); }
    if (PROBE != 2u) { workgroupBarrier(); }
  }

  // c + h: the f32 sums (F16MATH; h is zero by now) or the accumulators (S = f32; c is zero).
  emit(0u, 0u, c0 + vec4<f32>(h0));
  emit(1u, 0u, c1 + vec4<f32>(h1));
  emit(2u, 0u, c2 + vec4<f32>(h2));
  emit(3u, 0u, c3 + vec4<f32>(h3));
  if (TM > 4u) {
    emit(4u, 0u, c4 + vec4<f32>(h4));
    emit(5u, 0u, c5 + vec4<f32>(h5));
    emit(6u, 0u, c6 + vec4<f32>(h6));
    emit(7u, 0u, c7 + vec4<f32>(h7));
  }
  if (TN > 4u) {
    emit(0u, 1u, c8 + vec4<f32>(h8));
    emit(1u, 1u, c9 + vec4<f32>(h9));
    emit(2u, 1u, c10 + vec4<f32>(h10));
    emit(3u, 1u, c11 + vec4<f32>(h11));
    if (TM > 4u) {
      emit(4u, 1u, c12 + vec4<f32>(h12));
      emit(5u, 1u, c13 + vec4<f32>(h13));
      emit(6u, 1u, c14 + vec4<f32>(h14));
      emit(7u, 1u, c15 + vec4<f32>(h15));
    }
  }
}
