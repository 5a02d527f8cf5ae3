// Golden handlers for the Text2Video-Zero pipelines. Recorded noise is injected through the pipelines' NoiseSource;
// everything else runs through the same mode functions the CLI and the server call.
import { StableDiffusion } from "../../../pipeline/models/sd.ts";
import { concatF32, type NoiseSource } from "../../../pipeline/modes/common.ts";
import { text2video, type Text2VideoParams } from "../../../pipeline/modes/text2video.ts";
import { controlVideo } from "../../../pipeline/modes/controlnet_video.ts";
import { pix2pix } from "../../../pipeline/modes/pix2pix.ts";
import { loadControlNet } from "../../../pipeline/models/sd.ts";
import { resolve } from "node:path";
import type { CaseContext, CaseOutputs, Handler } from "../types.ts";

/** Serves recorded tensors: stream -> rows of a stored tensor, row index = frame (minus `base`). */
export class RecordedNoise implements NoiseSource {
  constructor(private streams: Record<string, { data: Float32Array; per: number; base: number }>) {}
  normal(stream: string, frame: number, count: number): Float32Array {
    const s = this.streams[stream];
    if (!s) throw new Error(`recorded noise has no stream "${stream}"`);
    if (count !== s.per) throw new Error(`recorded noise "${stream}": ${count} values asked, rows hold ${s.per}`);
    const row = frame - s.base;
    if (row < 0 || (row + 1) * s.per > s.data.length) {
      throw new Error(`recorded noise "${stream}" has no frame ${frame}`);
    }
    return s.data.slice(row * s.per, (row + 1) * s.per);
  }
}

export async function stream(ctx: CaseContext, name: string, base = 0) {
  const { data, shape } = await ctx.input(name);
  return { data, per: shape.slice(1).reduce((p, d) => p * d, 1), base };
}

async function loadSD(ctx: CaseContext): Promise<StableDiffusion> {
  return await StableDiffusion.load(ctx.dev, ctx.modelPath(), { dtype: ctx.precision });
}

function t2vParams(ctx: CaseContext, frameIds?: number[]): Text2VideoParams {
  const p = ctx.c.params;
  return {
    prompt: p.prompt as string,
    negativePrompt: p.negative_prompt as string,
    videoLength: frameIds?.length ?? p.video_length as number,
    width: p.width as number,
    height: p.height as number,
    steps: p.num_inference_steps as number,
    guidanceScale: p.guidance_scale as number,
    t0: p.t0 as number,
    t1: p.t1 as number,
    motionX: p.motion_field_strength_x as number,
    motionY: p.motion_field_strength_y as number,
    frameIds: frameIds ?? p.frame_ids as number[],
  };
}

async function text2videoCase(ctx: CaseContext): Promise<CaseOutputs> {
  const sd = await loadSD(ctx);
  try {
    const noise = new RecordedNoise({
      latents: await stream(ctx, "latents"),
      forward: await stream(ctx, "forward_loop_eps", 1),
    });
    const p = t2vParams(ctx);
    const r = await text2video(sd, p, noise, {}, { keepStages: true });
    // The reference tokenized [prompt, negative prompt] (its embeddings are stacked the other way round).
    const ids = sd.tokenizer.encodeBatch([p.prompt, p.negativePrompt ?? ""]);
    return { ...r.stages!, input_ids: ids, frames: r.frames };
  } finally {
    sd.dispose();
  }
}

/** The diffusers documentation recipe: one pipeline call per chunk with frame_ids = [0] + range, first output dropped. */
async function text2videoChunkedCase(ctx: CaseContext): Promise<CaseOutputs> {
  const sd = await loadSD(ctx);
  try {
    const chunks = (ctx.c.params.chunk_frame_ids as number[][] | undefined) ?? recipeChunks(
      ctx.c.params.video_length as number,
      ctx.c.params.chunk_size as number,
    );
    const latents = await stream(ctx, "latents");
    const out: CaseOutputs = {};
    const frames: Float32Array[] = [], finals: Float32Array[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const noise = new RecordedNoise({ latents, forward: await stream(ctx, `forward_loop_eps_chunk${i}`, 1) });
      const r = await text2video(sd, t2vParams(ctx, chunks[i]), noise, {}, { keepStages: true });
      const perFrame = r.frames.length / chunks[i].length;
      frames.push(r.frames.slice(perFrame));
      const fl = r.stages!.final_latents as Float32Array;
      out[`final_latents_chunk${i}`] = fl;
      finals.push(fl.slice(fl.length / chunks[i].length));
      out.prompt_embeds = r.stages!.prompt_embeds;
    }
    out.frames = concatF32(frames);
    out.final_latents = concatF32(finals);
    return out;
  } finally {
    sd.dispose();
  }
}

