// THE field registry: every request field, declared once. The request type (types.ts), validation and defaults
// (validate.ts), the CLI's options and --help (main.ts), the API's zod schema and OpenAPI document
// (routes/schema.ts) and the page's forms (routes/web/app.js, from GET /v1/fields) are all derived from it.
//
// Adding a field is a one-place edit: add an entry to FIELDS below (kind, help, and where they apply: modes, range,
// default per mode, the demo model's default, the limit that narrows it on a server, its page label). Everything
// above picks it up; tests/registry_test.ts then checks the CLI, the API and the page agree on it. Rules that tie
// two fields together (t0 < t1, end after start) go in validate.ts, the one place that raises request errors.
// A new kind of value also needs its TS type in `ValueOf`, its check in validate.ts `checkValue`,
// its zod type in routes/schema.ts `zodField` and its CLI parsing in main.ts `fromText`.
import { CONTROL_MODES, type Mode, MODES, VIDEO_MODES } from "./modes.ts";

/** "loras": a list of {name, scale}; "names": a list of names (files). */
export type Kind = "int" | "number" | "string" | "bool" | "enum" | "file" | "loras" | "names";
export type Value = number | string | boolean;

/** Server limits that narrow a field's range (routes/schema.ts `Limits` has these and more). */
export interface FieldLimits {
  /** Most output frames (videoLength; chunkSize). */
  maxFrames: number;
  /** Largest width, height or resolution (pixels). */
  maxResolution: number;
  /** Most denoising steps. */
  maxSteps: number;
  /** Longest prompt / negative prompt (characters). */
  maxPrompt: number;
}

export interface FieldSpec {
  kind: Kind;
  /** One line for --help, the OpenAPI description and the page's hint. */
  help: string;
  /** Short label for the page's form; fields without one are not on the page's generic form. */
  label?: string;
  /** Modes it applies to (default: all). */
  modes?: readonly Mode[];
  /** Every request must give it. */
  required?: true;
  /** Numbers: the value range; strings: the length range; lists: the most entries. */
  min?: number;
  max?: number;
  /** A mode's own lower bound, above `min` (text2video needs 2 steps). */
  modeMin?: Partial<Record<Mode, number>>;
  /** Integers that must be a multiple of this. */
  multipleOf?: number;
  /** enum: the allowed values. */
  values?: readonly string[];
  /** A value outside [min, max] with a meaning, accepted in `modes`. */
  special?: { value: number; modes: readonly Mode[]; means: string };
  /** Default: one value, or per mode. Computed defaults (seed, t0/t1, ...) live in validate.ts: see defaultHelp. */
  default?: Value | Partial<Record<Mode, Value>>;
  /** The built-in demo model's default where it differs (its UNet is sized for 64x64 frames). */
  demoDefault?: Value | Partial<Record<Mode, Value>>;
  /** Words for a default that validate.ts computes, or that depends on the mode beyond `default`. */
  defaultHelp?: string | Partial<Record<Mode, string>>;
  /** Only meaningful when this boolean field is true. */
  needs?: string;
  /** The server limit that narrows `max` (to the limit less `limitOffset`: t1 < steps). */
  limit?: keyof FieldLimits;
  limitOffset?: number;
  /** The CLI option's value name (--steps N); false: not a CLI option (another option sets it). */
  arg: string | false;
  /** The CLI option's name when it is not the field's in kebab-case (lists: one entry per option, repeatable). */
  flag?: string;
  /** Not a field of the JSON API (the video file travels as multipart form data). */
  notJson?: true;
}

const T2V: readonly Mode[] = ["text2video"];
/** A LoRA's scale (loras[].scale): negative values invert it, as in A1111. */
export const LORA_SCALE = { min: -10, max: 10 };
const MODEL_LEN = { min: 1, max: 1024 };

