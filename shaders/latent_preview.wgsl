// Latents [F, 4, h, w] -> one strip of F small images side by side, RGBA8 packed one u32 per pixel (R in the low
// byte): each output pixel box-averages the latent pixels it covers and maps them to RGB with Stable Diffusion
// 1.x's linear latent-to-RGB approximation (A1111's "cheap" preview), (rgb + 1) / 2 clamped. No VAE pass.
struct Params { frames: u32, h: u32, w: u32, ph: u32, pw: u32, row: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

// Rows: latent channels 0..3; columns: R, G, B.
const M = mat4x3<f32>(
  vec3<f32>(0.298, 0.207, 0.208),
  vec3<f32>(0.187, 0.286, 0.173),
  vec3<f32>(-0.158, 0.189, 0.264),
  vec3<f32>(-0.184, -0.271, -0.473),
);

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.row;
  let stripW = p.frames * p.pw;
  if (i >= stripW * p.ph) { return; }
  let py = i / stripW;
  let sx = i % stripW;
  let f = sx / p.pw;
  let px = sx % p.pw;
  // Source box [y0, y1) x [x0, x1): at least one latent pixel.
  let y0 = py * p.h / p.ph;
  let y1 = max(y0 + 1u, (py + 1u) * p.h / p.ph);
  let x0 = px * p.w / p.pw;
  let x1 = max(x0 + 1u, (px + 1u) * p.w / p.pw);
  let plane = p.h * p.w;
  let base = f * 4u * plane;
  var lat = vec4<f32>(0.0);
  for (var yy = y0; yy < y1; yy++) {
    for (var xx = x0; xx < x1; xx++) {
      let o = base + yy * p.w + xx;
      lat += vec4<f32>(f32(x[o]), f32(x[o + plane]), f32(x[o + 2u * plane]), f32(x[o + 3u * plane]));
    }
  }
  lat /= f32((y1 - y0) * (x1 - x0));
  let rgb = clamp((M * lat + 1.0) * 0.5, vec3<f32>(0.0), vec3<f32>(1.0));
  let b = vec3<u32>(round(rgb * 255.0));
  y[i] = b.x | (b.y << 8u) | (b.z << 16u) | (255u << 24u);
}
