// The banded VAE decode (pipeline/models/vae_bands.ts): the same frames as the whole decode, whatever the band
// size (one row per band up to the whole frame), in f32 and f16, and a GPU peak bounded by the band size.
import { assert } from "../fixtures/asserts.ts";
import { upload, withTensorScope } from "../pipeline/gpu/tensor.ts";
import { loadDemoSD } from "../pipeline/models/demo.ts";
import { decodeInBands, encodeInBands } from "../pipeline/models/vae_bands.ts";
import { vaeBands } from "../pipeline/job/plan.ts";
import { assertClose, DTYPES, gpuTest, randn } from "./util.ts";

for (const dtype of DTYPES) {
  gpuTest(`vae bands: the banded decode equals the whole decode (${dtype})`, async (dev) => {
    const sd = await loadDemoSD(dev, "sd", dtype);
    try {
      // 15x12 latents: an odd height (a last band shorter than the rest), a frame of 120x96 pixels.
      const [h, w] = [15, 12];
      await withTensorScope(dev, async () => {
        const lat = upload(dev, randn(4 * h * w, 11), [1, 4, h, w], dtype);
        await dev.sync();
        let base = dev.pool.inUse;
        dev.pool.peakInUse = base;
        const whole = await sd.vae.decode(lat).read();
        const wholePeak = dev.pool.peakInUse - base;
        const C = Math.max(...sd.vae.cfg.block_out_channels), eb = dtype === "f32" ? 4 : 2;
        const b = vaeBands(sd.vae.cfg, h, w);
        // Bands of 1-2 rows at the widest level, and about half the frame.
        for (const rows of [5, 40]) {
          const bandBytes = rows * C * 8 * w * eb;
          await dev.sync();
          base = dev.pool.inUse;
          dev.pool.peakInUse = base;
          const t0 = performance.now();
          const banded = await decodeInBands(sd.vae, lat, bandBytes);
          const got = await banded.read();
          banded.release();
          const peak = dev.pool.peakInUse - base;
          // f32: float rounding (statistics summed in another order); f16: one-ulp flips of intermediate maps.
          const tol = dtype === "f32" ? { maxAbs: 1e-5, relL2: 2e-6 } : { maxAbs: 1e-2, relL2: 2e-3 };
          const d = assertClose(got, whole, tol, `${dtype} bands of ~${rows} rows`);
          console.log(
            `${dtype} ~${rows} rows: maxAbs ${d.maxAbs.toExponential(2)} relL2 ${d.relL2.toExponential(2)}, ` +
              `GPU peak ${peak} bytes (whole decode ${wholePeak}), ${(performance.now() - t0).toFixed(0)} ms`,
          );
          // What the planner reserves for a banded decode (pipeline/job/plan.ts) bounds what it holds.
          const reserved = 1.25 * (4 * b.frame + Math.max(eb * b.start, 5 * bandBytes));
          assert(peak <= reserved, `bands of ${bandBytes} bytes held ${peak}, planned ${reserved}`);
          if (rows === 5) assert(peak < wholePeak / 2, `small bands held ${peak}, the whole decode ${wholePeak}`);
        }
      });
    } finally {
      sd.dispose();
    }
  });
}

for (const dtype of DTYPES) {
  gpuTest(`vae bands: the banded encode equals the whole encode (${dtype})`, async (dev) => {
    const sd = await loadDemoSD(dev, "pix2pix", dtype);
    try {
      // 120x104 pixels: rows of the stride-2 downsamplers' last band end on the image's padded row.
      const [H, W] = [120, 104];
      await withTensorScope(dev, async () => {
        const img = upload(dev, randn(3 * H * W, 5, 0.6), [1, 3, H, W], dtype);
        const whole = sd.vae.encode(img);
        const [mean, logvar] = [await whole.mean.read(), await whole.logvar.read()];
        const C = Math.max(...sd.vae.cfg.block_out_channels), eb = dtype === "f32" ? 4 : 2;
        for (const rows of [4, 50]) {
          const p = await encodeInBands(sd.vae, img, rows * C * W * eb);
          const tol = dtype === "f32" ? { maxAbs: 1e-5, relL2: 2e-6 } : { maxAbs: 1e-2, relL2: 2e-3 };
          assertClose(await p.mean.read(), mean, tol, `${dtype} mean, bands of ~${rows} rows`);
          assertClose(await p.logvar.read(), logvar, tol, `${dtype} logvar, bands of ~${rows} rows`);
          p.mean.release(), p.logvar.release(), p.std.release();
        }
      });
    } finally {
      sd.dispose();
    }
  });
}
