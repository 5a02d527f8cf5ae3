// Attention's bindings as scalars of T, and four head elements at a time loaded as f32 and stored from f32 (prepended
// to the kernels with shaders/attention_io.wgsl): any head dim, strides and column offsets. Where all of them are
// multiples of 4, shaders/attention_load_vec4.wgsl does the same with one vec4 access each.
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

// Four head elements of row `row` starting at column `col`, zero past D.
fn ld_q(row: u32, col: u32) -> vec4f {
  var x = vec4f(0.0);
  if (D % 4u == 0u) {
    if (col < D) { x = vec4f(f32(q[row + col]), f32(q[row + col + 1u]), f32(q[row + col + 2u]), f32(q[row + col + 3u])); }
  } else {
    if (col < D) { x.x = f32(q[row + col]); }
    if (col + 1u < D) { x.y = f32(q[row + col + 1u]); }
    if (col + 2u < D) { x.z = f32(q[row + col + 2u]); }
    if (col + 3u < D) { x.w = f32(q[row + col + 3u]); }
  }
  return x;
}

fn ld_k(row: u32, col: u32) -> vec4f {
  var x = vec4f(0.0);
  if (D % 4u == 0u) {
    if (col < D) { x = vec4f(f32(k[row + col]), f32(k[row + col + 1u]), f32(k[row + col + 2u]), f32(k[row + col + 3u])); }
  } else {
    if (col < D) { x.x = f32(k[row + col]); }
    if (col + 1u < D) { x.y = f32(k[row + col + 1u]); }
    if (col + 2u < D) { x.z = f32(k[row + col + 2u]); }
    if (col + 3u < D) { x.w = f32(k[row + col + 3u]); }
  }
  return x;
}

fn ld_v(row: u32, col: u32) -> vec4f {
  var x = vec4f(0.0);
  if (D % 4u == 0u) {
    if (col < D) { x = vec4f(f32(v[row + col]), f32(v[row + col + 1u]), f32(v[row + col + 2u]), f32(v[row + col + 3u])); }
  } else {
    if (col < D) { x.x = f32(v[row + col]); }
    if (col + 1u < D) { x.y = f32(v[row + col + 1u]); }
    if (col + 2u < D) { x.z = f32(v[row + col + 2u]); }
    if (col + 3u < D) { x.w = f32(v[row + col + 3u]); }
  }
  return x;
}

// Four elements (from column col) of the output row starting at `at`, scaled by inv; nothing past D.
fn store(at: u32, col: u32, x: vec4f, inv: f32) {
  if (col >= D) { return; }
  let y = x * inv;
  o[at + col] = T(y.x);
  if (D % 4u == 0u || col + 1u < D) { o[at + col + 1u] = T(y.y); }
  if (D % 4u == 0u || col + 2u < D) { o[at + col + 2u] = T(y.z); }
  if (D % 4u == 0u || col + 3u < D) { o[at + col + 3u] = T(y.w); }
}
