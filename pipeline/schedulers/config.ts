// Scheduler configuration (a diffusers scheduler_config.json) and the float32 noise tables. The tables are built
// the way diffusers 0.25.1 builds them on PyTorch's CPU kernels, including their float32 rounding order, so that
// timesteps, sigmas and products match the reference bit for bit (see torchLinspaceF32 / torchProdF32).
import { RequestError } from "../errors.ts";

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type TimestepSpacing = "leading" | "linspace" | "trailing";
export type PredictionType = "epsilon" | "v_prediction" | "sample";

export interface SchedulerConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  /** Explicit betas (overrides beta_schedule), as in diffusers. */
  trained_betas: number[] | null;
  steps_offset: number;
  /**
   * Undefined when the JSON omits it (SD 1.5's PNDM config does): each scheduler then uses its diffusers class
   * default, "leading" for DDIM and "linspace" for Euler-ancestral.
   */
  timestep_spacing?: TimestepSpacing;
  /** DDIM: the final step uses alpha_cumprod 1 (true) or alphas_cumprod[0] (false). */
  set_alpha_to_one: boolean;
  clip_sample: boolean;
  clip_sample_range: number;
  prediction_type: PredictionType;
  /** DDIM eta (a step() argument in diffusers; kept here as the default). */
  eta: number;
  _class_name?: string;
}

export class SchedulerError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "SchedulerError";
  }
}

/** Stable Diffusion 1.5's scheduler settings (used for every field a config file leaves out). */
export const SD15_SCHEDULER: Readonly<SchedulerConfig> = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  trained_betas: null,
  steps_offset: 1,
  set_alpha_to_one: false,
  clip_sample: false,
  clip_sample_range: 1,
  prediction_type: "epsilon",
  eta: 0,
});

const SCHEDULES: BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];
const SPACINGS: TimestepSpacing[] = ["leading", "linspace", "trailing"];
const PREDICTIONS: PredictionType[] = ["epsilon", "v_prediction", "sample"];

/** Validate a parsed scheduler_config.json and fill the missing fields with SD 1.5's values. */
export function schedulerConfig(json: Record<string, unknown> = {}, source = "scheduler config"): SchedulerConfig {
  const get = <K extends keyof SchedulerConfig>(k: K): SchedulerConfig[K] =>
    (json[k] ?? SD15_SCHEDULER[k]) as SchedulerConfig[K];
  const cfg: SchedulerConfig = {
    num_train_timesteps: get("num_train_timesteps"),
    beta_start: get("beta_start"),
    beta_end: get("beta_end"),
    beta_schedule: get("beta_schedule"),
    trained_betas: get("trained_betas"),
    steps_offset: get("steps_offset"),
    timestep_spacing: (json.timestep_spacing ?? undefined) as TimestepSpacing | undefined,
    set_alpha_to_one: get("set_alpha_to_one"),
    clip_sample: get("clip_sample"),
    clip_sample_range: get("clip_sample_range"),
    prediction_type: get("prediction_type"),
    eta: get("eta"),
  };
  if (typeof json._class_name === "string") cfg._class_name = json._class_name;
  const bad = (what: string) => new SchedulerError(`${source}: ${what}`);
  const N = cfg.num_train_timesteps;
  if (!Number.isInteger(N) || N < 2) throw bad(`num_train_timesteps must be an integer >= 2, got ${N}`);
  if (!Number.isInteger(cfg.steps_offset) || cfg.steps_offset < 0) {
    throw bad(`steps_offset must be a non-negative integer, got ${cfg.steps_offset}`);
  }
  if (!SCHEDULES.includes(cfg.beta_schedule)) {
    throw bad(`beta_schedule "${cfg.beta_schedule}" is not supported (use ${SCHEDULES.join(", ")})`);
  }
  if (cfg.timestep_spacing !== undefined && !SPACINGS.includes(cfg.timestep_spacing)) {
    throw bad(`timestep_spacing "${cfg.timestep_spacing}" is not supported (use ${SPACINGS.join(", ")})`);
  }
  if (!PREDICTIONS.includes(cfg.prediction_type)) {
    throw bad(`prediction_type "${cfg.prediction_type}" is not supported (use ${PREDICTIONS.join(", ")})`);
  }
  if (cfg.trained_betas !== null) {
    if (!Array.isArray(cfg.trained_betas) || cfg.trained_betas.length !== N) {
      throw bad(`trained_betas must be a list of num_train_timesteps (${N}) numbers`);
    }
  } else if (!(cfg.beta_start > 0 && cfg.beta_end > 0 && cfg.beta_start < 1 && cfg.beta_end < 1)) {
    throw bad(`beta_start/beta_end must lie in (0, 1), got ${cfg.beta_start}/${cfg.beta_end}`);
  }
  if (!(cfg.eta >= 0)) throw bad(`eta must be >= 0, got ${cfg.eta}`);
  if (!(cfg.clip_sample_range > 0)) throw bad(`clip_sample_range must be > 0, got ${cfg.clip_sample_range}`);
  // Options that change the arithmetic and are not implemented: refuse rather than silently differ.
  if (json.thresholding === true) throw bad("thresholding (dynamic thresholding) is not supported");
  if (json.rescale_betas_zero_snr === true) throw bad("rescale_betas_zero_snr is not supported");
  if (json.use_karras_sigmas === true) throw bad("use_karras_sigmas is not supported");
  return cfg;
}

