import { latentPreview, previewSize } from "../../pipeline/ops/preview.ts";
import { DTYPES, quantize, randn, up } from "../util.ts";
import type { OpCase, PerfCase } from "./types.ts";

// A1111's cheap latent -> RGB factors (rows: latent channels; columns: R, G, B).
const FACTORS = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];

/** Strip of F frames of pw x ph, box-averaged, as RGBA bytes. */
function reference(x: Float32Array, F: number, h: number, w: number, pw: number, ph: number): Uint8Array {
  const out = new Uint8Array(F * pw * ph * 4);
  for (let py = 0; py < ph; py++) {
    for (let sx = 0; sx < F * pw; sx++) {
      const f = Math.floor(sx / pw), px = sx % pw;
      const y0 = Math.floor(py * h / ph), y1 = Math.max(y0 + 1, Math.floor((py + 1) * h / ph));
      const x0 = Math.floor(px * w / pw), x1 = Math.max(x0 + 1, Math.floor((px + 1) * w / pw));
      const lat = [0, 0, 0, 0];
      for (let yy = y0; yy < y1; yy++) {
        for (let xx = x0; xx < x1; xx++) {
          for (let c = 0; c < 4; c++) lat[c] += x[((f * 4 + c) * h + yy) * w + xx];
        }
      }
      const o = (py * F * pw + sx) * 4;
      for (let k = 0; k < 3; k++) {
        let v = 0;
        for (let c = 0; c < 4; c++) v += FACTORS[c][k] * lat[c] / ((y1 - y0) * (x1 - x0));
        out[o + k] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
      }
      out[o + 3] = 255;
    }
  }
  return out;
}

export const cases: OpCase[] = [];
// [F, h, w, pw, ph]: latent-sized frames, odd sizes shrunk (uneven boxes), one frame, a strip wider than 768.
const SHAPES = [[3, 8, 8, 8, 8], [2, 13, 11, 5, 6], [1, 64, 64, 64, 64], [16, 64, 96]];
for (const dtype of DTYPES) {
  for (const [F, h, w, pw0, ph0] of SHAPES) {
    const { width: pw, height: ph } = pw0 ? { width: pw0, height: ph0 } : previewSize(F, h, w, 768);
    cases.push({
      op: "latent_preview",
      shape: `latents=[${F},4,${h},${w}] frame=${pw}x${ph}`,
      dtype,
      // One 8-bit level: f32 vs float64 rounding at .5 boundaries.
      tol: { maxAbs: 1 },
      async run(dev) {
        const x = quantize(randn(F * 4 * h * w, F * h + w, 1.2), dtype);
        const t = up(dev, x, [F, 4, h, w], dtype);
        const s = latentPreview(t, { width: pw, height: ph });
        if (s.rgba.shape.join() !== [ph, F * pw].join()) throw new Error(`strip shape [${s.rgba.shape}]`);
        const got = new Uint8Array(await dev.read(s.rgba.binding()));
        t.release(), s.rgba.release();
        return { got, want: reference(x, F, h, w, pw, ph) };
      },
    });
  }
}

export const perf: PerfCase[] = [{
  op: "latent_preview",
  shape: "16x4x64x64 -> 768 wide",
  flops: 0,
  bytes: 16 * 4 * 64 * 64 * 4,
  setup(dev, dtype) {
    const x = up(dev, randn(16 * 4 * 64 * 64, 3), [16, 4, 64, 64], dtype);
    return () => latentPreview(x).rgba.release();
  },
}];
