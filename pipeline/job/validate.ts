// Request validation: the one place that raises request errors. Checks every given field against the registry
// (fields.ts: kind, range, modes), fills the defaults of the mode (the demo model's where it runs), computes the
// defaults that depend on other fields (t0/t1, seed, precision, model, ControlNet), and checks the rules that tie
// fields together. Modes downstream only assert their invariants.
import { RequestError } from "../errors.ts";
import type { DType } from "../gpu/device.ts";
import { DEMO_MODEL } from "../models/demo.ts";
import { outputSize } from "../media/frames.ts";
import { defaultT0T1 } from "../modes/text2video.ts";
import {
  appliesTo,
  boundsOf,
  defaultOf,
  expected,
  FIELD_NAMES,
  type FieldLimits,
  type FieldName,
  FIELDS,
  type FieldSpec,
  fieldSpec,
  LORA_SCALE,
} from "./fields.ts";
import { CONTROL_MODES, isMode, type Mode, MODES, VIDEO_MODES } from "./modes.ts";
import { demoPlanModels, folderPlanModels, memoryCap, planRun } from "./plan.ts";
import type { JobRequest, Precision } from "./types.ts";

/** ControlNets used when a real base model is configured but no controlnet is given (lllyasviel's SD 1.5 ones). */
export const DEFAULT_CONTROLNETS: Record<string, string> = {
  pose: "lllyasviel/sd-controlnet-openpose",
  canny: "lllyasviel/sd-controlnet-canny",
  depth: "lllyasviel/sd-controlnet-depth",
};
export const DEFAULT_PIX2PIX = "timbrooks/instruct-pix2pix";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The base model when the request names none: $ZEROVID_PIX2PIX_MODEL for pix2pix and $ZEROVID_MODEL for the others;
 * with nothing configured at all, the built-in demo model (pix2pix falls back to timbrooks/instruct-pix2pix only
 * when $ZEROVID_MODEL shows that real models are in use).
 */
export function defaultModel(mode: Mode): string {
  const base = env("ZEROVID_MODEL");
  if (mode === "pix2pix") return env("ZEROVID_PIX2PIX_MODEL") ?? (base ? DEFAULT_PIX2PIX : DEMO_MODEL);
  return base ?? DEMO_MODEL;
}

/** A value for messages: strings quoted and cut, bytes counted. */
export function shown(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "an object" : typeof v;
}

/**
 * Checks one field's value against the registry for a mode (kind, range, the mode's special value), narrowed by
 * `limits` where a server gives them. Throws RequestError naming the field and what was expected.
 */
export function checkValue(name: string, v: unknown, mode: Mode, limits?: Partial<FieldLimits>): void {
  const spec = fieldSpec(name);
  if (!spec) throw new RequestError(name, `unknown field (the fields are: mode, ${FIELD_NAMES.join(", ")})`);
  if (!appliesTo(spec, mode)) {
    throw new RequestError(name, `does not apply to mode ${mode} (only ${spec.modes!.join(", ")})`);
  }
  const field = name as FieldName;
  const fail = (): never => {
    throw new RequestError(name, `expected ${expected(field, mode, limits)}, got ${shown(v)}`);
  };
  const b = boundsOf(field, mode, limits);
  switch (spec.kind) {
    case "int":
    case "number": {
      if (typeof v !== "number" || !Number.isFinite(v)) fail();
      const n = v as number;
      if (n === b.special) return;
      if (spec.kind === "int" && !Number.isInteger(n)) fail();
      if ((b.min !== undefined && n < b.min) || (b.max !== undefined && n > b.max)) fail();
      if (b.multipleOf && n % b.multipleOf !== 0) fail();
      return;
    }
    case "string":
      if (typeof v !== "string") fail();
      if ((v as string).length < (b.min ?? 0) || (b.max !== undefined && (v as string).length > b.max)) fail();
      return;
    case "enum":
      if (typeof v !== "string" || !spec.values!.includes(v)) fail();
      return;
    case "bool":
      if (typeof v !== "boolean") fail();
      return;
    case "file":
      if (!(v instanceof Uint8Array)) throw new RequestError(name, `expected the file's bytes, got ${shown(v)}`);
      if (v.length === 0) throw new RequestError(name, "is empty (0 bytes)");
      return;
    case "loras":
    case "names": {
      if (!Array.isArray(v) || v.length > spec.max!) fail();
      (v as unknown[]).forEach((item, i) => {
        const entry = spec.kind === "loras" ? (item as { name?: unknown })?.name : item;
        const bad = (what: string): never => {
          throw new RequestError(name, `entry ${i + 1}: ${what}, got ${shown(item)}`);
        };
        if (typeof entry !== "string" || entry.length === 0 || entry.length > 1024) {
          bad(spec.kind === "loras" ? 'expected {"name": a file name, "scale": a number}' : "expected a file name");
        }
        if (spec.kind !== "loras") return;
        const { scale, ...rest } = item as { name: string; scale?: unknown };
        const extra = Object.keys(rest).filter((k) => k !== "name");
        if (extra.length) bad(`unknown key "${extra[0]}" (a LoRA is {"name", "scale"})`);
        const okScale = scale === undefined ||
          (typeof scale === "number" && Number.isFinite(scale) && scale >= LORA_SCALE.min && scale <= LORA_SCALE.max);
        if (!okScale) bad(`expected a scale in [${LORA_SCALE.min}, ${LORA_SCALE.max}]`);
      });
      return;
    }
  }
}