/** The request fields other than `mode`, in the order help and forms list them. */
export const FIELDS = {
  prompt: {
    kind: "string",
    help: "what to generate (pix2pix: the edit instruction); may be empty",
    required: true,
    min: 0,
    max: 10000,
    limit: "maxPrompt",
    arg: "TEXT",
  },
  negativePrompt: {
    kind: "string",
    help: "what to avoid",
    label: "Negative prompt",
    min: 0,
    max: 10000,
    limit: "maxPrompt",
    default: "",
    arg: "TEXT",
  },
  video: {
    kind: "file",
    help: "input video (mp4, webm, gif, mov, ...)",
    modes: VIDEO_MODES,
    arg: "FILE",
    notJson: true,
  },
  videoName: {
    kind: "string",
    help: "name of the input video (for messages)",
    modes: VIDEO_MODES,
    min: 1,
    max: 255,
    defaultHelp: "the file's name",
    arg: false,
  },
  model: {
    kind: "string",
    help: "base model: diffusers folder, .safetensors file, hub id, or 'demo' (server: a name from GET /v1/models)",
    ...MODEL_LEN,
    defaultHelp: "$ZEROVID_MODEL, else the built-in demo model",
    arg: "PATH|ID",
  },
  config: {
    kind: "string",
    help: "configs + tokenizer for a single-file model (a diffusers folder or hub id)",
    ...MODEL_LEN,
    arg: "DIR|ID",
  },
  controlnet: {
    kind: "string",
    help: "ControlNet folder or hub id",
    modes: CONTROL_MODES,
    ...MODEL_LEN,
    defaultHelp: "lllyasviel/sd-controlnet-<mode> (the demo's with the demo model)",
    arg: "DIR|ID",
  },
  videoLength: {
    kind: "int",
    help: "frames (text2video); at most this many frames of the input (video modes)",
    label: "Frames",
    min: 1,
    max: 1024,
    limit: "maxFrames",
    default: { text2video: 8 },
    defaultHelp: { pix2pix: "all", pose: "all", canny: "all", depth: "all" },
    arg: "N",
  },
  width: {
    kind: "int",
    help: "frame width, a multiple of 8 (video modes: with height, instead of resolution)",
    label: "Width",
    min: 64,
    max: 2048,
    multipleOf: 8,
    limit: "maxResolution",
    default: { text2video: 512 },
    demoDefault: { text2video: 64 },
    arg: "PX",
  },
  height: {
    kind: "int",
    help: "frame height, a multiple of 8 (video modes: with width, instead of resolution)",
    label: "Height",
    min: 64,
    max: 2048,
    multipleOf: 8,
    limit: "maxResolution",
    default: { text2video: 512 },
    demoDefault: { text2video: 64 },
    arg: "PX",
  },
  resolution: {
    kind: "int",
    help: "longer side of the input frames, rounded to multiples of 64",
    label: "Resolution",
    modes: VIDEO_MODES,
    min: 64,
    max: 2048,
    limit: "maxResolution",
    default: 512,
    demoDefault: 64,
    arg: "PX",
  },
  steps: {
    kind: "int",
    help: "denoising steps",
    label: "Steps",
    min: 1,
    max: 1000,
    modeMin: { text2video: 2 },
    limit: "maxSteps",
    default: { text2video: 50, pix2pix: 50, pose: 20, canny: 20, depth: 20 },
    demoDefault: 10,
    arg: "N",
  },
  guidanceScale: {
    kind: "number",
    help: "classifier-free guidance scale",
    label: "Guidance scale",
    min: 0,
    max: 30,
    default: { text2video: 7.5, pix2pix: 7.5, pose: 9, canny: 9, depth: 9 },
    arg: "G",
  },
  imageGuidanceScale: {
    kind: "number",
    help: "Instruct-Pix2Pix image guidance scale: how closely to follow the video",
    label: "Image guidance",
    modes: ["pix2pix"],
    min: 0,
    max: 10,
    default: 1,
    arg: "G",
  },
  controlScale: {
    kind: "number",
    help: "ControlNet conditioning scale",
    label: "Control scale",
    modes: CONTROL_MODES,
    min: 0,
    max: 5,
    default: 1,
    arg: "S",
  },
  lowThreshold: {
    kind: "number",
    help: "Canny low threshold (0-255)",
    label: "Low threshold",
    modes: ["canny"],
    min: 0,
    max: 255,
    default: 100,
    arg: "T",
  },
  highThreshold: {
    kind: "number",
    help: "Canny high threshold (0-255)",
    label: "High threshold",
    modes: ["canny"],
    min: 0,
    max: 255,
    default: 200,
    arg: "T",
  },
  // Motion per frame in pixels of a 512 frame. The original app's sliders go to +-20; 64 leaves room for fast pans
  // while a frame still overlaps the next one by 7/8 (beyond that the warp only shows the border).
  motionX: {
    kind: "number",
    help: "horizontal motion per frame (pixels of a 512 frame)",
    label: "Motion δx",
    modes: T2V,
    min: -64,
    max: 64,
    default: 12,
    arg: "D",
  },
  motionY: {
    kind: "number",
    help: "vertical motion per frame (pixels of a 512 frame)",
    label: "Motion δy",
    modes: T2V,
    min: -64,
    max: 64,
    default: 12,
    arg: "D",
  },
  t0: {
    kind: "int",
    help: "DDIM step index (from the end) where the motion warp starts (< t1)",
    label: "t0",
    modes: T2V,
    min: 0,
    max: 998,
    limit: "maxSteps",
    limitOffset: 2,
    defaultHelp: "44 of 50 steps, scaled",
    arg: "N",
  },
  t1: {
    kind: "int",
    help: "DDIM step index (from the end) the warped frames are re-noised to (< steps)",
    label: "t1",
    modes: T2V,
    min: 1,
    max: 999,
    limit: "maxSteps",
    limitOffset: 1,
    defaultHelp: "47 of 50 steps, scaled",
    arg: "N",
  },
  fps: {
    kind: "number",
    help: "frames per second of the output (video modes: the input is resampled to it)",
    label: "Frame rate",
    min: 0.1,
    max: 60,
    special: { value: -1, modes: VIDEO_MODES, means: "the source's" },
    default: { text2video: 4, pose: 4 },
    defaultHelp: { pix2pix: "the source's", canny: "the source's", depth: "the source's" },
    arg: "FPS",
  },
  start: {
    kind: "number",
    help: "first second of the input video used",
    label: "Start (s)",
    modes: VIDEO_MODES,
    min: 0,
    max: 86400,
    default: { pix2pix: 0 },
    defaultHelp: "0",
    arg: "SEC",
  },
  end: {
    kind: "number",
    help: "last second of the input video used",
    label: "End (s)",
    modes: VIDEO_MODES,
    min: 0.1, // after start (>= 0), checked in validate.ts
    max: 86400,
    special: { value: -1, modes: VIDEO_MODES, means: "to the end" },
    default: { pix2pix: -1 },
    defaultHelp: "the end",
    arg: "SEC",
  },
  chunkSize: {
    kind: "int",
    help: "frames per model call, anchor included (bounds GPU memory)",
    label: "Chunk size",
    min: 2,
    max: 1024,
    limit: "maxFrames",
    default: 8,
    arg: "N",
  },
  maxGpuMb: {
    kind: "int",
    help: "GPU memory this run may hold in MiB, weights included (shared GPUs): the planner fits the work under it",
    min: 16,
    max: 16777216,
    defaultHelp: "no cap but the GPU's limits (server: its --max-gpu-mb, which also caps this)",
    arg: "MB",
  },
  seed: {
    kind: "int",
    help: "random seed (reported with the result)",
    label: "Seed",
    min: 0,
    max: 0xffffffff,
    defaultHelp: "random",
    arg: "N",
  },
  precision: {
    kind: "enum",
    help: "storage precision",
    label: "Precision",
    values: ["f32", "f16"],
    defaultHelp: "f16 if the GPU has it",
    arg: "f16|f32",
  },
  format: {
    kind: "enum",
    help: "output file format (CLI: from --out's extension)",
    label: "Format",
    values: ["mp4", "gif", "webm", "png"],
    default: { text2video: "mp4", pix2pix: "mp4", pose: "gif", canny: "mp4", depth: "mp4" },
    arg: false,
  },
  loras: {
    kind: "loras",
    help: "LoRA files (.safetensors: kohya/A1111 or diffusers/PEFT), each with a scale (default 1); server: " +
      "names from GET /v1/models (kind lora)",
    label: "LoRA",
    max: 8,
    arg: "PATH[:SCALE]",
    flag: "lora",
  },
  embeddings: {
    kind: "names",
    help: "textual-inversion embeddings (.safetensors): write the token (A1111: the file name; diffusers: its " +
      "key) in a prompt; server: names from GET /v1/models (kind embedding)",
    label: "Embeddings",
    max: 16,
    arg: "PATH",
    flag: "embedding",
  },
  previewEvery: {
    kind: "int",
    help: "a live preview (latents to RGB, no VAE) every N denoising steps",
    label: "Preview every",
    min: 1,
    max: 1000,
    defaultHelp: "about 10 previews per run",
    arg: "N",
  },
  poseModel: {
    kind: "string",
    help: "pose detector (.onnx) to run on a raw video",
    modes: ["pose"],
    ...MODEL_LEN,
    defaultHelp: "none: the video is a rendered skeleton",
    arg: "FILE",
  },
  depthModel: {
    kind: "string",
    help: "MiDaS/DPT depth model (.onnx); required",
    modes: ["depth"],
    ...MODEL_LEN,
    arg: "FILE",
  },
  smoothBackground: {
    kind: "bool",
    help: "background smoothing (needs saliencyModel)",
    modes: T2V,
    default: false,
    arg: "",
  },
  smoothStrength: {
    kind: "number",
    help: "weight kept of each frame's own background (0-1)",
    modes: T2V,
    min: 0,
    max: 1,
    default: 0.4,
    needs: "smoothBackground",
    arg: "A",
  },
  saliencyModel: {
    kind: "string",
    help: "salient-object model (.onnx) for background smoothing",
    modes: T2V,
    ...MODEL_LEN,
    needs: "smoothBackground",
    arg: "FILE",
  },
} as const satisfies Record<string, FieldSpec>;

