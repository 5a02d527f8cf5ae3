// Running a job: validate the request, decode the input video, resolve and load the models through the shared
// cache, run the mode's runner (a table from mode to runner), encode the output. The CLI (main.ts) and the server
// (routes/) both call runJob.
import { blameOn, RequestError } from "../errors.ts";
import type { Device, DType } from "../gpu/device.ts";
import { type DecodeOptions, decodeVideo } from "../media/decode.ts";
import { encodeVideo } from "../media/encode.ts";
import { floatToFrames, type Frames } from "../media/frames.ts";
import { framesToPngs, pngDataUrl, rgbaToPng } from "../media/images.ts";
import { zipStore } from "../media/zip.ts";
import type { Lease, ModelCache, SDAdapter } from "../model_cache.ts";
import { applyLoras } from "../models/adapters.ts";
import type { ControlNet } from "../models/controlnet.ts";
import type { StableDiffusion } from "../models/sd.ts";
import { Cancelled, type RunHooks, SeededNoise, type StepInfo } from "../modes/common.ts";
import { controlVideo } from "../modes/controlnet_video.ts";
import { pix2pix } from "../modes/pix2pix.ts";
import { text2video } from "../modes/text2video.ts";
import { winogradBytes } from "../ops/winograd.ts";
import { checkEmbeddings, type Embedding, readEmbedding } from "../weights/embeddings.ts";
import type { HubOptions } from "../weights/hub.ts";
import { LoraError, type LoraFile, readLora } from "../weights/lora.ts";
import { CONTROL, framesToNCHW, saliencyFn } from "./annotate.ts";
import { appliesTo, FIELDS } from "./fields.ts";
import type { Mode } from "./modes.ts";
import { memoryCap, planRun, type RunPlan } from "./plan.ts";
import { checkModels, fileInRoots, resolveControlNet, type ResolveEnv, resolveSD } from "./resolve.ts";
import { CONTENT_TYPES, type JobProgress, type JobRequest, type JobResult, type PreviewImage } from "./types.ts";
import { resolvedParams, validateRequest } from "./validate.ts";

export interface JobEnv extends ResolveEnv {
  dev: Device;
  models: ModelCache;
  /** GPU memory a job may hold, weights included (a server's --max-gpu-mb), bytes; a request may ask for less. */
  maxGpuBytes?: number;
}

export interface JobHooks {
  onProgress?(p: JobProgress): void;
  signal?: AbortSignal;
  /** The generated frames before encoding: NHWC float32 in [0, 1] (for tests and previews). */
  onFrames?(frames: Float32Array, info: { count: number; width: number; height: number; fps: number }): void;
  /** Live previews while denoising (every `previewEvery` steps); none are made without this hook. */
  onPreview?(p: JobPreview): void;
  /** How the run was cut to fit the GPU (printed by the CLI, logged by the server). */
  onPlan?(plan: RunPlan): void;
}

/** A live preview: the strip's PNG and, for the server's SSE event, the same as a data: URL. */
export interface JobPreview extends PreviewImage {
  step: number;
  total: number;
  png: Uint8Array;
}

/** What a runner is given: the validated request, its models and input, and the job's progress plumbing. */
interface RunContext {
  dev: Device;
  r: JobRequest;
  sd: StableDiffusion;
  /** The ControlNet, for the modes that take one. */
  cn: ControlNet | null;
  /** The decoded input video, for the modes that take one. */
  input: Frames | null;
  /** The run's plan: its chunk size replaces the request's (an upper bound). */
  plan: RunPlan;
  /** Textual-inversion embeddings the prompts may use. */
  embeddings: Embedding[];
  noise: SeededNoise;
  /** Hooks for the mode: cancel signal, and progress that also attributes time to each stage. */
  hooks: RunHooks;
  report(p: JobProgress): void;
  timed<T>(phase: string, fn: () => Promise<T>): Promise<T>;
  /** Starts the stage clock afresh (time before it is not the mode's). */
  restartClock(): void;
}

interface Produced {
  /** [count, height, width, 3] in [0, 1] */
  frames: Float32Array;
  count: number;
  height: number;
  width: number;
  fps: number;
}

