// Per-adapter choices (pipeline/ops/tiles.ts): the lockstep width flash attention sizes its workgroups by, and measured
// GEMM tiles: a run reads its adapter's tiles file once and picks a measured tile for that shape before the table's
// scoring; a file for another adapter, a shape key that is not "MxNxK" or a tile that is not one of the kernels'
// candidates changes nothing.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { conv2d } from "../pipeline/ops/conv2d.ts";
import { linear, pickFrom, pickTile, TILES } from "../pipeline/ops/matmul.ts";
import { resetMeasuredTiles, TILE_TABLE, tilesFile } from "../pipeline/ops/tiles.ts";
import {
  attention,
  attentionConfig,
  attentionPrefs,
  attentionTiling,
  flashConfig,
  flashThreads,
  rowsConfig,
  tunedTiling,
} from "../pipeline/ops/attention.ts";
import type { Device } from "../pipeline/gpu/device.ts";
import { diff, gpuTest, randn, up } from "./util.ts";

// A large GPU's workgroup limits (NVIDIA's Vulkan driver reports these).
const BIG = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 };

Deno.test("tiles: split-K is scored where the tiles alone leave the GPU empty, and only where the kernel can split", () => {
  // SD 1.5's 8x8 level at batch 2 (CFG): Cout 1280 x 128 pixels over K = 1280 * 9: 40 tiles of 64x64 on a GPU that
  // wants 256 workgroups, so K is split; at batch 16 (8 frames) and at the 64x64 level the tiles fill it alone.
  const deep = pickFrom(TILE_TABLE.default, BIG, 1280, 128, 11520, { splitK: true });
  assert((deep.splitK ?? 1) > 1, `8x8 level, batch 2: ${JSON.stringify(deep)}`);
  assertEquals(pickFrom(TILE_TABLE.default, BIG, 320, 8192, 2880, { splitK: true }).splitK, undefined);
  assertEquals(pickFrom(TILE_TABLE.default, BIG, 1280, 1024, 11520, { splitK: true }).splitK, undefined);
  // A linear layer (no split in its kernel) never gets one; a shallow K never splits below MIN_SLICE_K.
  assertEquals(pickFrom(TILE_TABLE.default, BIG, 1280, 128, 11520).splitK, undefined);
  assertEquals(pickFrom(TILE_TABLE.default, BIG, 1280, 128, 300, { splitK: true }).splitK, undefined);
  // llvmpipe: doubling 2 tiles to 4 workgroups measured no gain there, so the tiny UNet's convs stay whole.
  assertEquals(pickFrom(TILE_TABLE.llvmpipe, BIG, 64, 32, 576, { splitK: true }).splitK, undefined);
});

Deno.test("tiles: flash attention's workgroups are whole multiples of the adapter's lanes where a tiling allows", () => {
  const gpu = TILE_TABLE.nvidia.lanes ?? 32, cpu = TILE_TABLE.llvmpipe.lanes!;
  assertEquals([gpu, cpu], [32, 8]);
  // SD's D = 40: two columns per thread make 80 threads (2.5 warps), so a GPU takes one column (160 threads);
  // llvmpipe's 8 lanes take the two-column tiling (1.08x there).
  const d40 = flashConfig(40, 32768, gpu)!, d40cpu = flashConfig(40, 32768, cpu)!;
  assertEquals([d40, flashThreads(d40)], [{ kind: "flash", BQ: 64, D4: 10, CPT: 1 }, 160]);
  assertEquals([d40cpu, flashThreads(d40cpu)], [{ kind: "flash", BQ: 64, D4: 10, CPT: 2 }, 80]);
  // D = 64 fits a whole number of warps with two columns; D = 80 nowhere, so it keeps the first tiling that fits.
  assertEquals(flashConfig(64, 32768, gpu), { kind: "flash", BQ: 32, D4: 16, CPT: 2 });
  assertEquals(flashConfig(80, 32768, gpu), { kind: "flash", BQ: 32, D4: 20, CPT: 2 });
  // D = 160's K/V tile does not fit 32 KiB.
  assertEquals(flashConfig(160, 32768, gpu), null);
});

