// The UNet's cross-run caches and per-adapter tile table: text K/V computed once per context tensor and released
// with it (never cached from a precompile dry run), and tile choices taken from pipeline/ops/tiles.ts.
import { upload } from "../pipeline/gpu/tensor.ts";
import { StableDiffusion } from "../pipeline/models/sd.ts";
import { pickTile } from "../pipeline/ops/matmul.ts";
import { TILE_TABLE, tilesFor } from "../pipeline/ops/tiles.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";
import { diff, gpuTest, randn } from "./util.ts";

const TINY = GOLDEN_MODELS + "/tiny-sd";

gpuTest("unet: cross-attention K/V are computed once per context tensor and released with it", async (dev) => {
  const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
  try {
    const cfg = sd.unet.cfg;
    const D = cfg.cross_attention_dim as number;
    const sample = upload(dev, randn(2 * 4 * 8 * 8, 1), [2, cfg.in_channels, 8, 8], "f32");
    const baseline = dev.pool.inUse;
    const call = (context: ReturnType<typeof upload>) => {
      const before = dev.dispatches;
      const e = sd.unet.forward({ sample, timesteps: [500], context });
      return { e, dispatches: dev.dispatches - before };
    };

    // A dry run records K/V but must not cache them (the recording never executes).
    const ctx = upload(dev, randn(2 * 77 * D, 2), [2, 77, D], "f32");
    dev.precompile(() => void call(ctx));
    const first = call(ctx), second = call(ctx);
    const transformers = 16; // tiny-sd: 6 down, 1 mid, 9 up, one block each, one K/V GEMM per cross-attention
    if (first.dispatches - second.dispatches !== transformers) {
      throw new Error(`dispatches: first call ${first.dispatches}, second ${second.dispatches}`);
    }
    const a = await first.e.read(), b = await second.e.read();
    const d = diff(a, b);
    if (d.maxAbs !== 0) throw new Error(`cached K/V changed the result: max |diff| ${d.maxAbs}`);
    first.e.release(), second.e.release();

    // Another context is computed afresh; releasing a context gives its K/V buffers back.
    const ctx2 = upload(dev, randn(2 * 77 * D, 3), [2, 77, D], "f32");
    const third = call(ctx2);
    if (third.dispatches !== first.dispatches) throw new Error(`new context: ${third.dispatches} dispatches`);
    const c = await third.e.read();
    if (diff(a, c).maxAbs === 0) throw new Error("a new context gave the old result (stale K/V)");
    third.e.release();
    ctx.release(), ctx2.release();
    if (dev.pool.inUse !== baseline) {
      throw new Error(`pool in use ${dev.pool.inUse} bytes after releasing the contexts, ${baseline} before`);
    }
    sample.release();
  } finally {
    sd.dispose();
  }
});

gpuTest("tiles: the adapter's table entry picks the GEMM tile, measured shapes first", (dev) => {
  if (tilesFor("llvmpipe (LLVM 15.0.6, 256 bits)", true) !== TILE_TABLE.llvmpipe) throw new Error("llvmpipe entry");
  if (tilesFor("NVIDIA H200", false) !== TILE_TABLE.nvidia) throw new Error("nvidia entry");
  if (tilesFor("AMD Radeon RX 7900 XTX (RADV NAVI31)", false) !== TILE_TABLE.default) throw new Error("default entry");
  if (tilesFor("SwiftShader Device", true) !== TILE_TABLE.cpu) throw new Error("cpu entry");
  const entry = tilesFor(dev.adapterName, dev.isFallback);
  const tile = { BM: 16, BN: 128, TM: 4, TN: 4 };
  const saved = entry.shapes;
  entry.shapes = { ...saved, "1000x1000x1000": tile };
  try {
    if (pickTile(dev, 1000, 1000, 1000) !== tile) throw new Error("a measured shape's tile was not used");
    if (pickTile(dev, 1000, 1000, 999) === tile) throw new Error("another shape got the measured tile");
  } finally {
    entry.shapes = saved;
  }
  return Promise.resolve();
});

gpuTest(
  "tiles: a UNet call with its deep convs split in K (as on a large GPU) matches the call without",
  async (dev) => {
    const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
    const entry = tilesFor(dev.adapterName, dev.isFallback);
    const saved = { fill: entry.fill, splitCost: entry.splitCost };
    try {
      const cfg = sd.unet.cfg;
      const sample = upload(dev, randn(2 * 4 * 8 * 8, 1), [2, cfg.in_channels, 8, 8], "f32");
      const D = cfg.cross_attention_dim as number;
      const ctx = upload(dev, randn(2 * 77 * D, 2), [2, 77, D], "f32");
      const call = () => {
        const before = dev.dispatches;
        const e = sd.unet.forward({ sample, timesteps: [500], context: ctx });
        return { e, dispatches: dev.dispatches - before };
      };
      call().e.release(); // the text K/V cache, so both calls below make the same GEMMs
      const whole = call();
      // A GPU that wants far more workgroups than these shapes have tiles, with splits free: every conv whose K
      // allows slices of MIN_SLICE_K (the tiny model's K = 576 and 864 convs) splits.
      entry.fill = 1e6, entry.splitCost = 1;
      const split = call();
      if (split.dispatches <= whole.dispatches) {
        throw new Error(`no conv was split: ${split.dispatches} dispatches, ${whole.dispatches} without`);
      }
      const d = diff(await split.e.read(), await whole.e.read());
      if (!(d.relL2 < 1e-5)) throw new Error(`split-K changed the UNet's output: rel_l2 ${d.relL2}`);
      for (const t of [sample, ctx, whole.e, split.e]) t.release();
    } finally {
      Object.assign(entry, saved);
      sd.dispose();
    }
  },
);
