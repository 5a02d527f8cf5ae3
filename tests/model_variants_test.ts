// Config knobs the visible goldens do not cover (SD 2.x style linear projections, per-block head lists,
// non-square latents that do not divide by the downsampling factor), checked by equivalences that must hold
// exactly in the math: the same weights expressed through another knob give the same outputs.
import { upload } from "../pipeline/gpu/tensor.ts";
import type { TensorSource } from "../pipeline/models/layers.ts";
import { UNet, type UNetConfig } from "../pipeline/models/unet.ts";
import { loadComponent } from "../pipeline/weights/diffusers.ts";
import { assertClose, gpuTest, randn } from "./util.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";

const TINY = GOLDEN_MODELS + "/tiny-sd";

async function tinyUnet() {
  const c = await loadComponent(TINY, "unet");
  return { cfg: c.config as unknown as UNetConfig, src: c.weights };
}

/** proj_in/proj_out 1x1 conv weights [C, C, 1, 1] presented as Linear weights [C, C]. */
function asLinearProjection(src: TensorSource): TensorSource {
  const isProj = (n: string) => /\.proj_(in|out)\.weight$/.test(n);
  return {
    has: (n) => src.has(n),
    shape: (n) => isProj(n) ? src.shape(n).slice(0, 2) : src.shape(n),
    float32: (n) => src.float32(n),
  };
}

async function run(
  dev: Parameters<Parameters<typeof gpuTest>[1]>[0],
  cfg: UNetConfig,
  src: TensorSource,
  h: number,
  w: number,
) {
  const unet = await UNet.load(dev, src, cfg, "f32");
  try {
    const sample = upload(dev, randn(2 * 4 * h * w, 11), [2, 4, h, w], "f32");
    const context = upload(dev, randn(2 * 77 * 32, 12), [2, 77, 32], "f32");
    const y = unet.forward({ sample, timesteps: [500, 20], context });
    const out = await y.read();
    y.release(), sample.release(), context.release();
    return { out, shape: y.shape };
  } finally {
    unet.dispose();
  }
}

gpuTest("unet: use_linear_projection (SD 2.x) equals the 1x1-conv projection with the same weights", async (dev) => {
  const { cfg, src } = await tinyUnet();
  try {
    const conv = await run(dev, cfg, src, 8, 8);
    const lin = await run(dev, { ...cfg, use_linear_projection: true }, asLinearProjection(src), 8, 8);
    assertClose(lin.out, conv.out, { maxAbs: 1e-5, relL2: 1e-6 }, "linear vs conv projection");
  } finally {
    src.close();
  }
});

gpuTest("unet: attention_head_dim as a per-block list equals the scalar", async (dev) => {
  const { cfg, src } = await tinyUnet();
  try {
    const scalar = await run(dev, cfg, src, 8, 8);
    const heads = cfg.attention_head_dim as number;
    const list = await run(dev, { ...cfg, attention_head_dim: [heads, heads, heads, heads] }, src, 8, 8);
    assertClose(list.out, scalar.out, { maxAbs: 0 }, "list vs scalar heads");
    // Different head counts per block must change the result (the list is really used).
    const mixed = await run(dev, { ...cfg, attention_head_dim: [2, 4, heads, heads] }, src, 8, 8);
    let d = 0;
    for (let i = 0; i < mixed.out.length; i++) d = Math.max(d, Math.abs(mixed.out[i] - scalar.out[i]));
    if (!(d > 1e-4)) throw new Error(`per-block head counts had no effect (max diff ${d})`);
  } finally {
    src.close();
  }
});

gpuTest("unet: non-square latents that do not divide by 8 (8x12 -> 1x2) upsample to the skip sizes", async (dev) => {
  const { cfg, src } = await tinyUnet();
  try {
    for (const [h, w] of [[8, 12], [5, 7], [16, 8]]) {
      const r = await run(dev, cfg, src, h, w);
      if (r.shape.join() !== [2, 4, h, w].join()) throw new Error(`output [${r.shape}] for a ${h}x${w} latent`);
      if (!r.out.every(Number.isFinite)) throw new Error(`non-finite output for ${h}x${w}`);
    }
  } finally {
    src.close();
  }
});