Deno.test("tiles: each adapter's attention kernel comes from its table entry", () => {
  const [nv, lp, dflt] = [TILE_TABLE.nvidia, TILE_TABLE.llvmpipe, TILE_TABLE.default].map(attentionPrefs);
  // llvmpipe: flash at SD's head dims (1.8x the rows kernel there); D = 8 (0.8x) and D = 160 (no fit) on rows.
  assertEquals(attentionConfig(40, 32768, lp), flashConfig(40, 32768, 8));
  assertEquals(attentionConfig(80, 32768, lp).kind, "flash");
  // ... with two rows per thread and 128-key tiles (0.5-0.6x and 0.85-0.92x the time of 32-key tiles there).
  assertEquals(attentionConfig(8, 32768, lp), { kind: "rows", TPR: 1, DV: 2, BK: 8, BT: 128, WG: 128, QPT: 2 });
  assertEquals(attentionConfig(160, 32768, lp).kind, "rows");
  // NVIDIA (flash 2-4x slower than rows on the H200) and GPUs not in the table: the rows kernel, 16-key tiles.
  for (const p of [nv, dflt]) {
    assertEquals(attentionConfig(40, 32768, p), { kind: "rows", TPR: 1, DV: 10, BK: 16, BT: 16, WG: 128, QPT: 1 });
    assertEquals(attentionConfig(80, 32768, p), { kind: "rows", TPR: 2, DV: 10, BK: 16, BT: 16, WG: 128, QPT: 1 });
  }
  // Tilings measured into the table by head dim (NVIDIA: two rows per thread) are ones the kernels can run and the
  // tuner could pick (else attentionTiling would silently fall back to the preferences).
  for (const e of Object.values(TILE_TABLE)) {
    for (const [d, c] of Object.entries(e.attentionByD ?? {})) {
      assert(tunedTiling(c, Number(d), 32768), `${e.match} D=${d}: ${JSON.stringify(c)}`);
    }
  }
  assert(Object.keys(TILE_TABLE.nvidia.attentionByD ?? {}).length > 0);
  // Past 160 the tiled kernel everywhere.
  assertEquals(attentionConfig(512, 32768, nv).kind, "tiled");
  // rowsTileKeys: the largest tile of at most that many keys that fits (D = 160, 16 KiB: 8 keys scored at once).
  assertEquals(attentionConfig(40, 32768, { ...nv, rowsTileKeys: 64 }), {
    kind: "rows",
    TPR: 1,
    DV: 10,
    BK: 16,
    BT: 64,
    WG: 128,
    QPT: 1,
  });
  assertEquals(rowsConfig(160, 16384, 64), { kind: "rows", TPR: 4, DV: 10, BK: 8, BT: 8, WG: 128, QPT: 1 });
});

/** Writes `dev`'s adapter a tiles file with these entries (measured now, f32). */
async function writeTilesFile(dev: Device, entries: { shapes?: unknown; attention?: unknown }): Promise<void> {
  await Deno.writeTextFile(
    tilesFile(dev.adapterName)!,
    JSON.stringify({ adapter: dev.adapterName, dtype: "f32", measured: new Date().toISOString(), ...entries }),
  );
}

/** Runs `fn` with $ZEROVID_TILES_DIR set to a fresh folder, measured tiles forgotten before and after. */
async function withTilesDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-tiles-" });
  const env = Deno.env.get("ZEROVID_TILES_DIR");
  try {
    Deno.env.set("ZEROVID_TILES_DIR", dir);
    resetMeasuredTiles();
    await fn(dir);
  } finally {
    if (env === undefined) Deno.env.delete("ZEROVID_TILES_DIR");
    else Deno.env.set("ZEROVID_TILES_DIR", env);
    resetMeasuredTiles();
    await Deno.remove(dir, { recursive: true });
  }
}

