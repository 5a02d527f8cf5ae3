// One model component folder (config.json + safetensors weights) as a config object and a tensor source.
import { join } from "node:path";
import type { TensorSource } from "../models/layers.ts";
import { Safetensors } from "./safetensors.ts";

export interface ModelFolder {
  config: Record<string, unknown>;
  weights: TensorSource & { close(): void };
}

const WEIGHT_FILES = ["diffusion_pytorch_model.safetensors", "model.safetensors"];

export async function loadModelFolder(dir: string): Promise<ModelFolder> {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  } catch (e) {
    throw new Error(`${dir}: cannot read config.json (${(e as Error).message})`);
  }
  for (const f of WEIGHT_FILES) {
    const path = join(dir, f);
    try {
      await Deno.stat(path);
    } catch {
      continue;
    }
    const st = await Safetensors.open(path);
    return {
      config,
      weights: {
        has: (n) => st.has(n),
        shape: (n) => st.info(n).shape,
        float32: (n) => st.float32(n),
        close: () => st.close(),
      },
    };
  }
  throw new Error(`${dir}: no ${WEIGHT_FILES.join(" or ")} found`);
}
