// Text2Video-Zero motion field and latent warp (diffusers create_motion_field_and_warp_latents). The GPU kernel
// (shaders/warp.wgsl) uses METHOD §1.3's closed form; motionGrid() rebuilds the sampling grid diffusers passes to
// grid_sample, for checks only. Flows are in pixels of a fixed 512x512 reference frame, whatever the latent size.
import warpSrc from "../../shaders/warp.wgsl" with { type: "text" };
import { GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { grid1d } from "../ops/launch.ts";

const REF = 512;
const f32 = Math.fround;

function checkIds(op: string, frameIds: number[], sx: number, sy: number): void {
  if (!frameIds.length) throw new GpuError(`${op}: frameIds is empty`);
  if (frameIds.some((id) => !Number.isInteger(id) || id < 0)) {
    throw new GpuError(`${op}: frameIds must be non-negative integers, got [${frameIds}]`);
  }
  if (!Number.isFinite(sx) || !Number.isFinite(sy)) throw new GpuError(`${op}: non-finite strength ${sx}, ${sy}`);
}

/**
 * Records out[k] = frame k of `x` ([F, C, h, w], or [1, C, h, w] to warp one latent into F frames) translated by
 * the flow (sx * frameIds[k], sy * frameIds[k]): out[c,y,x] = in[c, Y, X] with reflection padding and
 * round-half-even nearest sampling. Positive strengths move content toward -x/-y. Returns [F, C, h, w].
 */
export function warpLatents(x: Tensor, frameIds: number[], sx: number, sy: number): Tensor {
  const op = "warpLatents";
  checkIds(op, frameIds, sx, sy);
  if (x.shape.length !== 4) throw new GpuError(`${op}: x has shape [${x.shape}], expected [F, C, h, w]`);
  const [b, c, h, w] = x.shape, F = frameIds.length;
  if (b !== F && b !== 1) {
    throw new GpuError(`${op}: x has ${b} frames but ${F} frame ids were given (pass [${F}, C, h, w] or [1, C, h, w])`);
  }
  const dev = x.dev;
  const out = empty(dev, [F, c, h, w], x.dtype);
  const k = dev.kernel("warp", warpSrc, {}, x.dtype);
  const n = c * h * w;
  const { groups, row } = grid1d(n, 256);
  for (let f = 0; f < F; f++) {
    // Source offset in latent pixels (float64, then float32 in the uniform): x + (s*id - 0.5) * size/512.
    const shiftX = (sx * frameIds[f] - 0.5) * w / REF, shiftY = (sy * frameIds[f] - 0.5) * h / REF;
    const p = new Params().u(n, row, w, h, b === 1 ? 0 : f * n, f * n).f(shiftX, shiftY);
    dev.dispatch(k, p, [x.binding(), out.binding()], groups);
  }
  return out;
}

/** flow_xy[k] = (sx * id, sy * id) as the float32 values diffusers stores in its reference flow. */
export function motionFlow(frameIds: number[], sx: number, sy: number): Float32Array {
  checkIds("motionFlow", frameIds, sx, sy);
  return Float32Array.from(frameIds.flatMap((id) => [sx * id, sy * id]));
}

// torch's bilinear source indices and weights (align_corners=False) for resizing 512 -> size, in float32.
function resizeWeights(size: number): { i0: number; i1: number; l0: number; l1: number }[] {
  const scale = f32(REF / size);
  return Array.from({ length: size }, (_, i) => {
    if (size === REF) return { i0: i, i1: i, l0: 1, l1: 0 };
    const src = Math.max(f32(f32(scale * f32(i + 0.5)) - 0.5), 0);
    const i0 = Math.floor(src);
    const l1 = Math.min(Math.max(f32(src - i0), 0), 1);
    return { i0, i1: i0 + (i0 < REF - 1 ? 1 : 0), l0: f32(1 - l1), l1 };
  });
}

/**
 * The [F, h, w, 2] (x, y) sampling grid diffusers passes to grid_sample for these frames: the 512x512 map
 * ((X + flow_x)/512*2 - 1, (Y + flow_y)/512*2 - 1) bilinearly resized to h x w, in float32 as torch computes it
 * on the CPU (rows of column-interpolated values). For checks and golden outputs; warpLatents() does not need it.
 */
export function motionGrid(h: number, w: number, frameIds: number[], sx: number, sy: number): Float32Array {
  checkIds("motionGrid", frameIds, sx, sy);
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new GpuError(`motionGrid: bad latent size ${h}x${w}`);
  }
  const rows = resizeWeights(h), cols = resizeWeights(w);
  const norm = (v: number, flow: number) => f32(f32(f32(f32(v + flow) / REF) * 2) - 1);
  const out = new Float32Array(frameIds.length * h * w * 2);
  frameIds.forEach((id, f) => {
    const fx = f32(sx * id), fy = f32(sy * id);
    const chans = [(_Y: number, X: number) => norm(X, fx), (Y: number, _X: number) => norm(Y, fy)];
    for (let y = 0; y < h; y++) {
      const r = rows[y];
      for (let x = 0; x < w; x++) {
        const c = cols[x];
        chans.forEach((V, ch) => {
          const t0 = f32(f32(V(r.i0, c.i0) * c.l0) + f32(V(r.i0, c.i1) * c.l1));
          const t1 = f32(f32(V(r.i1, c.i0) * c.l0) + f32(V(r.i1, c.i1) * c.l1));
          out[((f * h + y) * w + x) * 2 + ch] = f32(f32(t0 * r.l0) + f32(t1 * r.l1));
        });
      }
    }
  });
  return out;
}
