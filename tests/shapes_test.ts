// The config-driven shape tables must list exactly the tensors (names and shapes) of real diffusers checkpoints.
import { join } from "node:path";
import { clipTextShapes, controlnetShapes, type ShapeMap, unetShapes, vaeShapes } from "../pipeline/models/shapes.ts";
import { Safetensors } from "../pipeline/weights/safetensors.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";

const models = GOLDEN_MODELS + "/";

async function check(dir: string, file: string, make: (cfg: never) => ShapeMap) {
  const cfg = JSON.parse(await Deno.readTextFile(join(models, dir, "config.json")));
  const st = await Safetensors.open(join(models, dir, file));
  try {
    const want = new Map([...st.tensors].map(([k, v]) => [k, v.shape]));
    const got = make(cfg as never);
    const missing = [...want.keys()].filter((k) => !got.has(k));
    const extra = [...got.keys()].filter((k) => !want.has(k));
    const wrong = [...got].filter(([k, s]) => want.has(k) && want.get(k)!.join() !== s.join());
    if (missing.length || extra.length || wrong.length) {
      throw new Error(
        `missing ${missing.slice(0, 5)} extra ${extra.slice(0, 5)} wrong ${
          wrong.slice(0, 5).map(([k, s]) => `${k} [${s}] vs [${want.get(k)}]`)
        }`,
      );
    }
  } finally {
    st.close();
  }
}

Deno.test("shapes: tiny-sd unet", () => check("tiny-sd/unet", "diffusion_pytorch_model.safetensors", unetShapes));
Deno.test("shapes: tiny-pix2pix unet", () =>
  check("tiny-pix2pix/unet", "diffusion_pytorch_model.safetensors", unetShapes));
Deno.test("shapes: tiny-sd vae", () => check("tiny-sd/vae", "diffusion_pytorch_model.safetensors", vaeShapes));
Deno.test("shapes: tiny-sd text encoder", () => check("tiny-sd/text_encoder", "model.safetensors", clipTextShapes));
Deno.test("shapes: tiny controlnet", () =>
  check("tiny-controlnet", "diffusion_pytorch_model.safetensors", controlnetShapes));
