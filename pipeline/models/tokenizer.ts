// CLIP BPE tokenizer for Stable Diffusion prompts: [bos] + bpe[:75] + [eos], padded to 77 with the folder's pad
// token. Tokenization proper is @huggingface/tokenizers; folders without a tokenizer.json (the diffusers layout:
// vocab.json + merges.txt) get the equivalent CLIP tokenizer.json built in memory.
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { RequestError } from "../errors.ts";

export class TokenizerError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "TokenizerError";
  }
}

// openai's SimpleTokenizer pattern (case-insensitive there; we lowercase first).
const CLIP_SPLIT =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
// The slow HF tokenizer (and openai's) keep only these merges of the 262k in the original BPE file.
const CLIP_MERGES = 49152 - 256 - 2;
const BOS = "<|startoftext|>";
const EOS = "<|endoftext|>";

type Json = Record<string, unknown>;

/** A textual-inversion token: written in a prompt, it becomes `count` placeholder ids from `firstId` on, ids past
 * the vocabulary that the text encoder reads from the embedding's vectors. */
export interface TokenSlots {
  token: string;
  count: number;
  firstId: number;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export class ClipTokenizer {
  readonly maxLength: number = 77;

  private constructor(
    private tok: Tokenizer,
    readonly bosId: number,
    readonly eosId: number,
    readonly padId: number,
  ) {}

  static async fromDir(dir: string): Promise<ClipTokenizer> {
    const special = {
      ...(await readJson(join(dir, "tokenizer_config.json"))),
      ...(await readJson(join(dir, "special_tokens_map.json"))), // wins, as in transformers
    };
    let tj = await readJson(join(dir, "tokenizer.json"));
    if (!tj) tj = await buildClipTokenizerJson(dir);
    // The library reads flags from its config argument; none of the folder's apply beyond the special tokens.
    const tok = new Tokenizer(tj, { clean_up_tokenization_spaces: false });
    const id = (key: string, fallback: string): number => {
      const name = tokenName(special[key]) ?? fallback;
      const v = tok.token_to_id(name);
      if (v === undefined) throw new TokenizerError(`${dir}: ${key} "${name}" is not in the vocabulary`);
      return v;
    };
    const bos = id("bos_token", BOS);
    const eos = id("eos_token", EOS);
    return new ClipTokenizer(tok, bos, eos, special.pad_token === undefined ? eos : id("pad_token", EOS));
  }

  /** BPE ids of the cleaned text, without BOS/EOS and before truncation. */
  bpe(text: string): number[] {
    return this.tok.encode(cleanText(text), { add_special_tokens: false }).ids;
  }

  /** BPE tokens before truncation (a prompt longer than maxLength - 2 is cut). */
  countTokens(text: string): number {
    return this.bpe(text).length;
  }

  /** BPE ids, with each token of `slots` (a whole word, any case) written as its placeholder ids. */
  bpeWith(text: string, slots: readonly TokenSlots[]): number[] {
    if (slots.length === 0) return this.bpe(text);
    const byToken = new Map(slots.map((s) => [s.token.toLowerCase(), s]));
    const alternatives = [...byToken.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    const re = new RegExp(`(?<![\\p{L}\\p{N}_])(?:${alternatives.join("|")})(?![\\p{L}\\p{N}_])`, "giu");
    const out: number[] = [];
    let last = 0;
    for (const m of text.matchAll(re)) {
      out.push(...this.bpe(text.slice(last, m.index)));
      const s = byToken.get(m[0].toLowerCase())!;
      for (let i = 0; i < s.count; i++) out.push(s.firstId + i);
      last = m.index + m[0].length;
    }
    out.push(...this.bpe(text.slice(last)));
    return out;
  }

  /** maxLength ids: BOS, the first maxLength - 2 BPE ids (placeholders for `slots`), EOS, then padding. */
  encode(text: string, slots: readonly TokenSlots[] = []): Int32Array {
    const out = new Int32Array(this.maxLength).fill(this.padId);
    const ids = this.bpeWith(text, slots).slice(0, this.maxLength - 2);
    out[0] = this.bosId;
    out.set(ids, 1);
    out[ids.length + 1] = this.eosId;
    return out;
  }

  /** Row-major [texts.length, maxLength]. */
  encodeBatch(texts: string[]): Int32Array {
    const out = new Int32Array(texts.length * this.maxLength);
    texts.forEach((t, i) => out.set(this.encode(t), i * this.maxLength));
    return out;
  }
}

/** The tokenizer.json HF ships for CLIP, from the diffusers folder files. */
export async function buildClipTokenizerJson(dir: string): Promise<Json> {
  let vocab: Record<string, number>;
  let mergesText: string;
  try {
    vocab = JSON.parse(await Deno.readTextFile(join(dir, "vocab.json")));
    mergesText = await Deno.readTextFile(join(dir, "merges.txt"));
  } catch (e) {
    throw new TokenizerError(
      `${dir}: needs tokenizer.json or vocab.json + merges.txt (a CLIP tokenizer folder): ${(e as Error).message}`,
    );
  }
  const lines = mergesText.split("\n");
  const start = lines[0].startsWith("#version") ? 1 : 0;
  const merges = lines.slice(start).filter((l) => l.trim().length > 0).slice(0, CLIP_MERGES);
  const added = [BOS, EOS].filter((t) => t in vocab).map((t) => ({
    id: vocab[t],
    content: t,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  }));
  return {
    version: "1.0",
    added_tokens: added,
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
        { type: "Lowercase" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: CLIP_SPLIT }, behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: EOS,
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

// The parts of openai's basic_clean (ftfy.fix_text, html.unescape twice) that plain prompts can hit; NFC,
// whitespace collapsing and lowercasing are the tokenizer's normalizer.
const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };
const QUOTES: Record<string, string> = {
  "\u2018": "'",
  "\u2019": "'",
  "\u201a": "'",
  "\u201b": "'",
  "\u201c": '"',
  "\u201d": '"',
  "\u201e": '"',
  "\u201f": '"',
};
const LIGATURES: Record<string, string> = {
  "\ufb00": "ff",
  "\ufb01": "fi",
  "\ufb02": "fl",
  "\ufb03": "ffi",
  "\ufb04": "ffl",
  "\ufb05": "st",
  "\ufb06": "st",
  "\u0132": "IJ",
  "\u0133": "ij",
};

export function cleanText(text: string): string {
  let t = text.normalize("NFC");
  t = t.replace(/[\u2018-\u201f]/g, (c) => QUOTES[c] ?? c);
  t = t.replace(/[\ufb00-\ufb06\u0132\u0133]/g, (c) => LIGATURES[c] ?? c);
  t = t.replace(/[\u3000\uff01-\uff5e\uff61-\uffdc\uffe8-\uffee]/g, (c) => c.normalize("NFKC"));
  for (let i = 0; i < 2; i++) t = unescapeHtml(t);
  return t.trim();
}

function unescapeHtml(t: string): string {
  return t.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);/g, (m, body: string) => {
    if (body[0] === "#") {
      const cp = body[1] === "x" || body[1] === "X" ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : "\ufffd";
    }
    return ENTITIES[body] ?? m;
  });
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return undefined;
}

async function readJson(path: string): Promise<Json | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${path}: invalid JSON (${(e as Error).message})`);
  }
}