export type FieldName = keyof typeof FIELDS;
export const FIELD_NAMES = Object.keys(FIELDS) as FieldName[];

/** The registry entry of a field, or undefined for a name that is not a request field. */
export function fieldSpec(name: string): FieldSpec | undefined {
  return Object.hasOwn(FIELDS, name) ? (FIELDS as Record<string, FieldSpec>)[name] : undefined;
}

export function appliesTo(spec: FieldSpec, mode: Mode): boolean {
  return (spec.modes ?? MODES).includes(mode);
}

/** The fields of a mode, in registry order. */
export function modeFields(mode: Mode): FieldName[] {
  return FIELD_NAMES.filter((n) => appliesTo(FIELDS[n], mode));
}

export interface Bounds {
  min?: number;
  max?: number;
  multipleOf?: number;
  /** The special value allowed in this mode (-1), if any. */
  special?: number;
}

/** A field's range in a mode: the registry's, raised by the mode's own minimum, narrowed by a server's limits. */
export function boundsOf(name: FieldName, mode: Mode, limits?: Partial<FieldLimits>): Bounds {
  const s: FieldSpec = FIELDS[name];
  let min = s.min, max = s.max;
  const modeMin = s.modeMin?.[mode];
  if (modeMin !== undefined) min = Math.max(min ?? modeMin, modeMin);
  const cap = s.limit && limits?.[s.limit] !== undefined ? limits[s.limit]! - (s.limitOffset ?? 0) : undefined;
  if (cap !== undefined && max !== undefined) max = Math.max(min ?? -Infinity, Math.min(max, cap));
  const special = s.special && s.special.modes.includes(mode) ? s.special.value : undefined;
  return { min, max, multipleOf: s.multipleOf, special };
}