gpuTest(
  "tiles: a run picks its adapter's measured tiles; bad entries and other adapters' files are ignored",
  (dev) =>
    withTilesDir(async (dir) => {
      const scored = pickTile(dev, 320, 8192, 2880);
      const other = TILES.find((t) => JSON.stringify(t) !== JSON.stringify(scored))!;
      const bogus = { BM: 48, BN: 48, TM: 3, TN: 3 };
      await writeTilesFile(dev, {
        shapes: {
          "320x8192x2880": other,
          "320x4096x2880": bogus,
          "not-a-shape": other,
          // conv2d x=[2,32,4,4] Cout 24 k3 (K = 288) split in two; the same key with a split no kernel has.
          "24x32x288": { ...TILES[1], splitK: 2 },
          "24x32x289": { ...TILES[1], splitK: 3 },
          // conv2d x=[1,32,4,4] Cout 24 k3 measured faster with packed f16 math; a math flag that is no boolean.
          "24x16x288": { ...TILES[1], f16: true },
          "24x16x289": { ...TILES[1], f16: "yes" },
          // linear 40x24x64 measured faster with the inner loop unrolled four steps; an unrolling no kernel has.
          "40x24x64": { ...TILES[1], unroll: 4 },
          "40x24x65": { ...TILES[1], unroll: 3 },
        },
      });
      resetMeasuredTiles();
      assertEquals(pickTile(dev, 320, 8192, 2880), other, "the measured tile");
      assert(TILES.includes(pickTile(dev, 320, 4096, 2880)), "a tile no kernel was tested with");
      assertEquals(pickTile(dev, 24, 32, 288, { splitK: true }), { ...TILES[1], splitK: 2 }, "a measured split");
      assertEquals(pickTile(dev, 24, 32, 288).splitK, undefined, "a linear layer with that key: no split");
      assert(TILES.includes(pickTile(dev, 24, 32, 289, { splitK: true })), "a split factor no kernel has");
      assertEquals(pickTile(dev, 24, 16, 288, { splitK: true }), { ...TILES[1], f16: true }, "a measured f16 math");
      assertEquals(pickTile(dev, 24, 16, 289, { splitK: true }), TILES[1], "a math flag that is no boolean");
      assertEquals(pickTile(dev, 40, 24, 64), { ...TILES[1], unroll: 4 }, "a measured unrolling");
      assertEquals(pickTile(dev, 40, 24, 65), TILES[1], "an unrolling no kernel has");
      // The linear of that shape compiles its GEMM with four steps per inner-loop iteration.
      const xl = up(dev, randn(40 * 64, 5), [40, 64], "f32"), wl = up(dev, randn(24 * 64, 6, 0.1), [24, 64], "f32");
      linear(xl, wl).release();
      const unrolled = (k: string) => k.startsWith("matmul|f32|") && k.includes(`"UNROLL":4`);
      assert(dev.kernelKeys().some(unrolled), `no UNROLL 4 matmul among ${dev.kernelKeys().join(", ")}`);
      xl.release(), wl.release();
      if (dev.f16) {
        // An f16 conv of that shape multiplies in f16 (F16MATH); the same shape in f32 cannot.
        const xh = up(dev, randn(32 * 16, 3), [1, 32, 4, 4], "f16");
        const wh = up(dev, randn(24 * 288, 4, 0.06), [24, 32, 3, 3], "f16");
        conv2d(xh, wh, undefined, { padding: 1 }).release();
        const f16Conv = (k: string) => k.startsWith("conv2d|f16|") && k.includes(`"F16MATH":true`);
        assert(dev.kernelKeys().some(f16Conv), `no F16MATH conv2d among ${dev.kernelKeys().join(", ")}`);
        xh.release(), wh.release();
      }
      // conv2d runs the measured split (two passes) and gets the unsplit result up to rounding.
      const x = up(dev, randn(2 * 32 * 16, 1), [2, 32, 4, 4], "f32");
      const w = up(dev, randn(24 * 288, 2, 0.06), [24, 32, 3, 3], "f32");
      const before = dev.dispatches;
      const split = conv2d(x, w, undefined, { padding: 1 });
      assertEquals(dev.dispatches - before, 2, "dispatches of the split conv");
      const got = await split.read();
      resetMeasuredTiles();
      Deno.env.delete("ZEROVID_TILES_DIR");
      const whole = conv2d(x, w, undefined, { padding: 1 });
      const d = diff(got, await whole.read());
      assert(d.maxAbs < 1e-5, `split vs whole: max abs ${d.maxAbs}`);
      for (const t of [x, w, split, whole]) t.release();
      Deno.env.set("ZEROVID_TILES_DIR", dir);
      resetMeasuredTiles();
      assertEquals(
        pickTile(dev, 64, 64, 64),
        (resetMeasuredTiles(), Deno.env.delete("ZEROVID_TILES_DIR"), pickTile(dev, 64, 64, 64)),
      );

      // The same file under another adapter's name: not this adapter's measurement.
      Deno.env.set("ZEROVID_TILES_DIR", dir);
      const text = await Deno.readTextFile(tilesFile(dev.adapterName)!);
      await Deno.writeTextFile(
        tilesFile(dev.adapterName)!,
        text.replace(JSON.stringify(dev.adapterName), '"another GPU"'),
      );
      resetMeasuredTiles();
      assertEquals(pickTile(dev, 320, 8192, 2880), scored);
    }),
);

