// CLIPTextModel (Hugging Face): token + position embeddings, pre-LayerNorm transformer layers with causal
// self-attention and a QuickGELU (SD 1.x) or GELU (SD 2.x) MLP, final_layer_norm. Output: last_hidden_state.
import type { Device, DType } from "../gpu/device.ts";
import { consume, type Tensor, upload } from "../gpu/tensor.ts";
import { attention } from "../ops/attention.ts";
import { unary, type UnaryOp } from "../ops/elementwise.ts";
import { applyLayerNorm, applyLinear, type Linear, type Norm, Params, type TensorSource } from "./layers.ts";

export interface ClipTextConfig {
  hidden_size: number;
  intermediate_size: number;
  num_attention_heads: number;
  num_hidden_layers: number;
  max_position_embeddings: number;
  vocab_size: number;
  hidden_act: string;
  layer_norm_eps: number;
  [key: string]: unknown;
}

interface Layer {
  layer_norm1: Norm;
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  out_proj: Linear;
  layer_norm2: Norm;
  fc1: Linear;
  fc2: Linear;
}

const ACT: Record<string, UnaryOp> = { quick_gelu: "quick_gelu", gelu: "gelu", gelu_new: "gelu_tanh" };

export class ClipTextModel {
  /** Token embeddings stay on the host: the table is large (152 MB in f32 for SD) and only 77 rows are needed. */
  tokenEmbedding!: Float32Array;
  positionEmbedding!: Float32Array;
  layers: Layer[] = [];
  finalNorm!: Norm;

  private constructor(readonly cfg: ClipTextConfig, readonly params: Params) {}

  static async load(dev: Device, src: TensorSource, cfg: ClipTextConfig, dtype: DType): Promise<ClipTextModel> {
    if (!(cfg.hidden_act in ACT)) throw new Error(`text_encoder: unsupported hidden_act "${cfg.hidden_act}"`);
    const m = new ClipTextModel(cfg, new Params(dev, src, dtype, "text_encoder"));
    const p = m.params, d = cfg.hidden_size;
    try {
      const tok = "text_model.embeddings.token_embedding.weight";
      const pos = "text_model.embeddings.position_embedding.weight";
      for (const [n, shape] of [[tok, [cfg.vocab_size, d]], [pos, [cfg.max_position_embeddings, d]]] as const) {
        const s = p.shape(n);
        if (s.length !== 2 || s[0] !== shape[0] || s[1] !== shape[1]) {
          throw new Error(`text_encoder: weight "${n}" has shape [${s}], expected [${shape}]`);
        }
      }
      m.tokenEmbedding = await src.float32(tok);
      m.positionEmbedding = await src.float32(pos);
      for (let i = 0; i < cfg.num_hidden_layers; i++) {
        const l = `text_model.encoder.layers.${i}`;
        m.layers.push({
          layer_norm1: await p.norm(`${l}.layer_norm1`, d),
          q_proj: await p.linear(`${l}.self_attn.q_proj`, d, d),
          k_proj: await p.linear(`${l}.self_attn.k_proj`, d, d),
          v_proj: await p.linear(`${l}.self_attn.v_proj`, d, d),
          out_proj: await p.linear(`${l}.self_attn.out_proj`, d, d),
          layer_norm2: await p.norm(`${l}.layer_norm2`, d),
          fc1: await p.linear(`${l}.mlp.fc1`, d, cfg.intermediate_size),
          fc2: await p.linear(`${l}.mlp.fc2`, cfg.intermediate_size, d),
        });
      }
      m.finalNorm = await p.norm("text_model.final_layer_norm", d);
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  /**
   * ids [B, L] (L <= max_position_embeddings) -> last_hidden_state [B, L, hidden_size]. Ids from vocab_size on
   * read rows of `extra` ([rows, hidden_size]: textual-inversion vectors) instead of the token embedding table.
   */
  forward(ids: Int32Array, batch: number, extra?: Float32Array): Tensor {
    const d = this.cfg.hidden_size, L = ids.length / batch;
    if (!Number.isInteger(L) || L > this.cfg.max_position_embeddings) {
      throw new Error(`text_encoder: ${ids.length} ids do not form ${batch} sequences of <= 77 tokens`);
    }
    const emb = new Float32Array(batch * L * d);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < L; i++) {
        const id = ids[b * L + i], V = this.cfg.vocab_size;
        const [table, r] = id < V ? [this.tokenEmbedding, id] : [extra, id - V];
        if (id < 0 || !table || (r + 1) * d > table.length) {
          throw new Error(`text_encoder: token id ${id} is out of range`);
        }
        const row = (b * L + i) * d;
        for (let c = 0; c < d; c++) {
          emb[row + c] = table[r * d + c] + this.positionEmbedding[i * d + c];
        }
      }
    }
    const heads = this.cfg.num_attention_heads, eps = this.cfg.layer_norm_eps;
    const dev = this.params.dev;
    let x = upload(dev, emb, [batch, L, d], this.params.dtype);
    for (const l of this.layers) {
      x = consume(x, (x) => {
        const h = applyLayerNorm(l.layer_norm1, x, eps);
        const q = applyLinear(l.q_proj, h), k = applyLinear(l.k_proj, h), v = applyLinear(l.v_proj, h);
        const x1 = applyLinear(l.out_proj, attention(q, k, v, heads, { causal: true }), { residual: x });
        const g = unary(ACT[this.cfg.hidden_act], applyLinear(l.fc1, applyLayerNorm(l.layer_norm2, x1, eps)));
        return applyLinear(l.fc2, g, { residual: x1 });
      });
    }
    return consume(x, (x) => applyLayerNorm(this.finalNorm, x, eps));
  }

  dispose(): void {
    this.params.dispose();
  }
}
