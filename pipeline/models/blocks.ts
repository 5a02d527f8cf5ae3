// The building blocks shared by UNet, ControlNet and VAE: ResnetBlock2D, Attention (with Text2Video-Zero's
// cross-frame mode), BasicTransformerBlock / Transformer2DModel. Names and order follow diffusers.
import { adopt, scoped, type Tensor } from "../gpu/tensor.ts";
import { attention, type AttentionOperand, type Cols } from "../ops/attention.ts";
import type { LinearOpts } from "../ops/matmul.ts";
import { gather0 } from "../ops/layout.ts";
import {
  applyConv,
  applyGroupNorm,
  applyLinear,
  type Conv,
  free,
  type Linear,
  linearRows,
  type Norm,
  type Params,
} from "./layers.ts";

// ---------------------------------------------------------------------------------------------------------------
// Attention modes

/** Keys/values of the anchor frame per self-attention layer, shared by every chunk of a long video. It owns
 *  the recorded tensors (they leave the scope of the call that made them) until dispose(). */
export class AnchorKV {
  readonly store = new Map<string, { k: Cols; v: Cols }>();
  constructor(public mode: "record" | "use", readonly groups: number) {}

  /** Keep layer's K/V: columns of one packed projection, which this object then owns. */
  keep(layer: string, k: Cols, v: Cols): void {
    this.drop(layer);
    k.t.detach(), v.t.detach();
    this.store.set(layer, { k, v });
  }

  private drop(layer: string): void {
    const old = this.store.get(layer);
    if (old) free(old.k.t, old.v.t);
    this.store.delete(layer);
  }

