// The models a server may use: whatever the operator put under the model roots, found by a scan, and addressed by
// name (the path inside its root, "/"-separated). A request names models; only names the scan found resolve, so
// no request can reach a file outside the roots (absolute paths, "..", backslashes and unknown names are refused
// before anything touches the disk). Symlinks the operator placed inside a root are followed, as the operator's
// own choice (a Hugging Face cache keeps its files that way).
//
// Kinds: "sd" (diffusers Stable Diffusion pipeline folder), "pix2pix" (an Instruct-Pix2Pix pipeline folder),
// "controlnet" (a folder with a ControlNetModel config.json), "single-file" (an original-layout .safetensors
// checkpoint), "onnx" (an annotator model: depth, pose or saliency, told apart by its name), "lora" (a LoRA
// .safetensors, kohya or diffusers/PEFT keys), "embedding" (a textual-inversion .safetensors), and "demo" (the
// built-in demo model, offered when no root is configured).
import { join, resolve, sep } from "node:path";
import type { JobRequest } from "../pipeline/job/types.ts";
import { CONTROL_MODES, type Mode, MODES } from "../pipeline/job/modes.ts";
import { RequestError, WeightError } from "../pipeline/errors.ts";
import { DEMO_MODEL } from "../pipeline/models/demo.ts";
import { Safetensors } from "../pipeline/weights/safetensors.ts";

export type ModelKind = "sd" | "pix2pix" | "controlnet" | "single-file" | "onnx" | "lora" | "embedding" | "demo";
export type OnnxRole = "depth" | "pose" | "saliency";

export interface ModelEntry {
  name: string;
  kind: ModelKind;
  /** Modes this model serves (as the base model, the ControlNet or the annotator). */
  modes: Mode[];
  /** For onnx models: what the file is for (from its name); null when the name does not say. */
  role?: OnnxRole | null;
  /** Text-embedding width (768 for SD 1.x, 1024 for SD 2.x): pairs a single file with a config folder; for an
   * embedding, its vectors' width; for a LoRA, its cross-attention keys' input width when it has them. */
  crossAttentionDim?: number;
  /** Embeddings: the word to write in a prompt. */
  token?: string;
  /** Bytes on disk (files only). */
  bytes?: number;
  /** Why the file cannot be used (a truncated or corrupt .safetensors): listed, refused by name with this. */
  unusable?: string;
  /** Absolute path (never sent to clients). */
  path: string;
}

/** The request fields that name a model, and the kinds each accepts. */
export const MODEL_FIELDS = {
  model: ["sd", "pix2pix", "single-file", "demo"],
  config: ["sd", "pix2pix"],
  controlnet: ["controlnet", "demo"],
  poseModel: ["onnx"],
  depthModel: ["onnx"],
  saliencyModel: ["onnx"],
} as const satisfies Partial<Record<keyof JobRequest, readonly ModelKind[]>>;
export type ModelField = keyof typeof MODEL_FIELDS;

/** The request fields that name a list of files, and the kind each accepts. */
export const FILE_LIST_FIELDS = { loras: "lora", embeddings: "embedding" } as const;

/** What a .safetensors that is not a checkpoint holds: a LoRA, an embedding, or neither (a component's weights). */
function adapterKind(h: Safetensors, name: string): Omit<ModelEntry, "path" | "name"> | null {
  const keys = [...h.tensors.keys()];
  if (keys.some((k) => /(lora_down|lora_up|lora_A|lora_B|\.lora\.down|\.lora\.up|lora_linear_layer)\./.test(k))) {
    const k = keys.find((k) => /attn2[._]to_k.*(lora_down|lora_A|lora[._]down)/.test(k));
    const shape = k ? h.tensors.get(k)!.shape : undefined;
    return { kind: "lora", modes: [...MODES], crossAttentionDim: shape?.[1] };
  }
  // An embedding: A1111's emb_params, or diffusers' one key named by its token (not a module's weight).
  const single = keys.length === 1 && !/\.(weight|bias)$/.test(keys[0]) ? h.tensors.get(keys[0]) : undefined;
  const emb = h.tensors.get("emb_params") ?? single;
  if (emb && emb.shape.length >= 1 && emb.shape.length <= 2) {
    const token = h.tensors.has("emb_params") ? name.split("/").at(-1)!.replace(/\.safetensors$/i, "") : keys[0];
    return { kind: "embedding", modes: [...MODES], crossAttentionDim: emb.shape.at(-1), token };
  }
  return null;
}