function perMode(v: FieldSpec["default"], mode: Mode): Value | undefined {
  if (v === undefined || typeof v !== "object") return v;
  return (v as Partial<Record<Mode, Value>>)[mode];
}

/** The registry's default of a field in a mode (the demo model's where it has one), or undefined. */
export function defaultOf(name: FieldName, mode: Mode, demo = false): Value | undefined {
  const s: FieldSpec = FIELDS[name];
  if (!appliesTo(s, mode)) return undefined;
  const d = demo ? perMode(s.demoDefault, mode) : undefined;
  return d ?? perMode(s.default, mode);
}

/** The default in words for help texts: the value, the demo model's, or what validate.ts computes. */
export function defaultText(name: FieldName, mode: Mode): string | undefined {
  const s: FieldSpec = FIELDS[name];
  const v = defaultOf(name, mode), demo = defaultOf(name, mode, true);
  const words = typeof s.defaultHelp === "object" ? s.defaultHelp[mode] : s.defaultHelp;
  let text = v === undefined || v === "" || v === false ? words : String(v);
  if (text !== undefined && demo !== v) text += `; demo model: ${demo}`;
  return text;
}

/** What a value must be, in words, for error messages: "an integer multiple of 8 in [64, 2048]". */
export function expected(name: FieldName, mode: Mode, limits?: Partial<FieldLimits>): string {
  const s: FieldSpec = FIELDS[name];
  const b = boundsOf(name, mode, limits);
  switch (s.kind) {
    case "enum":
      return `one of ${s.values!.join(", ")}`;
    case "bool":
      return "true or false";
    case "file":
      return "a file";
    case "loras":
      return `a list of at most ${s.max} {"name", "scale"} (scale in [${LORA_SCALE.min}, ${LORA_SCALE.max}])`;
    case "names":
      return `a list of at most ${s.max} names`;
    case "string":
      return b.min ? `a non-empty string of at most ${b.max} characters` : `a string of at most ${b.max} characters`;
    default: {
      const what = s.kind === "int"
        ? (b.multipleOf ? `an integer multiple of ${b.multipleOf}` : "an integer")
        : "a number";
      const special = b.special !== undefined ? ` or ${b.special} (${s.special!.means})` : "";
      return `${what} in [${b.min}, ${b.max}]${special}`;
    }
  }
}

