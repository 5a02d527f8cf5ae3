// The building blocks shared by UNet, ControlNet and VAE: ResnetBlock2D, Attention (with Text2Video-Zero's
// cross-frame mode), BasicTransformerBlock / Transformer2DModel. Names and order follow diffusers.
import { adopt, scoped, type Tensor } from "../gpu/tensor.ts";
import { attention } from "../ops/attention.ts";
import { geglu } from "../ops/geglu.ts";
import { gather0 } from "../ops/layout.ts";
import {
  applyConv,
  applyGroupNorm,
  applyLayerNorm,
  applyLinear,
  type Conv,
  free,
  type Linear,
  type Norm,
  type Params,
} from "./layers.ts";

// ---------------------------------------------------------------------------------------------------------------
// Attention modes

/** Keys/values of the anchor frame per self-attention layer, shared by every chunk of a long video. It owns
 *  the recorded tensors (they leave the scope of the call that made them) until dispose(). */
export class AnchorKV {
  readonly store = new Map<string, { k: Tensor; v: Tensor }>();
  constructor(public mode: "record" | "use", readonly groups: number) {}

  keep(layer: string, k: Tensor, v: Tensor): void {
    const old = this.store.get(layer);
    if (old) free(old.k, old.v);
    this.store.set(layer, { k: k.detach(), v: v.detach() });
  }

  dispose(): void {
    for (const { k, v } of this.store.values()) free(k, v);
    this.store.clear();
  }
}

/** How self-attention picks its keys/values in one model call. */
export interface AttnContext {
  /** Cross-frame attention (Text2Video-Zero): the batch is `groups` guidance groups of frames, laid out
   * [group 0 frames..., group 1 frames...]; every frame reads K/V of frame 0 of its group. */
  crossFrame?: { groups: number };
  /** Anchor K/V: "record" keeps this call's self-attention K/V (the batch is just the anchors, one per group);
   * "use" attends every frame to the recorded anchor K/V instead of computing any. */
  anchor?: AnchorKV;
}

// ---------------------------------------------------------------------------------------------------------------
// ResnetBlock2D

export interface Resnet {
  norm1: Norm;
  conv1: Conv;
  /** Where this block's time_emb_proj sits in the model's stacked time projections (TimeProjections). */
  time_emb_proj?: { name: string; offset: number };
  norm2: Norm;
  conv2: Conv;
  conv_shortcut?: Conv;
}

/**
 * Every resnet's time_emb_proj, stacked into one Linear: the time embedding is the same for all of them, so one GEMM
 * per model call projects it for every block, and each block's conv1 adds its columns in its epilogue.
 */
export class TimeProjections {
  private names: string[] = [];
  private next = 0;
  linear?: Linear;

  /** Register block `name`'s time_emb_proj (if it has one); returns where its columns will be. */
  add(p: Params, name: string): Resnet["time_emb_proj"] {
    const w = `${name}.time_emb_proj`;
    if (!p.has(`${w}.weight`)) return undefined;
    const at = { name: w, offset: this.next };
    this.names.push(w);
    this.next += p.shape(`${w}.weight`)[0];
    return at;
  }

  /** Upload the stacked weights (after every block has been registered). */
  async load(p: Params): Promise<void> {
    if (this.names.length) this.linear = (await p.linearStack(this.names)).linear;
  }

  /** silu(temb) [Bt, temb_channels] -> every block's projection [Bt, total]. */
  project(embSilu: Tensor): Tensor {
    if (!this.linear) throw new Error("time projections: none were loaded");
    return applyLinear(this.linear, embSilu);
  }
}

export async function loadResnet(p: Params, name: string, temb?: TimeProjections): Promise<Resnet> {
  return {
    norm1: await p.norm(`${name}.norm1`),
    conv1: await p.conv(`${name}.conv1`),
    time_emb_proj: temb?.add(p, name),
    norm2: await p.norm(`${name}.norm2`),
    conv2: await p.conv(`${name}.conv2`),
    conv_shortcut: p.has(`${name}.conv_shortcut.weight`) ? await p.conv(`${name}.conv_shortcut`) : undefined,
  };
}

