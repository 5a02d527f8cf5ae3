// LoRA files (.safetensors): kohya / A1111 (`lora_unet_*`, `lora_te_*` with .lora_down/.lora_up/.alpha, linear and
// conv layers incl. 3x3 LoCon) and diffusers / PEFT (`unet.*`, `text_encoder.*` with lora_A/lora_B, or the older
// .lora.down/.lora.up, lora_linear_layer and attention-processor names). Reading checks the file on its own;
// `planLora` checks it against a model's weights (names and shapes, no GPU work) and gives each weight's low-rank
// update W' = W + scale * (alpha / rank) * up @ down, which pipeline/models/adapters.ts merges on the GPU.
import { basename } from "node:path";
import { RequestError } from "../errors.ts";
import { Safetensors } from "./safetensors.ts";

/** A LoRA that cannot be read or does not fit the model: the request's fault (the job names the field). */
export class LoraError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "LoraError";
  }
}

export type LoraComponent = "unet" | "text_encoder";

/** One adapted layer as the file gives it. */
export interface LoraModule {
  component: LoraComponent;
  /** The module's name: diffusers' dotted path, or (kohya) that path with every "." written "_". */
  name: string;
  /** kohya names: matched against the model's names with dots replaced by underscores. */
  underscored: boolean;
  /** The file's key for the down matrix (for messages). */
  key: string;
  down: Float32Array;
  downShape: number[];
  up: Float32Array;
  upShape: number[];
  alpha?: number;
}

export interface LoraFile {
  path: string;
  /** File name without extension (for messages and listings). */
  name: string;
  format: "kohya" | "diffusers";
  modules: LoraModule[];
}

type Part = "down" | "up" | "alpha";

interface Parsed {
  component: LoraComponent;
  name: string;
  underscored: boolean;
  part: Part;
}

