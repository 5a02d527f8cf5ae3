// Golden "tokenizer" kind: prompts -> [n, 77] ids and BPE counts, through the same ClipTokenizer the CLI uses.
import { ClipTokenizer } from "../../../pipeline/models/tokenizer.ts";
import type { Handler } from "../types.ts";

export const handlers: Record<string, Handler> = {
  tokenizer: async (ctx) => {
    const tok = await ClipTokenizer.fromDir(ctx.modelPath());
    const prompts = ctx.c.params.prompts as string[];
    const maxLength = (ctx.c.params.max_length as number | undefined) ?? tok.maxLength;
    if (maxLength !== tok.maxLength) throw new Error(`max_length ${maxLength} is not supported (${tok.maxLength})`);
    return {
      input_ids: tok.encodeBatch(prompts),
      num_bpe_tokens: Int32Array.from(prompts, (p) => tok.countTokens(p)),
    };
  },
};