type Runner = (c: RunContext) => Promise<Produced>;

const runText2Video: Runner = async ({ r, sd, embeddings, noise, hooks, plan, restartClock }) => {
  const smoothing = r.smoothBackground
    ? { saliency: await saliencyFn(r.saliencyModel!, hooks.onProgress!), strength: r.smoothStrength! }
    : undefined;
  restartClock();
  const { frames } = await text2video(
    sd,
    {
      prompt: r.prompt,
      negativePrompt: r.negativePrompt,
      videoLength: r.videoLength!,
      width: r.width!,
      height: r.height!,
      steps: r.steps!,
      guidanceScale: r.guidanceScale!,
      t0: r.t0,
      t1: r.t1,
      motionX: r.motionX!,
      motionY: r.motionY!,
      chunkSize: plan.chunkSize,
      smoothing,
      embeddings,
    },
    noise,
    hooks,
  );
  return { frames, count: r.videoLength!, height: r.height!, width: r.width!, fps: r.fps! };
};

const runPix2Pix: Runner = async ({ r, sd, input, embeddings, noise, hooks, plan, restartClock }) => {
  const v = input!;
  restartClock();
  const { frames } = await pix2pix(
    sd,
    { data: framesToNCHW(v), frames: v.count, height: v.height, width: v.width },
    {
      prompt: r.prompt,
      negativePrompt: r.negativePrompt,
      steps: r.steps!,
      guidanceScale: r.guidanceScale!,
      imageGuidanceScale: r.imageGuidanceScale!,
      chunkSize: plan.chunkSize,
      embeddings,
    },
    noise,
    hooks,
  );
  return { frames, count: v.count, height: v.height, width: v.width, fps: v.fps };
};

const runControl: Runner = async (
  { dev, r, sd, cn, input, embeddings, noise, hooks, plan, report, timed, restartClock },
) => {
  const v = input!, F = v.count;
  report({ stage: "annotate", step: 0, total: 1, frames: F });
  const control = await timed("annotate", () => CONTROL[r.mode as keyof typeof CONTROL](dev, r, v));
  report({ stage: "annotate", step: 1, total: 1, frames: F });
  if (hooks.signal?.aborted) throw new Cancelled();
  restartClock();
  const { frames } = await controlVideo(
    sd,
    cn!,
    { data: control, frames: F, height: v.height, width: v.width },
    {
      prompt: r.prompt,
      negativePrompt: r.negativePrompt,
      steps: r.steps!,
      guidanceScale: r.guidanceScale!,
      controlScale: r.controlScale!,
      chunkSize: plan.chunkSize,
      embeddings,
    },
    noise,
    hooks,
  );
  return { frames, count: F, height: v.height, width: v.width, fps: v.fps };
};

/** The runner of each mode. */
const RUNNERS: Record<Mode, Runner> = {
  text2video: runText2Video,
  pix2pix: runPix2Pix,
  pose: runControl,
  canny: runControl,
  depth: runControl,
};

/** The request's LoRA files, read and checked on their own (a bad file fails before any model is loaded). */
async function readLoras(env: ResolveEnv, r: JobRequest): Promise<{ file: LoraFile; scale: number }[]> {
  const out = [];
  for (const l of r.loras ?? []) {
    const file = await readLora(await fileInRoots(env, l.name, "loras")).catch(blameOn("loras"));
    out.push({ file, scale: l.scale ?? 1 });
  }
  return out;
}

/** LoRAs as a model-cache adapter: merged for the job, undone when its last job hands the model back. */
async function loraAdapter(loras: { file: LoraFile; scale: number }[]): Promise<SDAdapter | undefined> {
  if (loras.length === 0) return undefined;
  // The file's identity includes its modification time: a LoRA rewritten in place is a new adapter.
  const ids = await Promise.all(loras.map(async (l) => {
    const st = await Deno.stat(l.file.path);
    return `${l.file.path}@${st.mtime?.getTime() ?? 0}:${st.size}*${l.scale}`;
  }));
  return { key: ids.join("|"), apply: (sd) => applyLoras(sd, loras) };
}

