// Textual inversion: A1111 (emb_params, several vectors, token = file name) and diffusers (one key = token) files
// written here. Reference: the same text encoder with the vectors written into the token-embedding rows of
// ordinary words, prompted with those words (what diffusers does by growing the vocabulary).
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "../fixtures/asserts.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";
import { encodeSafetensors, f32 } from "../fixtures/safetensors_writer.ts";
import { StableDiffusion } from "../pipeline/models/sd.ts";
import { ClipTokenizer } from "../pipeline/models/tokenizer.ts";
import { encodePrompts } from "../pipeline/modes/common.ts";
import { EmbeddingError, readEmbedding } from "../pipeline/weights/embeddings.ts";
import { assertClose, diff, gpuTest, randn } from "./util.ts";

const TINY = join(GOLDEN_MODELS, "tiny-sd");

async function files(dir: string, width = 32) {
  const a1111 = join(dir, "mystyle.safetensors"), diffusers = join(dir, "learned_embeds.safetensors");
  await Deno.writeFile(a1111, encodeSafetensors({ emb_params: f32(randn(2 * width, 11, 0.5), [2, width]) }));
  await Deno.writeFile(diffusers, encodeSafetensors({ "<cat-toy>": f32(randn(width, 12, 0.5), [width]) }));
  return { a1111, diffusers };
}

Deno.test("tokenizer: embedding tokens become placeholder ids, as whole words in any case", async () => {
  const tok = await ClipTokenizer.fromDir(join(TINY, "tokenizer"));
  const slots = [{ token: "mystyle", count: 2, firstId: 50000 }, { token: "<cat-toy>", count: 1, firstId: 50002 }];
  const ids = tok.bpeWith("a MyStyle photo of <cat-toy>, mystyles", slots);
  const want = [
    ...tok.bpe("a"),
    50000,
    50001,
    ...tok.bpe("photo of"),
    50002,
    ...tok.bpe(", mystyles"),
  ];
  assertEquals(ids, want);
  assertEquals(tok.bpeWith("no tokens here", slots), tok.bpe("no tokens here"));
});

gpuTest(
  "textual inversion: prompt tokens read the embedding's vectors (A1111 multi-vector, diffusers)",
  async (dev) => {
    const dir = await Deno.makeTempDir({ prefix: "zerovid-emb-" });
    try {
      const { a1111, diffusers } = await files(dir);
      const e1 = await readEmbedding(a1111), e2 = await readEmbedding(diffusers);
      assertEquals([e1.token, e1.count, e1.width], ["mystyle", 2, 32]);
      assertEquals([e2.token, e2.count, e2.width], ["<cat-toy>", 1, 32]);

      const sd = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
      const ref = await StableDiffusion.load(dev, TINY, { dtype: "f32" });
      try {
        // Reference: single-token words whose embedding rows now hold the vectors.
        const words = ["cat", "dog", "car"];
        const ids = words.map((w) => {
          const b = ref.tokenizer.bpe(w);
          assertEquals(b.length, 1, `"${w}" is one token`);
          return b[0];
        });
        const d = ref.textEncoder.cfg.hidden_size;
        const table = ref.textEncoder.tokenEmbedding;
        table.set(e1.vectors.subarray(0, d), ids[0] * d);
        table.set(e1.vectors.subarray(d, 2 * d), ids[1] * d);
        table.set(e2.vectors, ids[2] * d);

        const prompts = ["a mystyle painting of <cat-toy>", "blurry", "<cat-toy> on a MYSTYLE table"];
        const refPrompts = ["a cat dog painting of car", "blurry", "car on a cat dog table"];
        const got = await encodePrompts(sd.tokenizer, sd.textEncoder, prompts, [e1, e2]).read();
        const want = await encodePrompts(ref.tokenizer, ref.textEncoder, refPrompts).read();
        assertClose(got, want, { maxAbs: 1e-6 }, "embeddings vs reference");
        const plain = await encodePrompts(sd.tokenizer, sd.textEncoder, prompts).read();
        assert(diff(got, plain).maxAbs > 0.05, "the embeddings changed nothing");

        const wide = await files(await Deno.makeTempDir({ dir }), 64);
        const bad = await readEmbedding(wide.a1111);
        assertThrows(
          () => encodePrompts(sd.tokenizer, sd.textEncoder, prompts, [bad]),
          EmbeddingError,
          "width 64, but this model's text encoder takes 32",
        );
        assertThrows(() => encodePrompts(sd.tokenizer, sd.textEncoder, prompts, [e1, e1]), EmbeddingError, "also");
      } finally {
        sd.dispose();
        ref.dispose();
      }

      await Deno.writeFile(
        join(dir, "two.safetensors"),
        encodeSafetensors({ a: f32(randn(4, 1), [4]), b: f32(randn(4, 2), [4]) }),
      );
      await assertRejects(() => readEmbedding(join(dir, "two.safetensors")), EmbeddingError, "found 2 keys");
      await assertRejects(() => readEmbedding(join(dir, "x.pt")), EmbeddingError, ".safetensors");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
