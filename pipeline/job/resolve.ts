// Model resolution: a request's model fields -> what the model cache loads (a local folder or file, a name under a
// model root, a hub id downloaded into the hub cache, or the built-in demo model), and the check that the loaded
// models fit the mode. Every failure here is the user's, blamed on the field that named the model.
import { join, resolve as resolvePath } from "node:path";
import { blameOn, RequestError } from "../errors.ts";
import type { ControlNetSpec, SDSpec } from "../model_cache.ts";
import type { ControlNet } from "../models/controlnet.ts";
import { DEMO_MODEL } from "../models/demo.ts";
import type { StableDiffusion } from "../models/sd.ts";
import { type HubOptions, resolveModel } from "../weights/hub.ts";
import type { Mode } from "./modes.ts";
import type { JobRequest } from "./types.ts";

export interface ResolveEnv {
  /** Folders searched for a model given by name (`--model my-model` -> <root>/my-model) before the hub. */
  modelRoots?: string[];
  /** Hub options (endpoint, cache folder, token, offline) for models given as hub ids. */
  hub?: HubOptions;
}

type Location = Awaited<ReturnType<typeof resolveModel>>;

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** A model argument -> a local location: an existing path, a name under a model root, or a hub id. */
async function locate(env: ResolveEnv, spec: string, field: string, hubOpts: HubOptions = {}): Promise<Location> {
  const candidates = [spec];
  if (!spec.startsWith("/") && !spec.startsWith(".")) {
    for (const root of env.modelRoots ?? []) candidates.push(join(root, spec));
  }
  for (const c of candidates) {
    if (await exists(c)) return await resolveModel(c).catch(blameOn(field));
  }
  if (spec.startsWith("/") || spec.startsWith(".") || /\.safetensors$/i.test(spec)) {
    throw new RequestError(field, `${spec}: no such file or folder`);
  }
  return await resolveModel(spec, { ...env.hub, ...hubOpts }).catch(blameOn(field));
}

const variantOf = (r: JobRequest) => r.precision === "f16" ? "fp16" : undefined;

export async function resolveSD(env: ResolveEnv, r: JobRequest, hubOpts: HubOptions = {}): Promise<SDSpec> {
  if (r.model === DEMO_MODEL) return { kind: "demo", variant: r.mode === "pix2pix" ? "pix2pix" : "sd" };
  const variant = variantOf(r);
  const loc = await locate(env, r.model!, "model", { ...hubOpts, variant });
  if (loc.kind === "diffusers") {
    if (r.config !== undefined) throw new RequestError("config", "only applies to a single-file (.safetensors) model");
    return { kind: "diffusers", dir: loc.dir, variant };
  }
  if (loc.kind === "model") {
    throw new RequestError("model", `${r.model} holds one model (config.json), not a pipeline (model_index.json)`);
  }
  let configDir: string | undefined;
  if (r.config !== undefined) {
    const c = await locate(env, r.config, "config", { ...hubOpts, configOnly: true });
    if (c.kind === "single_file") throw new RequestError("config", "expected a diffusers folder or hub id, got a file");
    configDir = c.dir;
  }
  return { kind: "single_file", path: loc.path, configDir, variant };
}

export async function resolveControlNet(
  env: ResolveEnv,
  r: JobRequest,
  hubOpts: HubOptions = {},
): Promise<ControlNetSpec> {
  if (r.controlnet === DEMO_MODEL) return { kind: "demo" };
  const loc = await locate(env, r.controlnet!, "controlnet", { ...hubOpts, variant: variantOf(r) });
  if (loc.kind === "model") return { kind: "dir", dir: loc.dir };
  if (loc.kind === "diffusers") {
    // A pipeline folder with a controlnet/ component.
    if (await exists(join(loc.dir, "controlnet", "config.json"))) {
      return { kind: "dir", dir: join(loc.dir, "controlnet") };
    }
    throw new RequestError("controlnet", `${r.controlnet} is a pipeline folder without a controlnet/ component`);
  }
  throw new RequestError("controlnet", "single-file ControlNets are not supported: give a diffusers ControlNet folder");
}

/** A model of the wrong kind for the mode fails here with a clear message, not with a shape error mid-run. */
export function checkModels(mode: Mode, sd: StableDiffusion, cn: ControlNet | null): void {
  const latent = sd.vae.cfg.latent_channels, inC = sd.unet.cfg.in_channels;
  if (mode === "pix2pix" && inC !== 2 * latent) {
    throw new RequestError(
      "model",
      `${sd.source} is not an Instruct-Pix2Pix model (UNet in_channels ${inC}, need ${2 * latent})`,
    );
  }
  if (mode !== "pix2pix" && inC !== latent) {
    throw new RequestError(
      "model",
      `${sd.source} has a ${inC}-channel UNet (an Instruct-Pix2Pix model?): ${mode} needs a plain Stable Diffusion model`,
    );
  }
  if (!cn) return;
  const u = sd.unet.cfg, c = cn.cfg;
  const cross = (x: number | number[]) => Array.isArray(x) ? x[0] : x;
  if (
    cross(u.cross_attention_dim) !== cross(c.cross_attention_dim) ||
    u.block_out_channels.join() !== c.block_out_channels.join()
  ) {
    throw new RequestError(
      "controlnet",
      `does not fit the base model (ControlNet channels [${c.block_out_channels}], text dim ${
        cross(c.cross_attention_dim)
      }; UNet [${u.block_out_channels}], ${cross(u.cross_attention_dim)})`,
    );
  }
}

/** A file a field names by path, or (relative names) under a model root first: the server stores model names. */
export async function fileInRoots(env: ResolveEnv, name: string, field: string): Promise<string> {
  if (!name.startsWith("/") && !name.startsWith(".")) {
    for (const root of env.modelRoots ?? []) {
      if ((await Deno.stat(join(root, name)).catch(() => null))?.isFile) return resolvePath(join(root, name));
    }
  }
  return await localFile(name, field);
}

/** A local file a field names (ONNX models), as an absolute path. */
export async function localFile(path: string, field: string): Promise<string> {
  const st = await Deno.stat(path).catch(() => null);
  if (!st?.isFile) throw new RequestError(field, `${path}: no such file`);
  return resolvePath(path);
}
