// The server's GPU context survives a device loss: the next job gets a fresh device.
import { GpuContext } from "../routes/gpu_context.ts";

Deno.test({
  name: "gpu context: a lost device is reopened for the next job",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    let reopened = 0;
    const ctx = await GpuContext.create({ onReopen: () => reopened++ });
    try {
      const first = await ctx.current();
      if ((await ctx.current()).dev !== first.dev) throw new Error("a live device was replaced");
      first.dev.gpu.destroy();
      await first.dev.gpu.lost;
      await new Promise((r) => setTimeout(r, 0));
      if (!ctx.now.dev.isLost) throw new Error("the loss was not noticed");
      const second = await ctx.current();
      if (second.dev === first.dev || second.dev.isLost || reopened !== 1) {
        throw new Error(`not reopened (reopened ${reopened} times)`);
      }
      if (second.models === first.models) throw new Error("the model cache of the lost device was kept");
      await second.dev.sync();
    } finally {
      ctx.dispose();
    }
  },
});