const BASE_MODES: Mode[] = MODES.filter((m) => m !== "pix2pix");
const MAX_DEPTH = 4;

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  try {
    const v = JSON.parse(await Deno.readTextFile(path));
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}

function controlModes(name: string): Mode[] {
  const n = name.toLowerCase();
  const hits = CONTROL_MODES.filter((m) => m === "pose" ? /pose/.test(n) : n.includes(m));
  return hits.length ? hits : [...CONTROL_MODES];
}

function onnxRole(name: string): OnnxRole | null {
  const n = name.toLowerCase();
  if (/depth|midas|dpt/.test(n)) return "depth";
  if (/pose/.test(n)) return "pose";
  if (/salien|u2net|sod|background/.test(n)) return "saliency";
  return null;
}

/** Refuses anything that is not a plain relative name (the traversal check, before any lookup). */
export function checkName(field: string, name: string): void {
  const bad = name.length === 0 || name.length > 512 || name.startsWith("/") || name.includes("\\") ||
    name.includes("\0") || /^[A-Za-z]:/.test(name) || name.split("/").some((s) => s === ".." || s === "." || s === "");
  if (bad) {
    throw new RequestError(field, `must be a model name from GET /v1/models, not a path (got ${JSON.stringify(name)})`);
  }
}

/** Models known from elsewhere (an API node of many: the models its workers announce), each with path = name. */
export type RemoteModels = () => Promise<ModelEntry[]>;

export class ModelRegistry {
  readonly roots: string[];
  private cache: { at: number; list: ModelEntry[] } | null = null;
  private scanning: Promise<ModelEntry[]> | null = null;
  private rescanMs: number;
  private remote?: RemoteModels;

  constructor(roots: string[], opts: { rescanMs?: number; remote?: RemoteModels } = {}) {
    this.roots = roots.map((r) => resolve(r));
    this.rescanMs = opts.rescanMs ?? 10_000;
    this.remote = opts.remote;
  }

  /** True when the built-in demo model is offered: no root is configured (remote: the workers offer only it). */
  get demo(): boolean {
    if (this.remote) return !!this.cache?.list.length && this.cache.list.every((m) => m.kind === "demo");
    return this.roots.length === 0;
  }

  /** Every model under the roots (cached for a few seconds; a new folder shows up without a restart). */
  list(fresh = false): Promise<ModelEntry[]> {
    if (!fresh && this.cache && Date.now() - this.cache.at < this.rescanMs) return Promise.resolve(this.cache.list);
    this.scanning ??= this.scan().then((list) => {
      this.cache = { at: Date.now(), list };
      return list;
    }).finally(() => this.scanning = null);
    return this.scanning;
  }

