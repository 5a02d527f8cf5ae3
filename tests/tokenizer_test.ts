// CLIP tokenizer: golden ids (openai SimpleTokenizer), pad token of SD 2.x folders, tokenizer.json folders,
// truncation and the text cleaning the reference applies.
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../fixtures/asserts.ts";
import { buildClipTokenizerJson, cleanText, ClipTokenizer, TokenizerError } from "../pipeline/models/tokenizer.ts";
import { Safetensors } from "../pipeline/weights/safetensors.ts";
import { GOLDEN_DIR } from "../fixtures/paths.ts";

const GOLDEN = GOLDEN_DIR + "/";
const DIR = join(GOLDEN, "models", "tiny-sd", "tokenizer");

async function withTokenizerDir(
  files: Record<string, string>,
  fn: (dir: string) => Promise<void>,
  copy = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"],
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-tok-" });
  try {
    for (const f of copy) await Deno.copyFile(join(DIR, f), join(dir, f));
    for (const [f, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, f), text);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tokenizer: golden prompts give the reference ids and BPE counts exactly", async () => {
  const c = JSON.parse(await Deno.readTextFile(join(GOLDEN, "cases", "tokenizer.json")));
  const st = await Safetensors.open(join(GOLDEN, "cases", "tokenizer.safetensors"));
  try {
    const want = await st.int32("input_ids");
    const counts = await st.int32("num_bpe_tokens");
    const tok = await ClipTokenizer.fromDir(DIR);
    const prompts = c.params.prompts as string[];
    prompts.forEach((p, i) => {
      assertEquals([...tok.encode(p)], [...want.subarray(i * 77, (i + 1) * 77)], JSON.stringify(p));
      assertEquals(tok.countTokens(p), counts[i], JSON.stringify(p));
    });
    assertEquals([...tok.encodeBatch(prompts)], [...want]);
  } finally {
    st.close();
  }
});

Deno.test("tokenizer: layout, truncation to 75 BPE tokens, special ids", async () => {
  const tok = await ClipTokenizer.fromDir(DIR);
  assertEquals([tok.bosId, tok.eosId, tok.padId, tok.maxLength], [49406, 49407, 49407, 77]);
  const empty = tok.encode("");
  assertEquals([empty[0], empty[1], empty[76]], [49406, 49407, 49407]);
  const long = "cat ".repeat(100);
  assertEquals(tok.countTokens(long), 100);
  const ids = tok.encode(long);
  assertEquals(ids.length, 77);
  assertEquals(ids[76], 49407);
  assert(ids.subarray(1, 76).every((v) => v === ids[1]));
});

Deno.test("tokenizer: SD 2.x folders pad with their own pad token ('!' = 0)", async () => {
  const special = JSON.parse(await Deno.readTextFile(join(DIR, "special_tokens_map.json")));
  await withTokenizerDir({ "special_tokens_map.json": JSON.stringify({ ...special, pad_token: "!" }) }, async (dir) => {
    const tok = await ClipTokenizer.fromDir(dir);
    const ids = tok.encode("a photo of a cat");
    assertEquals(tok.padId, 0);
    assertEquals([...ids.subarray(0, 8)], [49406, 320, 1125, 539, 320, 2368, 49407, 0]);
    assertEquals(ids[76], 0);
  });
  // The object form transformers writes ({"content": "!", ...}), in tokenizer_config.json only.
  const config = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer_config.json")));
  const pad = { content: "!", lstrip: false, normalized: false, rstrip: false, single_word: false };
  await withTokenizerDir(
    { "tokenizer_config.json": JSON.stringify({ ...config, pad_token: pad }) },
    async (dir) => assertEquals((await ClipTokenizer.fromDir(dir)).padId, 0),
    ["vocab.json", "merges.txt"],
  );
});

Deno.test("tokenizer: a folder with only tokenizer.json gives the same ids", async () => {
  const tj = await buildClipTokenizerJson(DIR);
  await withTokenizerDir({ "tokenizer.json": JSON.stringify(tj) }, async (dir) => {
    const a = await ClipTokenizer.fromDir(dir);
    const b = await ClipTokenizer.fromDir(DIR);
    for (const p of ["A Panda is playing GUITAR", "東京の夜景 🐱", "<|endoftext|> x"]) {
      assertEquals([...a.encode(p)], [...b.encode(p)]);
    }
  }, []);
});

Deno.test("tokenizer: the reference's text cleaning (quotes, ligatures, full width, HTML entities)", async () => {
  const tok = await ClipTokenizer.fromDir(DIR);
  const same = (a: string, b: string) => assertEquals([...tok.encode(a)], [...tok.encode(b)], `${a} vs ${b}`);
  same("don\u2019t \u201cstop\u201d", 'don\'t "stop"');
  same("\ufb01ne o\ufb03ce", "fine office");
  same("\uff21\uff22\uff23\u3000\uff11\uff12", "ABC 12");
  same("rock &amp;amp; roll &#39;n&#x27; &lt;3", "rock & roll 'n' <3");
  assertEquals(cleanText("  e\u0301  "), "\u00e9");
});

Deno.test("tokenizer: a folder without vocab says what it needs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assertRejects(() => ClipTokenizer.fromDir(dir), TokenizerError, "vocab.json + merges.txt");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
