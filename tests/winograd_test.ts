// Winograd F(2x2, 3x3) beyond the op table (tests/ops/conv2d.ts checks its results): the weight transform cached per
// weight survives a precompile dry run (recorded right after it, not thrown away with it) and is freed with its
// weight; the run planner is told the memory it may add; v is kept in the GEMM's multiply type.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { conv2d } from "../pipeline/ops/conv2d.ts";
import { gemmHooks } from "../pipeline/ops/matmul.ts";
import { SCRATCH_BYTES, transformedBytes, transformedWeight, winogradBytes } from "../pipeline/ops/winograd.ts";
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
  const u = transformedWeight(w);
  assertEquals(u.shape, [16, 24, 16]);
  assert(transformedWeight(w) === u, "cached");
  const before = transformedBytes(dev);
  assert(before >= u.bytes, `${before} bytes counted, u has ${u.bytes}`);
  w.release();
  assert(!u.alive, "freed with its weight");
  assertEquals(transformedBytes(dev), before - u.bytes);
  x.release();
});

gpuTest("winograd: the planner counts transformed 3x3 weights and scratch only where Winograd may run", (dev) => {
  const params = [{
    dtype: "f16" as const,
    slots: new Map([["a", { shape: [320, 320, 3, 3] }], ["b", { shape: [64, 64, 3, 3] }], ["c", {
      shape: [320, 320, 1, 1],
    }]]),
  }];
  const scratch = 2 * Math.min(SCRATCH_BYTES, dev.maxBinding);
  try {
    gemmHooks.winograd = true; // every 3x3 weight
    assertEquals(winogradBytes(dev, params), 16 * (320 * 320 + 64 * 64) * 2 + scratch);
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