gpuTest(
  "tiles: a run takes its adapter's measured attention tilings by head dim; invalid or oversized ones are ignored",
  (dev) =>
    withTilesDir(async (dir) => {
      const table = attentionTiling(dev, 40);
      // Another valid tiling than the table's at D = 40, one at D = 8; then a rows tiling whose tile is not a multiple
      // of its BK, one too big for 32 KiB (D = 80 with 128-key tiles), one with a workgroup size no kernel runs (2048
      // threads) and one with a 48-key tile (not a power of two), an unknown kind and a key that is no number.
      const measured40 = table.kind === "flash"
        ? rowsConfig(40, 32768, 32)
        : { kind: "flash", BQ: 32, D4: 10, CPT: 1 } as const;
      const measured8 = { kind: "rows", TPR: 1, DV: 2, BK: 8, BT: 32, WG: 128, QPT: 2 } as const;
      await writeTilesFile(dev, {
        shapes: {},
        attention: {
          40: measured40,
          8: measured8,
          64: { kind: "rows", TPR: 2, DV: 8, BK: 16, BT: 24, WG: 128, QPT: 1 },
          80: { kind: "rows", TPR: 2, DV: 10, BK: 16, BT: 128, WG: 128, QPT: 1 },
          36: { kind: "rows", TPR: 1, DV: 9, BK: 16, BT: 16, WG: 2048, QPT: 1 },
          32: { kind: "rows", TPR: 1, DV: 8, BK: 16, BT: 48, WG: 128, QPT: 1 },
          20: { kind: "cubes", BQ: 16 },
          "x": measured8,
        },
      });
      resetMeasuredTiles();
      assertEquals(attentionTiling(dev, 40), measured40, "the measured D = 40 tiling");
      assertEquals(attentionTiling(dev, 8), measured8, "the measured D = 8 tiling");
      resetMeasuredTiles();
      Deno.env.delete("ZEROVID_TILES_DIR");
      const plain = [64, 80, 36, 32, 20].map((D) => attentionTiling(dev, D));
      Deno.env.set("ZEROVID_TILES_DIR", dir);
      resetMeasuredTiles();
      assertEquals(
        [64, 80, 36, 32, 20].map((D) => attentionTiling(dev, D)),
        plain,
        "invalid entries leave the table's",
      );

      // Attention runs the measured tiling and matches the table's result.
      const [B, N, heads, D] = [2, 70, 2, 40];
      const q = up(dev, randn(B * N * heads * D, 1), [B, N, heads * D], "f32");
      const k = up(dev, randn(B * N * heads * D, 2), [B, N, heads * D], "f32");
      const v = up(dev, randn(B * N * heads * D, 3), [B, N, heads * D], "f32");
      const got = await attention(q, k, v, heads).read();
      const ran = (key: string) =>
        key.includes(`"D":40,`) &&
        (measured40.kind === "flash"
          ? key.startsWith("attention_flash|f32|") && key.includes(`"BQ":32,`)
          : key.startsWith("attention|f32|") && key.includes(`"BT":32,`));
      assert(dev.kernelKeys().some(ran), `the measured kernel among ${dev.kernelKeys().join(", ")}`);
      resetMeasuredTiles();
      Deno.env.delete("ZEROVID_TILES_DIR");
      const want = await attention(q, k, v, heads).read();
      const d = diff(got, want);
      assert(d.maxAbs < 1e-5, `measured vs table tiling: max abs ${d.maxAbs}`);
      for (const t of [q, k, v]) t.release();
    }),
);
