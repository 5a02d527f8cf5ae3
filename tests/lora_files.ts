// LoRA files for the tiny SD model, written by the tests: random rank-r factors for a set of linear and conv
// layers (attention, feed-forward, 1x1 and 3x3 convs, time projection; two text-encoder layers) in kohya and
// PEFT key names, and the same model with the factors merged in float64 (the reference).
import { join } from "node:path";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";
import { encodeSafetensors, f32, type StEntry } from "../fixtures/safetensors_writer.ts";
import { Safetensors } from "../pipeline/weights/safetensors.ts";
import { randn } from "./util.ts";

export const TINY = join(GOLDEN_MODELS, "tiny-sd");
const UNET_FILE = "unet/diffusion_pytorch_model.safetensors", TE_FILE = "text_encoder/model.safetensors";

// Linear layers, a 1x1 conv (proj_in), a 3x3 conv (LoCon on a resnet), a downsampler and a time projection.
export const UNET_MODULES = [
  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
  "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k",
  "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj",
  "up_blocks.1.attentions.0.proj_in",
  "down_blocks.0.resnets.0.conv1",
  "down_blocks.0.downsamplers.0.conv",
  "up_blocks.3.resnets.1.time_emb_proj",
];
export const TE_MODULES = ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.mlp.fc1"];

export interface Pair {
  component: "unet" | "text_encoder";
  module: string;
  down: Float32Array;
  downShape: number[];
  up: Float32Array;
  upShape: number[];
  alpha?: number;
}

async function shapesOf(file: string): Promise<Map<string, number[]>> {
  const st = await Safetensors.open(join(TINY, file));
  const m = new Map([...st.tensors].map(([k, v]) => [k, v.shape]));
  st.close();
  return m;
}

/** Random rank-`rank` factors for each module, shaped as kohya writes them (conv factors 4-D). */
export async function makePairs(seed: number, rank: number, alpha?: number): Promise<Pair[]> {
  const shapes = { unet: await shapesOf(UNET_FILE), text_encoder: await shapesOf(TE_FILE) };
  const pairs: Pair[] = [];
  let s = seed;
  for (const [component, modules] of [["unet", UNET_MODULES], ["text_encoder", TE_MODULES]] as const) {
    for (const module of modules) {
      const w = shapes[component].get(`${module}.weight`)!;
      const conv = w.length === 4;
      const downShape = conv ? [rank, w[1], w[2], w[3]] : [rank, w[1]];
      const upShape = conv ? [w[0], rank, 1, 1] : [w[0], rank];
      const n = (sh: number[]) => sh.reduce((p, d) => p * d, 1);
      pairs.push({
        component,
        module,
        down: randn(n(downShape), s++, 0.4),
        downShape,
        up: randn(n(upShape), s++, 0.4),
        upShape,
        alpha,
      });
    }
  }
  return pairs;
}

export function kohyaFile(pairs: Pair[]): Uint8Array {
  const t: Record<string, StEntry> = {};
  for (const p of pairs) {
    const k = `lora_${p.component === "unet" ? "unet" : "te"}_${p.module.replaceAll(".", "_")}`;
    t[`${k}.lora_down.weight`] = f32(p.down, p.downShape);
    t[`${k}.lora_up.weight`] = f32(p.up, p.upShape);
    if (p.alpha !== undefined) t[`${k}.alpha`] = f32(new Float32Array([p.alpha]), []);
  }
  return encodeSafetensors(t);
}

export function peftFile(pairs: Pair[]): Uint8Array {
  const t: Record<string, StEntry> = {};
  for (const p of pairs) {
    const k = `${p.component}.${p.module}`;
    t[`${k}.lora_A.weight`] = f32(p.down, p.downShape);
    t[`${k}.lora_B.weight`] = f32(p.up, p.upShape);
  }
  return encodeSafetensors(t);
}

/** tiny-sd with W += scale * alpha/rank * up @ down merged in float64 (stored f32), for each (pairs, scale). */
export async function mergedFolder(dir: string, loras: { pairs: Pair[]; scale: number }[]): Promise<string> {
  const out = join(dir, "merged");
  await new Deno.Command("cp", { args: ["-r", TINY, out] }).output();
  for (const [component, file] of [["unet", UNET_FILE], ["text_encoder", TE_FILE]] as const) {
    const st = await Safetensors.open(join(TINY, file));
    const t: Record<string, StEntry> = {};
    for (const [name, info] of st.tensors) {
      const w = Float64Array.from(await st.float32(name));
      for (const { pairs, scale } of loras) {
        for (const p of pairs.filter((p) => p.component === component && `${p.module}.weight` === name)) {
          const r = p.downShape[0], out = info.shape[0], k = w.length / out;
          const f = scale * (p.alpha ?? r) / r;
          for (let o = 0; o < out; o++) {
            for (let i = 0; i < k; i++) {
              let s = 0;
              for (let j = 0; j < r; j++) s += p.up[o * r + j] * p.down[j * k + i];
              w[o * k + i] += f * s;
            }
          }
        }
      }
      t[name] = f32(Float32Array.from(w), info.shape);
    }
    st.close();
    await Deno.writeFile(join(out, file), encodeSafetensors(t));
  }
  return out;
}