/** Read a diffusers scheduler config: the JSON file itself or the folder holding scheduler_config.json. */
export async function loadSchedulerConfig(path: string): Promise<SchedulerConfig> {
  let file = path;
  try {
    if ((await Deno.stat(path)).isDirectory) file = `${path.replace(/\/+$/, "")}/scheduler_config.json`;
  } catch (e) {
    throw new SchedulerError(`cannot read scheduler config ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    throw new SchedulerError(`cannot read scheduler config ${file}: ${(e as Error).message}`);
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) {
    throw new SchedulerError(`${file}: expected a JSON object`);
  }
  return schedulerConfig(json as Record<string, unknown>, file);
}

export interface NoiseTables {
  betas: Float32Array;
  /** 1 - betas (float32). */
  alphas: Float32Array;
  /** Cumulative product of alphas (float32 values of a float64 running product, as torch.cumprod on CPU). */
  alphasCumprod: Float32Array;
}

const f32 = Math.fround;
const tableCache = new WeakMap<SchedulerConfig, NoiseTables>();

/** The betas / alphas / alphas_cumprod tables of a config (cached per config object; treat as read-only). */
export function noiseTables(cfg: SchedulerConfig): NoiseTables {
  const hit = tableCache.get(cfg);
  if (hit) return hit;
  const N = cfg.num_train_timesteps;
  let betas: Float32Array;
  if (cfg.trained_betas) betas = Float32Array.from(cfg.trained_betas);
  else if (cfg.beta_schedule === "linear") betas = torchLinspaceF32(cfg.beta_start, cfg.beta_end, N);
  else if (cfg.beta_schedule === "scaled_linear") {
    betas = torchLinspaceF32(Math.sqrt(cfg.beta_start), Math.sqrt(cfg.beta_end), N).map((b) => f32(b * b));
  } else {
    // betas_for_alpha_bar("cosine", max_beta 0.999): Python float64, then a float32 tensor.
    const abar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
    betas = Float32Array.from({ length: N }, (_, i) => Math.min(1 - abar((i + 1) / N) / abar(i / N), 0.999));
  }
  const alphas = betas.map((b) => f32(1 - b));
  // torch.cumprod on CPU accumulates in double (acc_type<float> is double) and stores each prefix as float.
  const alphasCumprod = new Float32Array(N);
  let acc = 1;
  for (let i = 0; i < N; i++) alphasCumprod[i] = acc *= alphas[i];
  const t = { betas, alphas, alphasCumprod };
  tableCache.set(cfg, t);
  return t;
}

/**
 * torch.linspace(start, end, steps, dtype=float32) as PyTorch 1.13's CPU kernel computes it (AVX2 build): float32
 * step; the first half counts up from start and the second half down from end; 8-lane vectors take their base
 * from that formula and add k*step per lane; the last partial double-vector falls back to scalars. The compiler
 * contracts `a + b*c` into an FMA (one rounding), which the double-precision expressions below reproduce: every
 * product and sum of these float32 operands is exact in float64. Matches the golden alphas_cumprod bit for bit.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f32(start), e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const at = (idx: number) => idx < half ? f32(s + step * idx) : f32(e - step * (steps - idx - 1));
  const V = 8;
  let i = 0;
  for (; i <= steps - 2 * V; i += V) {
    const base = at(i);
    for (let k = 0; k < V; k++) out[i + k] = f32(base + k * step);
  }
  for (; i < steps; i++) out[i] = at(i);
  return out;
}

/**
 * torch.prod of a contiguous float32 vector as PyTorch 1.13's CPU reduction orders it (AVX2, 8 lanes): blocks of
 * 32 go into 4 vector accumulators, which are combined (0*1)*(2*3), then reduced lane by lane; the tail is
 * multiplied in sequentially. Float32 rounding at every product. Matches the golden alpha_vec bit for bit.
 */
export function torchProdF32(values: ArrayLike<number>): number {
  const V = 8, n = values.length, blocks = Math.floor(n / (4 * V));
  let out = 1;
  if (blocks > 0) {
    const acc = Array.from({ length: 4 }, (_, j) => Array.from({ length: V }, (_, k) => f32(values[j * V + k])));
    for (let b = 1; b < blocks; b++) {
      for (let j = 0; j < 4; j++) {
        for (let k = 0; k < V; k++) acc[j][k] = f32(acc[j][k] * values[b * 4 * V + j * V + k]);
      }
    }
    const lanes = acc[0].map((v, k) => f32(f32(v * acc[1][k]) * f32(acc[2][k] * acc[3][k])));
    let r = lanes[0];
    for (let k = 1; k < V; k++) r = f32(r * lanes[k]);
    out = r;
  }
  for (let i = blocks * 4 * V; i < n; i++) out = f32(out * values[i]);
  return out;
}

/** numpy.linspace(start, stop, num) in float64 (endpoint included). */
export function npLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = num > 1 ? (stop - start) / (num - 1) : 0;
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** numpy.arange(start, stop, step) for float64: fills start + i*delta with delta = (start+step) - start. */
export function npArange(start: number, stop: number, step: number): Float64Array {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const delta = (start + step) - start;
  return Float64Array.from({ length: len }, (_, i) => i === 0 ? start : i === 1 ? start + step : start + i * delta);
}

/**
 * diffusers' "trailing" spacing: round(arange(N, 0, -N/n)) - 1. For some n (61, 103, ...) numpy's arange yields
 * n + 1 values (the last one rounds to timestep -1), which diffusers does not guard against: refuse those.
 */
export function trailingTimesteps(n: number, N: number, who: string): Float64Array {
  const ts = npArange(N, 0, -N / n).map((v) => roundHalfEven(v) - 1);
  if (ts.length !== n) {
    throw new SchedulerError(
      `${who}: "trailing" spacing with ${n} steps gives ${ts.length} timesteps (numpy arange rounding, ending at ` +
        `${ts[ts.length - 1]}); choose another step count`,
    );
  }
  return ts;
}

/** numpy.round / rint: round half to even. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