/** out = conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(silu(temb))))) + shortcut(x). `temb` holds every
 *  block's time projection ([1 or B, total], TimeProjections.project); conv1 adds this block's columns. */
export function resnet(r: Resnet, x: Tensor, temb: Tensor | undefined, groups: number, eps: number): Tensor {
  return scoped(x.dev, () => {
    const h0 = applyGroupNorm(r.norm1, x, groups, eps, true);
    const proj = r.time_emb_proj && temb ? { t: temb, offset: r.time_emb_proj.offset } : undefined;
    const h = applyConv(r.conv1, h0, { imageBias: proj });
    const h2 = applyGroupNorm(r.norm2, h, groups, eps, true);
    const shortcut = r.conv_shortcut ? applyConv(r.conv_shortcut, x) : x;
    return applyConv(r.conv2, h2, { residual: shortcut });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

export interface Attention {
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  to_out: Linear;
}

export async function loadAttention(p: Params, name: string): Promise<Attention> {
  return {
    to_q: await p.linear(`${name}.to_q`),
    to_k: await p.linear(`${name}.to_k`),
    to_v: await p.linear(`${name}.to_v`),
    to_out: await p.linear(`${name}.to_out.0`),
  };
}

/** Self-attention over tokens h [B, N, C]; returns residual + to_out(attn). `layer` names the layer for anchor K/V. */
export function selfAttention(
  a: Attention,
  h: Tensor,
  heads: number,
  ctx: AttnContext,
  layer: string,
  residual: Tensor,
): Tensor {
  return scoped(h.dev, () => {
    const B = h.shape[0];
    const q = applyLinear(a.to_q, h);
    let k: Tensor, v: Tensor, div = 1;
    if (ctx.anchor?.mode === "use") {
      const kv = ctx.anchor.store.get(layer);
      if (!kv) throw new Error(`anchor K/V for layer ${layer} were not recorded`);
      ({ k, v } = kv);
      div = groupFrames(B, ctx.anchor.groups);
    } else if (ctx.crossFrame && B > ctx.crossFrame.groups) {
      // Project K/V for the anchor frames only: the other frames' K/V would be discarded.
      const f = groupFrames(B, ctx.crossFrame.groups);
      const anchors = gather0(h, Array.from({ length: ctx.crossFrame.groups }, (_, g) => g * f));
      k = applyLinear(a.to_k, anchors);
      v = applyLinear(a.to_v, anchors);
      div = f;
    } else {
      k = applyLinear(a.to_k, h);
      v = applyLinear(a.to_v, h);
    }
    if (ctx.anchor?.mode === "record") ctx.anchor.keep(layer, k, v);
    const o = attention(q, k, v, heads, { kvBatchDiv: div });
    return applyLinear(a.to_out, o, { residual });
  });
}

/** Cross-attention of tokens h [B, N, C] to context [Bc, M, Dc]; Bc may divide B (un-repeated prompt embeddings). */
export function crossAttention(a: Attention, h: Tensor, context: Tensor, heads: number, residual: Tensor): Tensor {
  const B = h.shape[0], Bc = context.shape[0];
  if (B % Bc !== 0) throw new Error(`cross-attention: batch ${B} is not a multiple of the context batch ${Bc}`);
  return scoped(h.dev, () => {
    const q = applyLinear(a.to_q, h);
    const k = applyLinear(a.to_k, context);
    const v = applyLinear(a.to_v, context);
    const o = attention(q, k, v, heads, { kvBatchDiv: B / Bc });
    return applyLinear(a.to_out, o, { residual });
  });
}

function groupFrames(batch: number, groups: number): number {
  if (batch % groups !== 0) throw new Error(`cross-frame attention: batch ${batch} is not ${groups} equal groups`);
  return batch / groups;
}

// ---------------------------------------------------------------------------------------------------------------
// Transformer2DModel (BasicTransformerBlock: self-attn, cross-attn, GEGLU feed-forward)

export interface TransformerBlock {
  norm1: Norm;
  attn1: Attention;
  norm2: Norm;
  attn2: Attention;
  norm3: Norm;
  ff_in: Linear;
  ff_out: Linear;
}

export interface Transformer2D {
  name: string;
  norm: Norm;
  /** proj_in / proj_out as Linear layers (a 1x1 Conv2d's weight viewed as [out, in]). */
  proj_in: Linear;
  blocks: TransformerBlock[];
  proj_out: Linear;
  linearProjection: boolean;
  heads: number;
  groups: number;
}

export async function loadTransformer2D(
  p: Params,
  name: string,
  heads: number,
  groups: number,
  linearProjection: boolean,
): Promise<Transformer2D> {
  const blocks: TransformerBlock[] = [];
  for (let i = 0; p.has(`${name}.transformer_blocks.${i}.norm1.weight`); i++) {
    const b = `${name}.transformer_blocks.${i}`;
    blocks.push({
      norm1: await p.norm(`${b}.norm1`),
      attn1: await loadAttention(p, `${b}.attn1`),
      norm2: await p.norm(`${b}.norm2`),
      attn2: await loadAttention(p, `${b}.attn2`),
      norm3: await p.norm(`${b}.norm3`),
      ff_in: await p.linear(`${b}.ff.net.0.proj`),
      ff_out: await p.linear(`${b}.ff.net.2`),
    });
  }
  if (!blocks.length) throw new Error(`${p.component}: ${name} has no transformer_blocks`);
  const proj = async (n: string): Promise<Linear> => {
    if (linearProjection) return p.linear(n);
    const c = await p.conv(n);
    if (c.w.shape[2] !== 1 || c.w.shape[3] !== 1) throw new Error(`${p.component}: ${n} is not a 1x1 convolution`);
    return { w: c.w.view([c.w.shape[0], c.w.shape[1]]), b: c.b };
  };
  return {
    name,
    norm: await p.norm(`${name}.norm`),
    proj_in: await proj(`${name}.proj_in`),
    blocks,
    proj_out: await proj(`${name}.proj_out`),
    linearProjection,
    heads,
    groups,
  };
}

/** The feature map x [B, C, H, W] as tokens through the transformer blocks, back to a feature map plus x. The
 *  projections read and write the feature map's layout directly (no transposes). */
export function transformer2D(t: Transformer2D, x: Tensor, context: Tensor, ctx: AttnContext): Tensor {
  const [, , H, W] = x.shape;
  return scoped(x.dev, () => {
    const n = applyGroupNorm(t.norm, x, t.groups, 1e-6);
    let tokens = applyLinear(t.proj_in, n, { xChannelsFirst: true });
    t.blocks.forEach((b, i) => {
      tokens = scoped(x.dev, () => {
        adopt(tokens);
        const layer = `${t.name}.transformer_blocks.${i}.attn1`;
        const t1 = selfAttention(b.attn1, applyLayerNorm(b.norm1, tokens, 1e-5), t.heads, ctx, layer, tokens);
        const t2 = crossAttention(b.attn2, applyLayerNorm(b.norm2, t1, 1e-5), context, t.heads, t1);
        const g = geglu(applyLinear(b.ff_in, applyLayerNorm(b.norm3, t2, 1e-5)));
        return applyLinear(b.ff_out, g, { residual: t2 });
      });
    });
    return applyLinear(t.proj_out, tokens, { yChannelsFirst: [H, W], residual: x });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Timestep embedding (on the CPU: arguments reach ~1000 rad, so sin/cos are taken in float64)

/** diffusers get_timestep_embedding with float32 frequencies and arguments, as PyTorch computes them. */
export function timestepEmbedding(timesteps: number[], dim: number, flipSinToCos = true, freqShift = 0): Float32Array {
  const half = Math.floor(dim / 2);
  const out = new Float32Array(timesteps.length * dim);
  const lnMax = Math.fround(-Math.log(10000));
  const freqs = Array.from({ length: half }, (_, k) => {
    const e = Math.fround(Math.fround(lnMax * k) / Math.fround(half - freqShift));
    return Math.fround(Math.exp(e));
  });
  timesteps.forEach((t, b) => {
    const tf = Math.fround(t);
    for (let k = 0; k < half; k++) {
      const arg = Math.fround(tf * freqs[k]);
      const s = Math.sin(arg), c = Math.cos(arg);
      out[b * dim + k] = flipSinToCos ? c : s;
      out[b * dim + half + k] = flipSinToCos ? s : c;
    }
  });
  return out;
}