/** What validation knows of the GPU: shader-f16 decides the default precision; with its limits (and a server's
 *  memory cap) a request for the demo model or a local diffusers folder is planned here from the models' configs
 *  (a video mode's with its probed input), so one that cannot fit is refused at submission (single files, hub ids,
 *  and a video request validated without its probe are planned when loaded, still before any GPU work). */
export interface DeviceInfo {
  f16: boolean;
  maxBinding?: number;
  maxBuffer?: number;
  maxGpuBytes?: number;
}

/** A video mode's input as probed at submission: its size and the frames the request samples from it. */
export interface ProbedVideo {
  width: number;
  height: number;
  /** Frames the request's start/end/fps select (before videoLength's cap). */
  frames: number;
}

/**
 * Checks a request and fills in every default for its mode (model, seed, t0/t1, ...). Throws RequestError naming
 * the first bad field and what was expected. `device` decides the default precision (f16 with shader-f16); a
 * server's `limits` narrow the registry's ranges.
 */
export function validateRequest(
  req: JobRequest,
  device?: DeviceInfo,
  limits?: Partial<FieldLimits>,
  video?: ProbedVideo,
): JobRequest {
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    throw new RequestError("mode", `expected a request object, got ${shown(req)}`);
  }
  const mode = req.mode;
  if (!isMode(mode)) throw new RequestError("mode", `expected one of ${MODES.join(", ")}, got ${shown(mode)}`);
  const given: Record<string, unknown> = { mode };
  for (const [field, v] of Object.entries(req)) {
    if (field === "mode" || v === undefined || v === null) continue;
    checkValue(field, v, mode, limits);
    given[field] = v;
  }
  for (const name of FIELD_NAMES) {
    const needs = (FIELDS[name] as FieldSpec).needs;
    if (needs && given[name] !== undefined && given[needs] !== true) {
      throw new RequestError(name, `only applies with ${needs}`);
    }
  }

  const model = (given.model as string | undefined) ?? defaultModel(mode);
  const demo = model === DEMO_MODEL;
  const r: Record<string, unknown> = { mode };
  for (const name of FIELD_NAMES) {
    const spec: FieldSpec = FIELDS[name];
    if (spec.needs && given[spec.needs] !== true) continue;
    const v = given[name] ?? fitDefault(name, mode, defaultOf(name, mode, demo), limits);
    if (v !== undefined) r[name] = v;
  }
  r.model = model;
  return finish(r as JobRequest, given, mode, device, video);
}

/** A default brought inside a server's limits (512-pixel frames on a server that allows 256). */
function fitDefault(name: FieldName, mode: Mode, v: unknown, limits?: Partial<FieldLimits>): unknown {
  if (typeof v !== "number" || !limits) return v;
  const b = boundsOf(name, mode, limits);
  if (b.max === undefined || v <= b.max || v === b.special) return v;
  return b.multipleOf ? Math.floor(b.max / b.multipleOf) * b.multipleOf : b.max;
}

