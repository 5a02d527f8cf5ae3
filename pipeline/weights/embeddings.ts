// Textual-inversion embeddings (.safetensors): A1111's (`emb_params`: one or several vectors; the token is the file
// name without extension) and diffusers' learned_embeds (one key, the token itself, with one or several vectors).
// Written in a prompt, the token stands for its vectors: each takes one token slot of the text encoder's input.
import { basename } from "node:path";
import { RequestError } from "../errors.ts";
import { Safetensors } from "./safetensors.ts";

/** An embedding file that cannot be read or does not fit the text encoder: the request's fault. */
export class EmbeddingError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "EmbeddingError";
  }
}

export interface Embedding {
  path: string;
  /** The word that stands for the vectors in a prompt. */
  token: string;
  /** Vectors per token ([count, width] row-major). */
  vectors: Float32Array;
  count: number;
  width: number;
}

export async function readEmbedding(path: string): Promise<Embedding> {
  if (!/\.safetensors$/i.test(path)) throw new EmbeddingError(`${path}: embedding files must be .safetensors`);
  let st: Safetensors;
  try {
    st = await Safetensors.open(path);
  } catch (e) {
    throw new EmbeddingError(`${path}: ${(e as Error).message}`);
  }
  try {
    const keys = [...st.tensors.keys()];
    const fileToken = basename(path).replace(/\.safetensors$/i, "");
    let key: string, token: string;
    if (st.has("emb_params")) key = "emb_params", token = fileToken;
    else if (keys.length === 1) key = keys[0], token = keys[0];
    else {
      const sdxl = st.has("clip_l") && st.has("clip_g") ? " (an SDXL embedding?)" : "";
      throw new EmbeddingError(
        `${path}: expected "emb_params" (A1111) or one token key (diffusers), found ${keys.length} keys${sdxl}`,
      );
    }
    const shape = st.info(key).shape;
    if (shape.length < 1 || shape.length > 2 || shape.some((d) => d < 1)) {
      throw new EmbeddingError(`${path}: "${key}" has shape [${shape}], expected [width] or [vectors, width]`);
    }
    const width = shape[shape.length - 1], count = shape.length === 2 ? shape[0] : 1;
    if (!/\S/.test(token) || /\s/.test(token)) {
      throw new EmbeddingError(`${path}: token "${token}" must be one word without spaces`);
    }
    const vectors = await st.float32(key).catch((e) => {
      throw new EmbeddingError(`${path}: ${(e as Error).message}`);
    });
    return { path, token, vectors, count, width };
  } finally {
    st.close();
  }
}

/** Throws unless every embedding has the text encoder's width and the tokens are distinct. */
export function checkEmbeddings(embeddings: readonly Embedding[], width: number): void {
  const seen = new Map<string, string>();
  for (const e of embeddings) {
    if (e.width !== width) {
      throw new EmbeddingError(
        `${e.path}: vectors of width ${e.width}, but this model's text encoder takes ${width} ` +
          `(an embedding for ${e.width === 768 ? "SD 1.x" : e.width === 1024 ? "SD 2.x" : "another model"}?)`,
      );
    }
    const other = seen.get(e.token.toLowerCase());
    if (other) throw new EmbeddingError(`${e.path}: token "${e.token}" is also given by ${other}`);
    seen.set(e.token.toLowerCase(), e.path);
  }
}
