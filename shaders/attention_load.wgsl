// Attention's bindings as scalars of T, and four head elements at a time loaded as f32 and stored from f32 (prepended
// to the kernels with shaders/attention_io.wgsl): any head dim, strides and column offsets. Where all of them are
// multiples of 4, shaders/attention_load_vec4.wgsl does the same with one vec4 access each.
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

// Element i of q (0), k (1) or v (2), as f32 (`which` is a constant at every call: drivers fold the switch).
fn elem(which: u32, i: u32) -> f32 {
  switch which {
    case 0u: { return f32(q[i]); }
    case 1u: { return f32(k[i]); }
    default: { return f32(v[i]); }
  }
}

// Four head elements of row `row` of q, k or v starting at column `col`, zero past D.
fn ld4(which: u32, row: u32, col: u32) -> vec4f {
  var x = vec4f(0.0);
  let at = row + col;
  if (D % 4u == 0u) {
    if (col < D) { x = vec4f(elem(which, at), elem(which, at + 1u), elem(which, at + 2u), elem(which, at + 3u)); }
  } else {
    if (col < D) { x.x = elem(which, at); }
    if (col + 1u < D) { x.y = elem(which, at + 1u); }
    if (col + 2u < D) { x.z = elem(which, at + 2u); }
    if (col + 3u < D) { x.w = elem(which, at + 3u); }
  }
  return x;
}

fn ld_q(row: u32, col: u32) -> vec4f {
  return ld4(0u, row, col);
}

fn ld_k(row: u32, col: u32) -> vec4f {
  return ld4(1u, row, col);
}

fn ld_v(row: u32, col: u32) -> vec4f {
  return ld4(2u, row, col);
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