/** One field as the page builds its input: range narrowed by the server's limits, default per mode. */
export interface FormField {
  name: FieldName;
  kind: Kind;
  label: string;
  help: string;
  min?: number;
  max?: number;
  step?: number | "any";
  values?: readonly string[];
  special?: number;
  /** What the special value means ("the source's"). */
  specialMeans?: string;
  /** Lists: the most entries (min and max are then a LoRA's scale range). */
  maxItems?: number;
  /** The default with a real model, and with the built-in demo model. */
  default?: Value;
  demoDefault?: Value;
  /** Words shown when the default is computed (empty input = that default). */
  defaultHelp?: string;
}

/**
 * The page's form per mode (GET /v1/fields): every field with a label that applies to the mode, with its range
 * narrowed by the server's limits and its defaults brought inside them.
 */
export function formFields(limits?: Partial<FieldLimits>): Record<Mode, FormField[]> {
  const out = {} as Record<Mode, FormField[]>;
  for (const mode of MODES) {
    out[mode] = modeFields(mode).filter((n) => (FIELDS[n] as FieldSpec).label).map((name) => {
      const s: FieldSpec = FIELDS[name];
      const b = boundsOf(name, mode, limits);
      const fit = (v: Value | undefined) =>
        typeof v === "number" && b.max !== undefined && v > b.max && v !== b.special
          ? (b.multipleOf ? Math.floor(b.max / b.multipleOf) * b.multipleOf : b.max)
          : v;
      // The input's step is exactly what the API accepts: multiples of `multipleOf` from min, any number.
      const step = s.kind === "int" ? b.multipleOf ?? 1 : s.kind === "number" ? "any" as const : undefined;
      const words = typeof s.defaultHelp === "object" ? s.defaultHelp[mode] : s.defaultHelp;
      const list = s.kind === "loras" || s.kind === "names";
      return {
        name,
        kind: s.kind,
        label: s.label!,
        help: s.help,
        min: s.kind === "loras" ? LORA_SCALE.min : list ? undefined : b.min,
        max: s.kind === "loras" ? LORA_SCALE.max : list ? undefined : b.max,
        maxItems: list ? s.max : undefined,
        step,
        values: s.values,
        special: b.special,
        specialMeans: b.special !== undefined ? s.special!.means : undefined,
        default: fit(defaultOf(name, mode)),
        demoDefault: fit(defaultOf(name, mode, true)),
        defaultHelp: words,
      };
    });
  }
  return out;
}