/** The recipe's chunks: starts arange(0, F, chunk_size - 1), each [0] + range(start, next start or F). */
export function recipeChunks(F: number, chunkSize: number): number[][] {
  const starts: number[] = [];
  for (let s = 0; s < F; s += chunkSize - 1) starts.push(s);
  return starts.map((s, i) => [0, ...Array.from({ length: (starts[i + 1] ?? F) - s }, (_, k) => s + k)]);
}

/** Rows of a [rows, ...] array repeated per group: [r0 x f, r1 x f, ...] (how the references stack CFG batches). */
function expandRows(x: Float32Array, rows: number, index: number[]): Float32Array {
  const per = x.length / rows;
  return concatF32(index.map((r) => x.slice(r * per, (r + 1) * per)));
}

async function controlnetCase(ctx: CaseContext): Promise<CaseOutputs> {
  const sd = await loadSD(ctx);
  const cn = await loadControlNet(ctx.dev, resolve(ctx.dir, ctx.c.params.controlnet_model as string), ctx.precision);
  try {
    const p = ctx.c.params;
    const control = await ctx.input("control_frames");
    const [F, , H, W] = control.shape;
    const noise = new RecordedNoise({ latents: await stream(ctx, "latents_first_frame") });
    const r = await controlVideo(
      sd,
      cn,
      { data: control.data, frames: F, height: H, width: W },
      {
        prompt: p.prompt as string,
        negativePrompt: p.negative_prompt as string,
        steps: p.num_inference_steps as number,
        guidanceScale: p.guidance_scale as number,
        controlScale: p.controlnet_conditioning_scale as number,
      },
      noise,
      {},
      { keepStages: true },
    );
    const st = r.stages!;
    const embeds = expandRows(st.prompt_embeds as Float32Array, 2, [...Array(F).fill(0), ...Array(F).fill(1)]);
    return { ...st, prompt_embeds: embeds, frames: r.frames };
  } finally {
    cn.dispose();
    sd.dispose();
  }
}

async function pix2pixCase(ctx: CaseContext): Promise<CaseOutputs> {
  const sd = await loadSD(ctx);
  try {
    const p = ctx.c.params;
    const video = await ctx.input("video");
    const [F, , H, W] = video.shape;
    const steps = await ctx.input("step_noise");
    const per = steps.shape.slice(1).reduce((a, d) => a * d, 1);
    const streams: Record<string, { data: Float32Array; per: number; base: number }> = {
      latents: await stream(ctx, "latents"),
    };
    for (let i = 0; i < steps.shape[0]; i++) {
      streams[`step${i}`] = { data: steps.data.slice(i * per, (i + 1) * per), per: per / F, base: 0 };
    }
    const r = await pix2pix(
      sd,
      { data: video.data, frames: F, height: H, width: W },
      {
        prompt: p.prompt as string,
        negativePrompt: p.negative_prompt as string,
        steps: p.num_inference_steps as number,
        guidanceScale: p.guidance_scale as number,
        imageGuidanceScale: p.image_guidance_scale as number,
      },
      new RecordedNoise(streams),
      {},
      { keepStages: true },
    );
    const st = r.stages!;
    const groups = (a: number, b: number, c: number) => [...Array(F).fill(a), ...Array(F).fill(b), ...Array(F).fill(c)];
    const frames = Array.from({ length: F }, (_, f) => f);
    return {
      ...st,
      prompt_embeds: expandRows(st.prompt_embeds as Float32Array, 3, groups(0, 1, 2)),
      image_latents: expandRows(st.image_latents as Float32Array, F + 1, [...frames, ...frames, ...Array(F).fill(F)]),
      frames: r.frames,
    };
  } finally {
    sd.dispose();
  }
}

export const handlers: Record<string, Handler> = {
  t2vz_controlnet: controlnetCase,
  t2vz_pix2pix: pix2pixCase,
  t2vz_text2video: text2videoCase,
  t2vz_text2video_chunked: text2videoChunkedCase,
};