// kohya: lora_unet_<module with _>.lora_down.weight | .lora_up.weight | .alpha
const KOHYA = /^lora_(unet|te)_([A-Za-z0-9_]+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
// diffusers / PEFT: <component>.<module>.<suffix>; the component prefix is absent in early UNet-only files.
const DIFFUSERS_SUFFIX: [RegExp, Part][] = [
  [/\.lora_A(?:\.default)?\.weight$/, "down"],
  [/\.lora_B(?:\.default)?\.weight$/, "up"],
  [/\.lora(?:_linear_layer)?\.down\.weight$/, "down"],
  [/\.lora(?:_linear_layer)?\.up\.weight$/, "up"],
  [/\.alpha$/, "alpha"],
];
// Attention-processor names (diffusers <= 0.20): `attn1.processor.to_q_lora.down.weight` -> `attn1.to_q`.
const PROCESSOR = /\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;
const TE_PROCESSOR = /\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;
const UNET_PROJ: Record<string, string> = { to_q: "to_q", to_k: "to_k", to_v: "to_v", to_out: "to_out.0" };
const TE_PROJ: Record<string, string> = { to_q: "q_proj", to_k: "k_proj", to_v: "v_proj", to_out: "out_proj" };

function parseKey(key: string): Parsed | null {
  const k = KOHYA.exec(key);
  if (k) {
    const part: Part = k[3] === "alpha" ? "alpha" : k[3].startsWith("lora_down") ? "down" : "up";
    return { component: k[1] === "te" ? "text_encoder" : "unet", name: k[2], underscored: true, part };
  }
  let component: LoraComponent = "unet";
  let rest = key;
  if (key.startsWith("unet.")) rest = key.slice(5);
  else if (key.startsWith("text_encoder.")) component = "text_encoder", rest = key.slice(13);
  else if (!/^(down_blocks|mid_block|up_blocks)\./.test(key)) return null;
  const proc = (component === "unet" ? PROCESSOR : TE_PROCESSOR).exec(rest);
  if (proc) {
    const proj = (component === "unet" ? UNET_PROJ : TE_PROJ)[proc[1]];
    const name = `${rest.slice(0, proc.index)}.${proj}`;
    return { component, name, underscored: false, part: proc[2] as Part };
  }
  for (const [re, part] of DIFFUSERS_SUFFIX) {
    const m = re.exec(rest);
    if (m) return { component, name: rest.slice(0, m.index), underscored: false, part };
  }
  return null;
}

function hint(key: string): string {
  if (/^lora_te[12]_/.test(key) || key.startsWith("text_encoder_2.")) return " (an SDXL LoRA?)";
  if (/\.(hada_|lokr_|lora_mid\.|dora_scale|oft_)/.test(key)) {
    return " (LyCORIS LoHa/LoKr/Tucker/DoRA are not supported)";
  }
  if (/^lora_unet_(input|middle|output)_blocks?_/.test(key)) return " (original-layout module names are not supported)";
  return "";
}

/** Reads a LoRA file and checks it on its own: known key names, each down with its up, ranks that agree. */
export async function readLora(path: string): Promise<LoraFile> {
  const name = basename(path).replace(/\.safetensors$/i, "");
  if (!/\.safetensors$/i.test(path)) throw new LoraError(`${path}: LoRA files must be .safetensors`);
  let st: Safetensors;
  try {
    st = await Safetensors.open(path);
  } catch (e) {
    throw new LoraError(`${path}: ${(e as Error).message}`);
  }
  try {
    const groups = new Map<string, Partial<Record<Part, string>> & { p: Parsed }>();
    let kohya = 0;
    for (const key of st.tensors.keys()) {
      const p = parseKey(key);
      if (!p) {
        throw new LoraError(`${path}: "${key}" is not a LoRA key this reader knows${hint(key)}`);
      }
      if (p.underscored) kohya++;
      const id = `${p.component}|${p.name}`;
      const g = groups.get(id) ?? { p };
      if (g[p.part]) throw new LoraError(`${path}: "${key}" and "${g[p.part]}" are the same ${p.part} matrix`);
      g[p.part] = key;
      groups.set(id, g);
    }
    if (groups.size === 0) throw new LoraError(`${path}: holds no LoRA weights`);
    if (kohya && kohya !== st.tensors.size) throw new LoraError(`${path}: mixes kohya and diffusers key names`);
    const modules: LoraModule[] = [];
    for (const g of groups.values()) {
      const any = g.down ?? g.up ?? g.alpha!;
      if (!g.down || !g.up) {
        throw new LoraError(`${path}: "${any}" has no matching ${g.down ? "up" : "down"} matrix`);
      }
      const downShape = [...st.info(g.down).shape], upShape = [...st.info(g.up).shape];
      const r = downShape[0];
      const upTail = upShape.slice(2).every((d) => d === 1);
      if (downShape.length < 2 || upShape.length < 2 || upShape[1] !== r || !upTail || r < 1) {
        throw new LoraError(
          `${path}: "${g.down}" [${downShape}] and "${g.up}" [${upShape}] are not a rank-r pair (down [r, in...], up [out, r])`,
        );
      }
      let alpha: number | undefined;
      if (g.alpha) {
        const a = await st.float32(g.alpha);
        if (a.length !== 1 || !Number.isFinite(a[0])) throw new LoraError(`${path}: "${g.alpha}" is not one number`);
        alpha = a[0];
      }
      modules.push({
        component: g.p.component,
        name: g.p.name,
        underscored: g.p.underscored,
        key: g.down,
        down: await st.float32(g.down).catch(asLoraError(path)),
        downShape,
        up: await st.float32(g.up).catch(asLoraError(path)),
        upShape,
        alpha,
      });
    }
    return { path, name, format: kohya ? "kohya" : "diffusers", modules };
  } finally {
    st.close();
  }
}

function asLoraError(path: string): (e: unknown) => never {
  return (e) => {
    throw new LoraError(`${path}: ${(e as Error).message}`);
  };
}

/** A low-rank update of one weight: W' = W + up @ down, `up` already multiplied by scale * alpha / rank. */
export interface LoraDelta {
  /** [out, rank] row-major. */
  up: Float32Array;
  /** [rank, K] row-major, K = the weight's elements per output row (in, or in * kh * kw). */
  down: Float32Array;
  rank: number;
  out: number;
  k: number;
}

/** The model's side of a plan: each component's weights by diffusers name (`...to_q.weight`) with their shapes. */
export type WeightShapes = Record<LoraComponent, Map<string, readonly number[]>>;

/**
 * Matches every module of the files to a weight of the model and returns the updates per component and weight
 * name, several LoRAs on one weight stacked along the rank. Throws a LoraError naming an example key when modules
 * match no weight (a LoRA for another base model) or do not fit its shape. Host work only.
 */
export function planLora(
  loras: { file: LoraFile; scale: number }[],
  model: WeightShapes,
): Record<LoraComponent, Map<string, LoraDelta>> {
  const plan: Record<LoraComponent, Map<string, LoraDelta>> = { unet: new Map(), text_encoder: new Map() };
  const underscore: Record<LoraComponent, Map<string, string>> = { unet: new Map(), text_encoder: new Map() };
  for (const c of ["unet", "text_encoder"] as const) {
    for (const n of model[c].keys()) underscore[c].set(n.slice(0, -".weight".length).replace(/\./g, "_"), n);
  }
  for (const { file, scale } of loras) {
    if (!Number.isFinite(scale)) throw new LoraError(`${file.path}: scale must be a number, got ${scale}`);
    const unknown = file.modules.filter((m) => !weightName(m));
    if (unknown.length) {
      throw new LoraError(
        `${file.path}: ${unknown.length} of ${file.modules.length} LoRA modules match no ${
          unknown[0].component
        } weight of this model, e.g. "${unknown[0].key}" (a LoRA for another base model, e.g. SD 2.x on SD 1.x?)`,
      );
    }
    for (const m of file.modules) {
      const w = weightName(m)!;
      const shape = model[m.component].get(w)!;
      const out = shape[0], k = shape.slice(1).reduce((p, d) => p * d, 1);
      const rank = m.downShape[0];
      const downK = m.down.length / rank;
      const convFits = m.downShape.length !== 4 || shape.length !== 4 ||
        m.downShape.slice(1).every((d, i) => d === shape[i + 1]);
      if (m.upShape[0] !== out || downK !== k || !convFits) {
        throw new LoraError(
          `${file.path}: "${m.key}" updates ${m.component} weight "${w}" [${shape}] with up [${m.upShape}] @ down ` +
            `[${m.downShape}], which does not fit (a LoRA for another base model?)`,
        );
      }
      const factor = scale * (m.alpha ?? rank) / rank;
      const up = new Float32Array(out * rank);
      for (let i = 0; i < up.length; i++) up[i] = m.up[i] * factor;
      const prev = plan[m.component].get(w);
      plan[m.component].set(w, prev ? stack(prev, up, m.down, rank) : { up, down: m.down, rank, out, k });
    }
  }
  return plan;

  function weightName(m: LoraModule): string | undefined {
    if (m.underscored) return underscore[m.component].get(m.name);
    const n = `${m.name}.weight`;
    return model[m.component].has(n) ? n : undefined;
  }
}

/** [up1 | up2] @ [down1; down2] = up1 @ down1 + up2 @ down2. */
function stack(a: LoraDelta, up: Float32Array, down: Float32Array, rank: number): LoraDelta {
  const r = a.rank + rank, ups = new Float32Array(a.out * r);
  for (let o = 0; o < a.out; o++) {
    ups.set(a.up.subarray(o * a.rank, (o + 1) * a.rank), o * r);
    ups.set(up.subarray(o * rank, (o + 1) * rank), o * r + a.rank);
  }
  const downs = new Float32Array(r * a.k);
  downs.set(a.down);
  downs.set(down, a.rank * a.k);
  return { up: ups, down: downs, rank: r, out: a.out, k: a.k };
}