  private async scan(): Promise<ModelEntry[]> {
    if (this.remote) return await this.remote();
    if (this.demo) {
      return [{ name: DEMO_MODEL, kind: "demo", modes: [...MODES], path: DEMO_MODEL }];
    }
    const out: ModelEntry[] = [];
    const seen = new Set<string>();
    for (const root of this.roots) {
      const st = await Deno.stat(root).catch(() => null);
      if (!st?.isDirectory) continue;
      await this.walk(root, "", 0, out, seen);
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  private async walk(dir: string, rel: string, depth: number, out: ModelEntry[], seen: Set<string>): Promise<void> {
    const add = (e: Omit<ModelEntry, "path">, path: string) => {
      if (seen.has(e.name)) return; // an earlier root has a model of that name
      seen.add(e.name);
      out.push({ ...e, path });
    };
    if (rel) {
      const index = await readJson(join(dir, "model_index.json"));
      if (index) {
        const unet = await readJson(join(dir, "unet", "config.json"));
        const cls = String(index._class_name ?? "");
        const pix = /InstructPix2Pix/i.test(cls) || unet?.in_channels === 8;
        const cad = Number(unet?.cross_attention_dim) || undefined;
        add({
          name: rel,
          kind: pix ? "pix2pix" : "sd",
          modes: pix ? ["pix2pix"] : [...BASE_MODES],
          crossAttentionDim: cad,
        }, dir);
        return;
      }
      const config = await readJson(join(dir, "config.json"));
      if (config && config._class_name === "ControlNetModel") {
        add({ name: rel, kind: "controlnet", modes: controlModes(rel) }, dir);
        return;
      }
    }
    if (depth >= MAX_DEPTH) return;
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return;
    }
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      if (e.name.startsWith(".") || e.name === "node_modules" || e.name.includes("\\")) continue;
      const path = join(dir, e.name);
      const name = rel ? `${rel}/${e.name}` : e.name;
      const st = await Deno.stat(path).catch(() => null); // follows symlinks
      if (!st) continue;
      if (st.isDirectory) {
        await this.walk(path, name, depth + 1, out, seen);
      } else if (st.isFile && /\.safetensors$/i.test(e.name)) {
        // The pipeline's reader checks the header and that every tensor lies inside the file.
        let h: Safetensors;
        try {
          h = await Safetensors.open(path);
        } catch (err) {
          if (!(err instanceof WeightError)) throw err;
          // Named as the client knows it: the server's path stays on the server.
          const why = err.message.split(path).join(name);
          add({ name, kind: "single-file", modes: [], unusable: why, bytes: st.size }, path);
          continue;
        }
        h.close();
        const first = h.tensors.get("model.diffusion_model.input_blocks.0.0.weight")?.shape;
        if (!first) {
          // Not an original-layout SD checkpoint: a LoRA, an embedding, or a component's weights (skipped).
          const a = adapterKind(h, name);
          if (a) add({ name, ...a, bytes: st.size }, path);
          continue;
        }
        const k = h.tensors.get("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")?.shape;
        const pix = first[1] === 8;
        add({
          name,
          kind: "single-file",
          modes: pix ? ["pix2pix"] : [...BASE_MODES],
          crossAttentionDim: k?.[1],
          bytes: st.size,
        }, path);
      } else if (st.isFile && /\.onnx$/i.test(e.name)) {
        const role = onnxRole(name);
        const modes: Mode[] = role === "depth" ? ["depth"] : role === "pose" ? ["pose"] : [];
        add({ name, kind: "onnx", role, modes, bytes: st.size }, path);
      }
    }
  }

  /** The entry a request field names; RequestError when it is a path, unknown, or the wrong kind for the mode. */
  async lookup(field: ModelField, name: string, mode: Mode): Promise<ModelEntry> {
    checkName(field, name);
    const list = await this.list();
    let e = list.find((m) => m.name === name);
    if (!e) e = (await this.list(true)).find((m) => m.name === name); // a model added since the last scan
    if (!e) {
      throw new RequestError(
        field,
        `unknown model ${JSON.stringify(name)}: GET /v1/models lists the models under the configured roots`,
      );
    }
    if (e.unusable) throw new RequestError(field, e.unusable);
    const kinds = MODEL_FIELDS[field] as readonly ModelKind[];
    if (!kinds.includes(e.kind)) {
      throw new RequestError(
        field,
        `${JSON.stringify(name)} is a ${e.kind} model; ${field} takes ${kinds.join(" or ")}`,
      );
    }
    if (field === "model" && !e.modes.includes(mode)) {
      throw new RequestError(field, `${JSON.stringify(name)} (${e.kind}) does not serve mode ${mode}`);
    }
    return e;
  }

  /** What a request that names no model gets for `field` in `mode` (undefined: leave it unset). */
  async defaultFor(field: ModelField, mode: Mode, chosen: Partial<Record<ModelField, ModelEntry>>): Promise<
    ModelEntry | undefined
  > {
    const list = await this.list();
    const pick = (kinds: ModelKind[], ok: (m: ModelEntry) => boolean = () => true) => {
      for (const k of kinds) {
        const hit = list.find((m) => m.kind === k && ok(m));
        if (hit) return hit;
      }
      return undefined;
    };
    switch (field) {
      case "model": {
        const kinds: ModelKind[] = ["demo", mode === "pix2pix" ? "pix2pix" : "sd", "single-file"];
        const hit = pick(kinds, (m) => m.modes.includes(mode));
        if (!hit) {
          const want = mode === "pix2pix" ? "an Instruct-Pix2Pix model" : "a Stable Diffusion model";
          throw new RequestError("model", `no model for mode ${mode} under the model roots (need ${want})`);
        }
        return hit;
      }
      case "config": {
        const base = chosen.model;
        if (base?.kind !== "single-file") return undefined;
        // A single file carries no tokenizer: take configs from a diffusers folder of the same text width.
        const kinds: ModelKind[] = base.modes.includes("pix2pix") ? ["pix2pix", "sd"] : ["sd", "pix2pix"];
        const hit = pick(kinds, (m) => m.crossAttentionDim === base.crossAttentionDim) ?? pick(kinds);
        if (!hit) {
          throw new RequestError(
            "config",
            `${base.name} is a single-file checkpoint, which carries no tokenizer: put a diffusers folder of the ` +
              "same family under the model roots and name it in config",
          );
        }
        return hit;
      }
      case "controlnet": {
        if (!CONTROL_MODES.includes(mode)) return undefined;
        if (chosen.model?.kind === "demo") return list.find((m) => m.kind === "demo");
        const named = pick(["controlnet"], (m) => m.modes.length === 1 && m.modes[0] === mode);
        const hit = named ?? pick(["controlnet"], (m) => m.modes.includes(mode));
        if (!hit) throw new RequestError("controlnet", `no ControlNet for mode ${mode} under the model roots`);
        return hit;
      }
      case "depthModel":
        return mode === "depth" ? pick(["onnx"], (m) => m.role === "depth") : undefined;
      default:
        return undefined; // poseModel (a skeleton video needs none), saliencyModel
    }
  }

