// Subgroups (pipeline/gpu/subgroups.ts): the probe passes where subgroups are requested and work (llvmpipe runs them
// without listing the feature), "off" keeps every kernel on workgroup memory, a bad $ZEROVID_SUBGROUPS is a clear
// error, and the `_sg` kernels are what a subgroups device compiles. (tests/ops_test.ts checks their results.)
import { assert, assertEquals, assertThrows } from "../fixtures/asserts.ts";
import { Device } from "../pipeline/gpu/device.ts";
import { subgroupsWanted } from "../pipeline/gpu/subgroups.ts";
import { groupNorm } from "../pipeline/ops/norm.ts";
import { randn, up } from "./util.ts";

Deno.test("subgroups: wanted per the option, else $ZEROVID_SUBGROUPS, else by default", () => {
  const env = Deno.env.get("ZEROVID_SUBGROUPS");
  try {
    Deno.env.delete("ZEROVID_SUBGROUPS");
    assertEquals(subgroupsWanted(), true);
    Deno.env.set("ZEROVID_SUBGROUPS", "off");
    assertEquals(subgroupsWanted(), false);
    assertEquals(subgroupsWanted(true), true, "the option wins");
    Deno.env.set("ZEROVID_SUBGROUPS", "1");
    assertEquals(subgroupsWanted(), true);
    Deno.env.set("ZEROVID_SUBGROUPS", "auto");
    assertEquals(subgroupsWanted(), true);
    Deno.env.set("ZEROVID_SUBGROUPS", "sometimes");
    assertThrows(() => subgroupsWanted(), Error, "ZEROVID_SUBGROUPS=sometimes: expected on, off or auto");
  } finally {
    if (env === undefined) Deno.env.delete("ZEROVID_SUBGROUPS");
    else Deno.env.set("ZEROVID_SUBGROUPS", env);
  }
});

Deno.test({
  name: "subgroups: forced on, the probe passes and GroupNorm compiles its subgroup merge; off, it does not",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    for (const on of [true, false]) {
      const dev = await Device.open({ subgroups: on });
      try {
        assertEquals(dev.subgroups, on, dev.subgroupNote);
        assert(on ? dev.subgroupNote.startsWith("in use (") : dev.subgroupNote === "turned off", dev.subgroupNote);
        const x = up(dev, randn(2 * 8 * 16, 1), [2, 8, 4, 4], "f32");
        const g = up(dev, randn(8, 2), [8], "f32"), b = up(dev, randn(8, 3), [8], "f32");
        const y = groupNorm(x, 4, g, b, 1e-5);
        await dev.sync();
        const keys = dev.kernelKeys().filter((k) => k.startsWith("groupnorm|"));
        assert(keys.length > 0 && keys.every((k) => k.includes(`"SG":${on}`)), keys.join(" "));
        for (const t of [x, g, b, y]) t.release();
      } finally {
        dev.destroy();
      }
    }
  },
});