async function readEmbeddings(env: ResolveEnv, r: JobRequest): Promise<Embedding[]> {
  const out = [];
  for (const name of r.embeddings ?? []) {
    out.push(await readEmbedding(await fileInRoots(env, name, "embeddings")).catch(blameOn("embeddings")));
  }
  return out;
}

/** The input video as the request samples it; a file that is not a readable video is the user's error. */
async function decodeInput(r: JobRequest): Promise<Frames> {
  const opts: DecodeOptions = { start: r.start, end: r.end, fps: r.fps, maxFrames: r.videoLength };
  if (r.mode === "pix2pix") opts.fps ??= -1;
  if (r.width !== undefined && r.height !== undefined) {
    opts.width = r.width;
    opts.height = r.height;
  } else opts.resolution = r.resolution;
  const v = await decodeVideo(r.video!, opts, r.videoName).catch((e) => {
    throw e instanceof RequestError ? e : new RequestError("video", (e as Error).message, { cause: e });
  });
  if (v.count < 1) throw new RequestError("video", "has no frames in the chosen range");
  if (v.height % 8 || v.width % 8) {
    throw new RequestError("video", `frames of ${v.width}x${v.height} are not multiples of 8`);
  }
  return v;
}

export async function runJob(env: JobEnv, req: JobRequest, hooks: JobHooks = {}): Promise<JobResult> {
  const r = validateRequest(req, env.dev);
  const started = performance.now();
  const timings: Record<string, number> = {};
  const add = (k: string, ms: number) => timings[k] = (timings[k] ?? 0) + ms / 1000;
  const report = (p: JobProgress) => hooks.onProgress?.(p);
  const timed = async <T>(phase: string, fn: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      add(phase, performance.now() - t);
    }
  };
  const signal = hooks.signal;
  const checkAborted = () => {
    if (signal?.aborted) throw new Cancelled();
  };
  const dtype: DType = env.dev.dtypeFor(r.precision as DType);
  const hubOpts: HubOptions = {
    onProgress: (p) => report({ stage: "download", step: p.loaded, total: p.total ?? 0 }),
  };
  const leases: Lease<StableDiffusion | ControlNet>[] = [];
  try {
    // Input video first: a bad file fails before any model is downloaded or loaded.
    let input: Frames | null = null;
    if (r.video) {
      report({ stage: "decode_video", step: 0, total: 1 });
      input = await timed("decode_video", () => decodeInput(r));
      report({ stage: "decode_video", step: 1, total: 1, frames: input.count });
      checkAborted();
    }

    // LoRA and embedding files, read before any model: a file that is not one fails here.
    const loras = await timed("load", () => readLoras(env, r));
    const embeddings = await timed("load", () => readEmbeddings(env, r));

    // Models: a file that cannot be read or does not fit is the user's error on the field that named it. LoRAs
    // are checked against the model before any GPU work, then merged into copies of the weights for this job.
    report({ stage: "load", step: 0, total: 1 });
    const needsControlNet = appliesTo(FIELDS.controlnet, r.mode);
    const sdSpec = await timed("resolve", () => resolveSD(env, r, hubOpts));
    const cnSpec = needsControlNet ? await timed("resolve", () => resolveControlNet(env, r, hubOpts)) : null;
    checkAborted();
    const adapter = await loraAdapter(loras);
    const sdLease = await timed("load", () =>
      env.models.stableDiffusion(sdSpec, dtype, adapter).catch((e) => {
        throw e instanceof LoraError ? e.blame("loras") : e instanceof RequestError ? e.blame("model") : e;
      }));
    leases.push(sdLease);
    try {
      checkEmbeddings(embeddings, sdLease.model.textEncoder.cfg.hidden_size);
    } catch (e) {
      blameOn("embeddings")(e);
    }
    let cn: ControlNet | null = null;
    if (cnSpec) {
      const l = await timed("load", () => env.models.controlNet(cnSpec, dtype).catch(blameOn("controlnet")));
      leases.push(l);
      cn = l.model;
    }
    report({ stage: "load", step: 1, total: 1 });
    checkModels(r.mode, sdLease.model, cn);
    checkAborted();

    // The plan: frames per model call within the GPU's limits and the memory cap, or a clear refusal.
    const sd = sdLease.model;
    // Weights, and what Winograd's 3x3 convolutions add on this adapter (their transformed weights and scratch).
    const extra = winogradBytes(env.dev, [sd.unet.params, sd.vae.params, ...(cn ? [cn.params] : [])]);
    const weightBytes = sd.bytes + (cn?.params.bytes ?? 0) + extra;
    const plan = planRun(
      { unet: sd.unet.cfg, vae: sd.vae.cfg, controlnet: !!cn, dtype, weightBytes },
      {
        maxBinding: env.dev.maxBinding,
        maxBuffer: env.dev.maxBuffer,
        maxBytes: memoryCap(env.maxGpuBytes, r.maxGpuMb),
      },
      {
        mode: r.mode,
        width: input?.width ?? r.width!,
        height: input?.height ?? r.height!,
        frames: input?.count ?? r.videoLength!,
        chunkSize: r.chunkSize,
      },
    );
    hooks.onPlan?.(plan);

    // The mode, with its progress attributed to phases (time since the previous report goes to this stage).
    let last = performance.now();
    const tick = (p: StepInfo) => {
      const now = performance.now();
      add(p.stage, now - last);
      last = now;
      report(p);
    };
    const out = await RUNNERS[r.mode]({
      dev: env.dev,
      r,
      sd: sdLease.model,
      cn,
      input,
      plan,
      embeddings,
      noise: new SeededNoise(r.seed!),
      hooks: {
        signal,
        onProgress: tick,
        preview: previewHooks(r, hooks),
        vae: { encodeBandBytes: plan.encodeBandBytes, decodeBandBytes: plan.decodeBandBytes },
      },
      report,
      timed,
      restartClock: () => last = performance.now(),
    });
    for (const l of leases.splice(0)) l.release();
    const { frames, count: F, height: H, width: W, fps } = out;
    hooks.onFrames?.(frames, { count: F, width: W, height: H, fps });
    checkAborted();

    // Output file: a video, or the frames as lossless PNGs (in one zip).
    const format = r.format!;
    report({ stage: "encode_video", step: 0, total: F });
    let bytes: Uint8Array, images: { name: string; data: Uint8Array }[] | undefined;
    if (format === "png") {
      images = await timed("encode_video", () => Promise.resolve(framesToPngs(floatToFrames(frames, F, H, W, fps))));
      bytes = zipStore(images);
      report({ stage: "encode_video", step: F, total: F });
    } else {
      bytes = await timed("encode_video", () =>
        encodeVideo(floatToFrames(frames, F, H, W, fps), format, {
          onProgress: (f) => report({ stage: "encode_video", step: Math.round(f * F), total: F }),
        }));
    }
    timings.total = (performance.now() - started) / 1000;
    return {
      bytes,
      format,
      contentType: CONTENT_TYPES[format],
      params: resolvedParams(r),
      frames: F,
      width: W,
      height: H,
      fps,
      timings,
      images,
    };
  } finally {
    for (const l of leases) l.release();
  }
}

/** The mode's preview hooks when the caller wants previews: each strip as a PNG and a data: URL. */
function previewHooks(r: JobRequest, hooks: JobHooks): RunHooks["preview"] {
  const onPreview = hooks.onPreview;
  if (!onPreview) return undefined;
  return {
    every: r.previewEvery,
    onPreview: (p) => {
      const png = rgbaToPng(p.rgba, p.frames * p.width, p.height);
      const { step, total, frames, width, height } = p;
      onPreview({ step, total, frames, width, height, image: pngDataUrl(png), png });
    },
  };
}

/**
 * Previews as progress events (stage "preview", the strip in `preview`): how the server's queues carry them to
 * the SSE `preview` event.
 */
export function previewAsProgress(onProgress?: (p: JobProgress) => void): JobHooks["onPreview"] {
  return ({ step, total, frames, width, height, image }) =>
    onProgress?.({ stage: "preview", step, total, frames, preview: { frames, width, height, image } });
}
