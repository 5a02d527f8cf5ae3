// The golden contract: every case of fixtures/golden whose kind is implemented, in f32 (stored tolerance) and
// f16 (rel_l2 budget), through the same runner as `deno task golden`.
import { listCases, loadHandlers, runCase } from "../tools/golden/runner.ts";
import { gpuTest } from "./util.ts";
import { GOLDEN_DIR } from "../fixtures/paths.ts";

const dir = GOLDEN_DIR;
const handlers = await loadHandlers();
const cases = await listCases(dir);

/** The component kinds the engine must support (pipeline kinds come with the modes). */
const ENGINE_KINDS = [
  "tokenizer",
  "text_encoder",
  "unet",
  "unet_cross_frame",
  "controlnet",
  "controlnet_cross_frame",
  "vae_decode",
  "vae_encode",
  "scheduler_ddim",
  "scheduler_euler_ancestral",
  "ddpm_forward",
  "warp",
];

Deno.test("golden: every engine kind has a handler", () => {
  const missing = ENGINE_KINDS.filter((k) => !handlers.has(k));
  if (missing.length) throw new Error(`no golden handler for: ${missing.join(", ")}`);
});

for (const precision of ["f32", "f16"] as const) {
  for (const c of cases.filter((c) => handlers.has(c.kind))) {
    gpuTest(`golden ${c.name} (${c.kind}) ${precision}`, async (dev) => {
      const r = await runCase(dev, dir, c.name, precision, handlers);
      if (!r.pass) {
        throw new Error(
          r.error ?? `${r.worstOutput}: max_abs ${r.maxAbs.toExponential(3)} rel_l2 ${r.relL2.toExponential(3)}`,
        );
      }
    });
  }
}

Deno.test("golden: the chunking recipe's frame ids (for sets that give only chunk_size)", async () => {
  const { recipeChunks } = await import("../tools/golden/kinds/pipelines.ts");
  const got = JSON.stringify(recipeChunks(6, 4));
  if (got !== JSON.stringify([[0, 0, 1, 2], [0, 3, 4, 5]])) throw new Error(`recipeChunks(6, 4) = ${got}`);
  const eight = JSON.stringify(recipeChunks(8, 8));
  if (eight !== JSON.stringify([[0, 0, 1, 2, 3, 4, 5, 6], [0, 7]])) throw new Error(`recipeChunks(8, 8) = ${eight}`);
});