  dispose(): void {
    for (const layer of [...this.store.keys()]) this.drop(layer);
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
  readonly to_q: Linear;
  /** to_k and to_v stacked: one GEMM gives K and V side by side ([..., 2C]). */
  readonly to_kv: Linear;
  /** Self-attention: to_q, to_k and to_v stacked ([..., 3C] in one GEMM); to_q and to_kv are views of its rows,
   *  taken at each use (a LoRA swaps the stacked weight). */
  to_qkv?: Linear;
  to_out: Linear;
  /** Cross-attention: K/V of the text context seen last, reused while that tensor lives (once per run, not per
   *  step or chunk); released with it. */
  kvCache?: { context: Tensor; kv: Tensor };
}

/** diffusers Attention; self-attention (`kind` "self") stacks Q/K/V, cross-attention stacks K/V. */
export async function loadAttention(p: Params, name: string, kind: "self" | "cross"): Promise<Attention> {
  const to_out = await p.linear(`${name}.to_out.0`);
  if (kind === "self") {
    const { linear: to_qkv } = await p.linearStack([`${name}.to_q`, `${name}.to_k`, `${name}.to_v`]);
    const C = to_qkv.w.shape[0] / 3;
    return {
      get to_q() {
        return linearRows(to_qkv, 0, C);
      },
      get to_kv() {
        return linearRows(to_qkv, C, 2 * C);
      },
      to_qkv,
      to_out,
    };
  }
  const { linear: to_kv } = await p.linearStack([`${name}.to_k`, `${name}.to_v`]);
  return { to_q: await p.linear(`${name}.to_q`), to_kv, to_out };
}

/** K and V as column ranges of one packed projection [B, N, 2C] (at `col`: [..., 3C] with Q first). */
function kvCols(t: Tensor, C: number, col = 0): { k: Cols; v: Cols } {
  return { k: { t, col, width: C }, v: { t, col: col + C, width: C } };
}

/** LayerNorm(eps) as a GEMM prologue (the normalised tokens never become a tensor). */
function normed(n: Norm | undefined, eps = 1e-5): LinearOpts {
  return n ? { layerNorm: { gamma: n.gamma, beta: n.beta, eps } } : {};
}

/** Self-attention over tokens norm(h) [B, N, C] (`norm`: a LayerNorm the projections apply as they load h);
 *  returns residual + to_out(attn). `layer` names the layer for anchor K/V. */
export function selfAttention(
  a: Attention,
  h: Tensor,
  heads: number,
  ctx: AttnContext,
  layer: string,
  residual: Tensor,
  norm?: Norm,
): Tensor {
  const ln = normed(norm);
  return scoped(h.dev, () => {
    const B = h.shape[0], C = a.to_q.w.shape[0];
    let q: AttentionOperand, kv: { k: Cols; v: Cols }, div = 1;
    if (ctx.anchor?.mode === "use") {
      const rec = ctx.anchor.store.get(layer);
      if (!rec) throw new Error(`anchor K/V for layer ${layer} were not recorded`);
      q = applyLinear(a.to_q, h, ln);
      kv = rec;
      div = groupFrames(B, ctx.anchor.groups);
    } else if (ctx.crossFrame && B > ctx.crossFrame.groups) {
      // Project K/V for the anchor frames only: the other frames' K/V would be discarded.
      const f = groupFrames(B, ctx.crossFrame.groups);
      const anchors = gather0(h, Array.from({ length: ctx.crossFrame.groups }, (_, g) => g * f));
      q = applyLinear(a.to_q, h, ln);
      kv = kvCols(applyLinear(a.to_kv, anchors, ln), C);
      div = f;
    } else {
      // Q, K and V in one GEMM, read in place by the attention kernel.
      const qkv = applyLinear(a.to_qkv ?? stackError(layer), h, ln);
      q = { t: qkv, col: 0, width: C };
      kv = kvCols(qkv, C, C);
      if (ctx.anchor?.mode === "record") ctx.anchor.keep(layer, kv.k, kv.v);
    }
    const o = attention(q, kv.k, kv.v, heads, { kvBatchDiv: div });
    return applyLinear(a.to_out, o, { residual });
  });
}

function stackError(layer: string): never {
  throw new Error(`${layer}: self-attention was loaded without its stacked Q/K/V projection`);
}

/** Cross-attention of tokens norm(h) [B, N, C] to context [Bc, M, Dc]; Bc may divide B (un-repeated prompt
 *  embeddings). The context's K/V are computed once and reused while the context tensor lives (it must not be
 *  rewritten). */
export function crossAttention(
  a: Attention,
  h: Tensor,
  context: Tensor,
  heads: number,
  residual: Tensor,
  norm?: Norm,
): Tensor {
  const B = h.shape[0], Bc = context.shape[0], C = a.to_q.w.shape[0];
  if (B % Bc !== 0) throw new Error(`cross-attention: batch ${B} is not a multiple of the context batch ${Bc}`);
  return scoped(h.dev, () => {
    const q = applyLinear(a.to_q, h, normed(norm));
    const { k, v } = kvCols(contextKV(a, context), C);
    const o = attention(q, k, v, heads, { kvBatchDiv: B / Bc });
    return applyLinear(a.to_out, o, { residual });
  });
}

/** The text context's K/V [Bc, M, 2C], from the cache when this context was seen before. */
function contextKV(a: Attention, context: Tensor): Tensor {
  const c = a.kvCache;
  if (c && c.context === context && context.alive) return c.kv;
  const kv = applyLinear(a.to_kv, context);
  // A precompile dry run never executes: what it records must not be cached.
  if (context.dev.dryRun) return kv;
  dropContextKV(a);
  a.kvCache = { context, kv: kv.detach() };
  context.whenReleased(() => {
    if (a.kvCache?.context === context) dropContextKV(a);
  });
  return kv;
}

export function dropContextKV(a: Attention): void {
  a.kvCache?.kv.release();
  a.kvCache = undefined;
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
      attn1: await loadAttention(p, `${b}.attn1`, "self"),
      norm2: await p.norm(`${b}.norm2`),
      attn2: await loadAttention(p, `${b}.attn2`, "cross"),
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
    // Viewed at each use: an adapter (LoRA) may swap the conv's weight.
    return {
      get w() {
        return c.w.view([c.w.shape[0], c.w.shape[1]]);
      },
      get b() {
        return c.b;
      },
    };
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
        // LayerNorms run in the projections' prologues, GEGLU in ff.net.0's epilogue.
        const t1 = selfAttention(b.attn1, tokens, t.heads, ctx, layer, tokens, b.norm1);
        const t2 = crossAttention(b.attn2, t1, context, t.heads, t1, b.norm2);
        const g = applyLinear(b.ff_in, t2, { ...normed(b.norm3), geglu: true });
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
