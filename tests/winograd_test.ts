// Winograd F(2x2, 3x3) beyond the op table (tests/ops/conv2d.ts checks its results): the weight transform cached per
// weight survives a precompile dry run (recorded right after it, not thrown away with it) and is freed with its
// weight (per tile); the run planner is told the memory it may add (per dtype's tile); v is kept in the GEMM's
// multiply type.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { conv2d } from "../pipeline/ops/conv2d.ts";
import { adapterTiles, gemmHooks } from "../pipeline/ops/matmul.ts";
import {
  SCRATCH_BYTES,
  transformedBytes,
  transformedWeight,
  winogradBytes,
  winogradPasses,
  winogradTile,
} from "../pipeline/ops/winograd.ts";
import { assertClose, gpuTest, randn, up } from "./util.ts";

gpuTest("winograd: a weight first transformed inside a dry run gives the right result after it", async (dev) => {
  const x = up(dev, randn(2 * 16 * 6 * 6, 1), [2, 16, 6, 6], "f32");
  const w = up(dev, randn(24 * 16 * 9, 2, 1 / 12), [24, 16, 3, 3], "f32");
  const run = () => conv2d(x, w, undefined, { padding: 1 });
  gemmHooks.winograd = false;
  const want = await run().read();
  gemmHooks.winograd = true;
  try {
    dev.precompile(() => run());
    assertEquals(dev.lateCompiles, 0);
    const got = await run().read();
    assertEquals(dev.lateCompiles, 0, "the dry run compiled every Winograd kernel");
    assertClose(got, want, { maxAbs: 2e-5, relL2: 1e-5 }, "after a dry run");
  } finally {
    gemmHooks.winograd = null;
  }
  // Both tiles' u of an f32 weight (one made above, the other now): each cached, both freed with the weight.
  const u4 = transformedWeight(w, 4), u2 = transformedWeight(w, 2);
  assertEquals(u4.shape, [36, 24, 16]);
  assertEquals(u2.shape, [16, 24, 16]);
  assert(transformedWeight(w, 4) === u4 && transformedWeight(w, 2) === u2, "cached");
  const before = transformedBytes(dev), bytes = u4.bytes + u2.bytes;
  assert(before >= bytes, `${before} bytes counted, u has ${bytes}`);
  w.release();
  assert(!u4.alive && !u2.alive, "freed with its weight");
  assertEquals(transformedBytes(dev), before - bytes);
  x.release();
});

gpuTest("winograd: the planner counts transformed 3x3 weights and scratch only where Winograd may run", (dev) => {
  const slots = new Map([["a", { shape: [320, 320, 3, 3] }], ["b", { shape: [64, 64, 3, 3] }], ["c", {
    shape: [320, 320, 1, 1],
  }]]);
  const params = [{ dtype: "f16" as const, slots }];
  const scratch = 2 * Math.min(SCRATCH_BYTES, dev.maxBinding);
  try {
    gemmHooks.winograd = true; // every 3x3 weight
    assertEquals(winogradBytes(dev, params), 16 * (320 * 320 + 64 * 64) * 2 + scratch);
    // f32 runs take the entry's tile: where it is F(4x4, 3x3) (llvmpipe), its u (36 products) and F(2x2)'s (16) for
    // narrow passes; else F(2x2)'s alone.
    const f32Products = winogradTile(dev, "f32") === 4 ? 36 + 16 : 16;
    assertEquals(winogradTile(dev, "f32"), adapterTiles(dev).winograd?.f4MinTiles !== undefined ? 4 : 2);
    assertEquals(winogradBytes(dev, [{ dtype: "f32", slots }]), f32Products * (320 * 320 + 64 * 64) * 4 + scratch);
    // A 1280-channel f32 weight: F(4x4)'s u (225 MiB) past a 128 MiB binding, so F(2x2)'s (100 MiB) is counted.
    const big = new Map([["d", { shape: [1280, 1280, 3, 3] }]]);
    const bigProducts = f32Products > 16 && 36 * 1280 * 1280 * 4 <= dev.maxBinding ? 36 + 16 : 16;
    assertEquals(winogradBytes(dev, [{ dtype: "f32", slots: big }]), bigProducts * 1280 * 1280 * 4 + scratch);
    gemmHooks.winograd = false;
    assertEquals(winogradBytes(dev, params), 0);
  } finally {
    gemmHooks.winograd = null;
  }
  // llvmpipe's rule: from 256 channels.
  if (dev.adapterName.includes("llvmpipe")) assertEquals(winogradBytes(dev, params), 16 * 320 * 320 * 2 + scratch);
  return Promise.resolve();
});