/** The defaults that depend on other fields, and the rules that tie fields together. */
function finish(
  r: JobRequest,
  given: Record<string, unknown>,
  mode: Mode,
  device?: DeviceInfo,
  video?: ProbedVideo,
): JobRequest {
  if (typeof r.prompt !== "string") throw new RequestError("prompt", "is required (the text to generate from)");
  if (r.smoothBackground === false) delete r.smoothBackground;
  if (CONTROL_MODES.includes(mode)) r.controlnet ??= r.model === DEMO_MODEL ? DEMO_MODEL : DEFAULT_CONTROLNETS[mode];
  if (r.config !== undefined && r.model === DEMO_MODEL) {
    throw new RequestError("config", "does not apply to the built-in demo model");
  }
  r.seed ??= crypto.getRandomValues(new Uint32Array(1))[0];
  if (r.loras) r.loras = r.loras.map((l) => ({ name: l.name, scale: l.scale ?? 1 }));
  if (r.embeddings && new Set(r.embeddings).size !== r.embeddings.length) {
    throw new RequestError("embeddings", "names an embedding twice");
  }
  r.precision ??= (device?.f16 ? "f16" : "f32") as Precision;

  const isVideo = VIDEO_MODES.includes(mode);
  // A server validates an upload probed on disk without its bytes (`video`: what the probe found).
  if (isVideo && !r.video && !video) throw new RequestError("video", `mode ${mode} needs an input video`);
  if (isVideo) r.videoName ??= "video";
  if (isVideo && (r.width === undefined) !== (r.height === undefined)) {
    const missing = r.width === undefined ? "width" : "height";
    throw new RequestError(missing, "give both width and height for an exact frame size, or neither (resolution)");
  }

  if (mode === "text2video") {
    const steps = r.steps!;
    const d = defaultT0T1(steps);
    r.t1 ??= r.t0 !== undefined && r.t0 >= d.t1 ? Math.min(r.t0 + 1, steps - 1) : d.t1;
    r.t0 ??= Math.min(d.t0, r.t1 - 1);
    if (!(0 <= r.t0 && r.t0 < r.t1 && r.t1 < steps)) {
      const bad = r.t1 >= steps || (given.t0 === undefined && given.t1 !== undefined) ? "t1" : "t0";
      throw new RequestError(bad, `need 0 <= t0 < t1 < steps (${steps}), got t0=${r.t0}, t1=${r.t1}`);
    }
    if (r.smoothBackground && !r.saliencyModel) {
      throw new RequestError("saliencyModel", "background smoothing needs a salient-object model (an .onnx file)");
    }
  }
  if (isVideo && r.end !== undefined && r.end !== -1 && r.end <= (r.start ?? 0)) {
    throw new RequestError("end", `must be after start (${r.start ?? 0} s), got ${r.end} s`);
  }
  if (mode === "canny" && r.lowThreshold! > r.highThreshold!) {
    throw new RequestError("lowThreshold", `must not exceed highThreshold (${r.highThreshold}), got ${r.lowThreshold}`);
  }
  if (mode === "depth" && !r.depthModel) {
    throw new RequestError("depthModel", "depth mode needs a MiDaS/DPT depth model (an .onnx file)");
  }
  if (device && (mode === "text2video" || video)) planAtSubmission(r, device, video);
  return r;
}

/**
 * Plans the run from the models' configs (the demo model, or a local diffusers folder with, for the control modes, a
 * local ControlNet folder) and the GPU's limits; a request that cannot fit is refused here. Others (single files,
 * hub ids) are planned when loaded.
 */
function planAtSubmission(r: JobRequest, device: DeviceInfo, video?: ProbedVideo): void {
  if (device.maxBinding === undefined || device.maxBuffer === undefined) return;
  const dtype = r.precision as DType;
  const control = CONTROL_MODES.includes(r.mode);
  let models;
  if (r.model === DEMO_MODEL) {
    if (control && r.controlnet !== DEMO_MODEL) return;
    models = demoPlanModels(dtype, r.mode);
  } else {
    if (control && r.controlnet === DEMO_MODEL) return;
    models = folderPlanModels(r.model!, dtype, control ? r.controlnet : undefined);
  }
  if (!models) return;
  // A video mode's frames are the input's, sized and sampled as the run will decode them.
  const size = video
    ? {
      ...outputSize(video.height, video.width, r.width !== undefined ? r : { resolution: r.resolution }),
      frames: Math.min(video.frames, r.videoLength ?? Infinity),
    }
    : { width: r.width!, height: r.height!, frames: r.videoLength! };
  try {
    planRun(
      models,
      {
        maxBinding: device.maxBinding,
        maxBuffer: device.maxBuffer,
        maxBytes: memoryCap(device.maxGpuBytes, r.maxGpuMb),
      },
      { mode: r.mode, ...size, chunkSize: r.chunkSize },
    );
  } catch (e) {
    // A video mode's size comes from resolution unless width and height were given.
    if (video && e instanceof RequestError && e.field === "width" && r.width === undefined) {
      throw new RequestError("resolution", e.detail, { cause: e });
    }
    throw e;
  }
}

/** The request as run, without the video bytes: every default filled in, so the job can be repeated. */
export function resolvedParams(r: JobRequest): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (k !== "video" && v !== undefined) p[k] = v;
  return p;
}
