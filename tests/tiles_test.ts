// Measured GEMM tiles (pipeline/ops/tiles.ts): a run reads its adapter's tiles file once and picks a measured tile
// for that shape before the table's scoring; a file for another adapter, a shape key that is not "MxNxK" or a tile
// that is not one of the kernels' candidates changes nothing.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { pickTile, TILES } from "../pipeline/ops/matmul.ts";
import { resetMeasuredTiles, tilesFile } from "../pipeline/ops/tiles.ts";
import { gpuTest } from "./util.ts";

gpuTest(
  "tiles: a run picks its adapter's measured tiles; bad entries and other adapters' files are ignored",
  async (dev) => {
    const dir = await Deno.makeTempDir({ prefix: "zerovid-tiles-" });
    const env = Deno.env.get("ZEROVID_TILES_DIR");
    try {
      Deno.env.set("ZEROVID_TILES_DIR", dir);
      resetMeasuredTiles();
      const scored = pickTile(dev, 320, 8192, 2880);
      const other = TILES.find((t) => JSON.stringify(t) !== JSON.stringify(scored))!;
      const bogus = { BM: 48, BN: 48, TM: 3, TN: 3 };
      await Deno.writeTextFile(
        tilesFile(dev.adapterName)!,
        JSON.stringify({
          adapter: dev.adapterName,
          dtype: "f32",
          measured: new Date().toISOString(),
          shapes: { "320x8192x2880": other, "320x4096x2880": bogus, "not-a-shape": other },
        }),
      );
      resetMeasuredTiles();
      assertEquals(pickTile(dev, 320, 8192, 2880), other, "the measured tile");
      assert(TILES.includes(pickTile(dev, 320, 4096, 2880)), "a tile no kernel was tested with");
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
    } finally {
      if (env === undefined) Deno.env.delete("ZEROVID_TILES_DIR");
      else Deno.env.set("ZEROVID_TILES_DIR", env);
      resetMeasuredTiles();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