gpuTest(
  "winograd: v is stored in the GEMM's multiply type (f16 under F16MATH, f32 otherwise)",
  async (dev) => {
    const x = up(dev, randn(2 * 16 * 6 * 6, 3), [2, 16, 6, 6], "f16");
    const w = up(dev, randn(24 * 16 * 9, 4, 1 / 12), [24, 16, 3, 3], "f16");
    const vTypes = () =>
      dev.kernelKeys().filter((k) => k.startsWith("winograd_input|f16|")).map((k) =>
        JSON.parse(k.split("|")[2]).V.type
      );
    gemmHooks.winograd = true;
    try {
      const got: Record<string, Float32Array> = {};
      for (const on of [false, true]) {
        gemmHooks.f16Math = on;
        got[`${on}`] = await conv2d(x, w, undefined, { padding: 1 }).read();
      }
      assertEquals(vTypes().sort(), ["f16", "f32"]);
      assertClose(got.true, got.false, { maxAbs: 2e-2, relL2: 3e-3 }, "f16 math against f32 math");
    } finally {
      gemmHooks.winograd = null;
      gemmHooks.f16Math = null;
    }
    x.release();
    w.release();
  },
);

gpuTest(
  "winograd: f32 takes F(4x4, 3x3) where the entry says so on passes of enough tiles, else F(2x2, 3x3)",
  async (dev) => {
    // 8 channels, 8x8 images: two 4x4 tiles a side. F(4x4)'s u is 36 * 8 * 8 * 4 = 9216 bytes, F(2x2)'s 4096.
    const min = adapterTiles(dev).winograd?.f4MinTiles; // llvmpipe's entry: 64
    const B = min === undefined ? 4 : Math.ceil(min / 4);
    const shape = (b: number) => [b, 8, 8, 8];
    const tileOf = (b: number, limit: number) => winogradPasses(dev, shape(b), shape(b), "f32", limit)?.tile;
    assertEquals(tileOf(B, dev.maxBinding), min === undefined ? 2 : 4, `${4 * B} tiles`);
    if (min !== undefined) assertEquals(tileOf(Math.floor((min - 1) / 4), dev.maxBinding), 2, "too few tiles");
    assertEquals(tileOf(B, 8000), 2, "F(4x4)'s u past the limit");
    const x = up(dev, randn(B * 8 * 64, 5), shape(B), "f32");
    const w = up(dev, randn(8 * 8 * 9, 6, 1 / 8), [8, 8, 3, 3], "f32");
    const run = () => conv2d(x, w, undefined, { padding: 1 });
    gemmHooks.winograd = false;
    const want = await run().read();
    gemmHooks.winograd = true;
    try {
      for (const [limit, t] of [[8000, 2], [0, min === undefined ? 2 : 4]] as const) {
        gemmHooks.maxBinding = limit;
        const before = transformedBytes(dev);
        const got = await run().read();
        assertEquals(transformedBytes(dev) - before, (t + 2) ** 2 * 8 * 8 * 4, `F(${t}x${t}, 3x3)'s u made`);
        assertClose(got, want, { maxAbs: 2e-5, relL2: 1e-5 }, `F(${t}x${t}, 3x3) in f32`);
      }
    } finally {
      gemmHooks.winograd = null;
      gemmHooks.maxBinding = 0;
    }
    x.release();
    w.release();
  },
);