  /**
   * Names -> entries for every model field of a request (defaults filled in for the mode). Returns the request
   * with absolute paths (what runJob reads) and the name of each path (to map results back).
   */
  async resolveRequest<T extends Partial<JobRequest> & { mode: Mode }>(
    req: T,
  ): Promise<{ names: T; paths: T; byPath: Map<string, string> }> {
    const chosen: Partial<Record<ModelField, ModelEntry>> = {};
    for (const field of Object.keys(MODEL_FIELDS) as ModelField[]) {
      const v = req[field];
      if (v !== undefined && v !== null) {
        if (typeof v !== "string") throw new RequestError(field, "expected a model name (a string)");
        chosen[field] = await this.lookup(field, v, req.mode);
      } else {
        const d = await this.defaultFor(field, req.mode, chosen);
        if (d) chosen[field] = d;
      }
    }
    if (chosen.config && chosen.model?.kind !== "single-file") {
      throw new RequestError("config", "only applies to a single-file (.safetensors) model");
    }
    const names = { ...req }, paths = { ...req };
    const byPath = new Map<string, string>();
    for (const [field, e] of Object.entries(chosen) as [ModelField, ModelEntry][]) {
      (names as Record<string, unknown>)[field] = e.name;
      (paths as Record<string, unknown>)[field] = e.path;
      byPath.set(e.path, e.name);
    }
    // LoRAs and embeddings: lists of names, each of the list's kind.
    const list = async (field: keyof typeof FILE_LIST_FIELDS, name: unknown): Promise<string> => {
      if (typeof name !== "string") throw new RequestError(field, "expected model names (strings)");
      checkName(field, name);
      const kind = FILE_LIST_FIELDS[field];
      const e = (await this.list()).find((m) => m.name === name) ??
        (await this.list(true)).find((m) => m.name === name);
      if (!e) throw new RequestError(field, `unknown ${kind} ${JSON.stringify(name)}: GET /v1/models lists them`);
      if (e.kind !== kind) throw new RequestError(field, `${JSON.stringify(name)} is a ${e.kind} model, not a ${kind}`);
      byPath.set(e.path, e.name);
      return e.path;
    };
    if (Array.isArray(req.loras)) {
      (paths as Partial<JobRequest>).loras = await Promise.all(
        req.loras.map(async (l) => ({ ...l, name: await list("loras", l?.name) })),
      );
    }
    if (Array.isArray(req.embeddings)) {
      (paths as Partial<JobRequest>).embeddings = await Promise.all(req.embeddings.map((n) => list("embeddings", n)));
    }
    return { names, paths, byPath };
  }

  /** A validated request with paths -> the same with the names clients know (what a job stores and shows). */
  namesOf<T extends Partial<JobRequest>>(req: T, byPath: Map<string, string>): T {
    const out = { ...req } as Record<string, unknown>;
    for (const [f, v] of Object.entries(req)) {
      if (typeof v === "string" && byPath.has(v)) out[f] = byPath.get(v);
    }
    if (req.loras) out.loras = req.loras.map((l) => ({ ...l, name: byPath.get(l.name) ?? l.name }));
    if (req.embeddings) out.embeddings = req.embeddings.map((n) => byPath.get(n) ?? n);
    return out as T;
  }

  /** Replaces root paths in a message by nothing, so errors name models as clients know them. */
  redact(text: string): string {
    let t = text;
    for (const r of this.roots) t = t.split(r + sep).join("").split(r).join("<models>");
    return t;
  }
}
