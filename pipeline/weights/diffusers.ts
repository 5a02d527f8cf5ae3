// Diffusers folder layout: model_index.json at the root, one folder per component with config.json (or
// scheduler_config.json) and safetensors weights: single file, fp16 variant, or shards with an index.
import { join } from "node:path";
import { Safetensors } from "./safetensors.ts";
import { type TensorRef, TensorTable, type WeightSource } from "./source.ts";
import { WeightError } from "../errors.ts";

export type Json = Record<string, unknown>;

export interface PipelineIndex {
  className: string;
  /** Component name -> [library, class]; null entries (no safety checker) are left out. */
  components: Record<string, { library: string; className: string }>;
  raw: Json;
}

export interface Component {
  name: string;
  config: Json;
  weights: WeightSource;
}

export interface LoadOptions {
  /** Prefer this weight variant (e.g. "fp16"); the plain file is used when the folder has no such variant. */
  variant?: string;
}

/** Weight files of one component, found in a file listing. */
export type WeightFiles = { kind: "single"; file: string } | { kind: "sharded"; index: string };

const BASES = ["diffusion_pytorch_model", "model"];

/**
 * Which weights to read, from the names in a folder (`prefix` = "unet/" for a listing of the whole repository):
 * the wanted variant first, then the plain file, then any other variant.
 */
export function pickWeightFiles(names: Iterable<string>, prefix = "", variant?: string): WeightFiles | null {
  const set = new Set(names);
  const others = [...set].map((n) =>
    n.slice(prefix.length).match(/^(?:diffusion_pytorch_model|model)\.(\w+)\.safetensors$/)
  )
    .filter((m) => m !== null).map((m) => m![1]);
  const order = [...new Set([...(variant ? [variant] : []), "", ...others])];
  for (const v of order) {
    for (const base of BASES) {
      const single = `${prefix}${base}${v ? `.${v}` : ""}.safetensors`;
      if (set.has(single)) return { kind: "single", file: single };
      const indexes = v
        ? [`${prefix}${base}.safetensors.index.${v}.json`, `${prefix}${base}.${v}.safetensors.index.json`]
        : [`${prefix}${base}.safetensors.index.json`];
      for (const index of indexes) if (set.has(index)) return { kind: "sharded", index };
    }
  }
  return null;
}

/** Files that hold weights we cannot read (pickle, flax, onnx): named in the error for a folder without safetensors. */
export function unsupportedWeightFiles(names: Iterable<string>): string[] {
  return [...names].filter((n) => /\.(bin|ckpt|pt|pth|msgpack|onnx)$/.test(n) || /\.bin\.index(\.\w+)?\.json$/.test(n));
}

export async function loadPipelineIndex(dir: string): Promise<PipelineIndex> {
  const raw = await readJson(join(dir, "model_index.json"), "a diffusers pipeline folder has model_index.json");
  const components: PipelineIndex["components"] = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k.startsWith("_") || !Array.isArray(v) || v.length !== 2 || v[0] === null || v[1] === null) continue;
    components[k] = { library: String(v[0]), className: String(v[1]) };
  }
  return { className: String(raw._class_name ?? ""), components, raw };
}

/** A component's config: `<dir>/<component>/config.json`, or scheduler_config.json for schedulers. */
export async function loadConfig(dir: string, component: string): Promise<Json> {
  const cdir = join(dir, component);
  for (const f of ["config.json", "scheduler_config.json"]) {
    try {
      return JSON.parse(await Deno.readTextFile(join(cdir, f)));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      if (e instanceof SyntaxError) throw new WeightError(`${join(cdir, f)}: invalid JSON (${e.message})`);
      throw e;
    }
  }
  throw new WeightError(`${cdir}: no config.json or scheduler_config.json (is "${component}" a component of ${dir}?)`);
}

/** Config and weights of one component; `component` "" reads a bare model folder (e.g. a ControlNet repository). */
export async function loadComponent(dir: string, component: string, opts: LoadOptions = {}): Promise<Component> {
  const cdir = join(dir, component);
  const config = await loadConfig(dir, component);
  const names = await listDir(cdir);
  const picked = pickWeightFiles(names, "", opts.variant);
  if (!picked) {
    const bad = unsupportedWeightFiles(names);
    if (bad.length) {
      throw new WeightError(
        `${cdir}: only ${bad.join(", ")}; PyTorch pickle (.bin/.ckpt) and other formats are not supported ` +
          `(loading pickle can run code). Convert to safetensors, e.g. with diffusers: ` +
          `Model.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`,
      );
    }
    throw new WeightError(
      `${cdir}: no diffusion_pytorch_model.safetensors or model.safetensors (has: ${names.join(", ")})`,
    );
  }
  const files = picked.kind === "single" ? [picked.file] : await shardFiles(join(cdir, picked.index));
  const opened: Safetensors[] = [];
  try {
    for (const f of files) opened.push(await Safetensors.open(join(cdir, f)));
  } catch (e) {
    for (const s of opened) s.close();
    throw e;
  }
  const label = `${component || cdir} (${join(cdir, picked.kind === "single" ? picked.file : picked.index)})`;
  let table: TensorTable;
  try {
    table = TensorTable.fromFiles(label, opened);
  } catch (e) {
    for (const s of opened) s.close();
    throw e;
  }
  return { name: component, config, weights: renameDeprecatedAttention(table, label) };
}

/** Shard file names listed by a `*.safetensors.index.json` (its weight_map values). */
export async function shardFiles(indexPath: string): Promise<string[]> {
  const index = await readJson(indexPath, "a sharded checkpoint index");
  const map = index.weight_map as Record<string, string> | undefined;
  if (!map || typeof map !== "object") throw new WeightError(`${indexPath}: no weight_map`);
  return [...new Set(Object.values(map))].sort();
}

// Older diffusers checkpoints (SD 1.5's own VAE among them) name the VAE attention query/key/value/proj_attn.
const DEPRECATED: Record<string, string> = { query: "to_q", key: "to_k", value: "to_v", proj_attn: "to_out.0" };

function renameDeprecatedAttention(table: TensorTable, label: string): WeightSource {
  const re = /^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$/;
  if (!table.names().some((n) => re.test(n))) return table;
  const entries = new Map<string, TensorRef>();
  for (const n of table.names()) {
    const m = n.match(re);
    entries.set(m ? `${m[1]}.${DEPRECATED[m[2]]}.${m[3]}` : n, table.ref(n));
  }
  return new TensorTable(label, entries, () => table.close());
}

async function listDir(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile || e.isSymlink) out.push(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new WeightError(`${dir}: folder not found`);
    throw e;
  }
  return out.sort();
}

async function readJson(path: string, what: string): Promise<Json> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new WeightError(`${path}: not found (${what})`);
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new WeightError(`${path}: invalid JSON (${(e as Error).message})`);
  }
}
