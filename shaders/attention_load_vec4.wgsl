// Attention's bindings as vec4s of T (prepended to the kernels with shaders/attention_io.wgsl, instead of
// shaders/attention_load.wgsl): where the head dim, the row strides and the column offsets of q, k, v and o are all
// multiples of 4 (SD's heads: D = 40, 80, 160 of 320-1280 channels), four head elements are one aligned vec4, so each
// load and store is one vector access instead of four scalar ones (in f16 four 2-byte accesses, which run the kernel
// at about 0.6x its f32 speed on NVIDIA). Same contract as attention_load.wgsl: columns past D read as zero and are
// not written.
@group(0) @binding(1) var<storage, read> q: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<T>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<T>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<T>>;

// Four head elements of row `row` (a multiple of 4) starting at column `col` (a multiple of 4), zero past D.
fn ld_q(row: u32, col: u32) -> vec4f {
  if (col >= D) { return vec4f(0.0); }
  return vec4f(q[(row + col) >> 2u]);
}

fn ld_k(row: u32, col: u32) -> vec4f {
  if (col >= D) { return vec4f(0.0); }
  return vec4f(k[(row + col) >> 2u]);
}

fn ld_v(row: u32, col: u32) -> vec4f {
  if (col >= D) { return vec4f(0.0); }
  return vec4f(v[(row + col) >> 2u]);
}

// Four elements (from column col) of the output row starting at `at`, scaled by inv; nothing past D.
fn store(at: u32, col: u32, x: vec4f, inv: f32) {
  if (col >= D) { return; }
  o[(at + col) >> 2u] = vec4<T>(x * inv);
}
