// LoRA: kohya and PEFT files written here for the tiny SD model. A run with the LoRA equals a run of a model folder
// whose weights this test merged in float64; it differs clearly from the base run; the base weights are
// bit-identical afterwards; switching LoRAs never reloads the model; LoRAs that do not fit fail before GPU work.
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../fixtures/asserts.ts";
import { encodeSafetensors, f32, type StEntry } from "../fixtures/safetensors_writer.ts";
import type { Device } from "../pipeline/gpu/device.ts";
import { ModelCache, type SDAdapter } from "../pipeline/model_cache.ts";
import { adaptableWeights, applyLoras, mergedCopy } from "../pipeline/models/adapters.ts";
import type { StableDiffusion } from "../pipeline/models/sd.ts";
import { SeededNoise } from "../pipeline/modes/common.ts";
import { text2video } from "../pipeline/modes/text2video.ts";
import { LoraError, type LoraFile, planLora, readLora } from "../pipeline/weights/lora.ts";
import { kohyaFile, makePairs, mergedFolder, peftFile, TE_MODULES, TINY, UNET_MODULES } from "./lora_files.ts";
import { assertClose, diff, gpuTest, quantize, randn } from "./util.ts";
import { uploadOwned } from "../pipeline/gpu/tensor.ts";

function adapter(loras: { file: LoraFile; scale: number }[]): SDAdapter {
  return {
    key: loras.map((l) => `${l.file.path}:${l.scale}`).join("|"),
    apply: (sd) => applyLoras(sd, loras),
  };
}

const PARAMS = {
  prompt: "a cat",
  negativePrompt: "",
  videoLength: 2,
  width: 64,
  height: 64,
  steps: 3,
  guidanceScale: 7.5,
  motionX: 4,
  motionY: 4,
};

async function run(sd: StableDiffusion): Promise<Float32Array> {
  return (await text2video(sd, PARAMS, new SeededNoise(7))).frames;
}

const ADAPTED = new Set([...UNET_MODULES, ...TE_MODULES].map((m) => `${m}.weight`));

/** Every adaptable weight's tensor, and the bytes of those the test's LoRAs adapt. */
async function snapshot(sd: StableDiffusion): Promise<Map<string, { t: unknown; bytes?: Float32Array }>> {
  const out = new Map<string, { t: unknown; bytes?: Float32Array }>();
  for (const [c, p] of Object.entries(adaptableWeights(sd))) {
    for (const [name, slot] of p.slots) {
      out.set(`${c}:${name}`, { t: slot.layer.w, bytes: ADAPTED.has(name) ? await slot.layer.w.read() : undefined });
    }
  }
  return out;
}

async function assertSameWeights(sd: StableDiffusion, before: Awaited<ReturnType<typeof snapshot>>) {
  const after = await snapshot(sd);
  assertEquals(after.size, before.size);
  for (const [k, v] of before) {
    const a = after.get(k)!;
    assert(a.t === v.t, `${k}: the layer no longer holds its base tensor`);
    const same = !v.bytes || v.bytes.every((x, i) => Object.is(x, a.bytes![i]));
    assert(same, `${k}: base weight changed`);
  }
}

async function withModels(dev: Device, fn: (cache: ModelCache, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-lora-" });
  const cache = new ModelCache(dev);
  try {
    await fn(cache, dir);
  } finally {
    cache.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}

const SPEC = { kind: "diffusers" as const, dir: TINY };

gpuTest(
  "LoRA kohya (alpha) and PEFT (no alpha) equal a float64-merged model; base stays bit-identical",
  async (dev) => {
    await withModels(dev, async (cache, dir) => {
      const kohyaPairs = await makePairs(100, 4, 2);
      const peftPairs = await makePairs(200, 2);
      await Deno.writeFile(join(dir, "style.safetensors"), kohyaFile(kohyaPairs));
      await Deno.writeFile(join(dir, "peft.safetensors"), peftFile(peftPairs));
      const kohya = await readLora(join(dir, "style.safetensors"));
      const peft = await readLora(join(dir, "peft.safetensors"));
      assertEquals([kohya.format, kohya.modules.length], ["kohya", UNET_MODULES.length + TE_MODULES.length]);
      assertEquals([peft.format, peft.modules.length], ["diffusers", UNET_MODULES.length + TE_MODULES.length]);

      const base = await cache.stableDiffusion(SPEC, "f32");
      const before = await snapshot(base.model);
      const baseFrames = await run(base.model);
      base.release();

      const cases = [
        { name: "kohya", loras: [{ file: kohya, scale: 0.8 }], merged: [{ pairs: kohyaPairs, scale: 0.8 }] },
        { name: "peft", loras: [{ file: peft, scale: 1 }], merged: [{ pairs: peftPairs, scale: 1 }] },
        {
          name: "kohya + peft",
          loras: [{ file: kohya, scale: 0.5 }, { file: peft, scale: -0.7 }],
          merged: [{ pairs: kohyaPairs, scale: 0.5 }, { pairs: peftPairs, scale: -0.7 }],
        },
      ];
      for (const c of cases) {
        const lease = await cache.stableDiffusion(SPEC, "f32", adapter(c.loras));
        const got = await run(lease.model);
        lease.release();
        await assertSameWeights(lease.model, before);

        const ref = new ModelCache(dev);
        const m = await ref.stableDiffusion({ kind: "diffusers", dir: await mergedFolder(dir, c.merged) }, "f32");
        const want = await run(m.model);
        m.release();
        ref.dispose();
        const d = assertClose(got, want, { maxAbs: 2e-5, relL2: 1e-5 }, `${c.name} vs merged`);
        const fromBase = diff(got, baseFrames);
        assert(fromBase.maxAbs > 0.02, `${c.name}: output barely differs from the base (${fromBase.maxAbs})`);
        console.log(`${c.name}: vs merged max_abs ${d.maxAbs.toExponential(2)}; vs base ${fromBase.maxAbs.toFixed(3)}`);
      }

      // Switching LoRAs loaded the model once, and the base output after them is bit-identical to the first.
      assertEquals(cache.loads, 1);
      const again = await cache.stableDiffusion(SPEC, "f32");
      const after = await run(again.model);
      again.release();
      assert(after.every((v, i) => Object.is(v, baseFrames[i])), "base output changed after LoRA jobs");
    });
  },
);

gpuTest("LoRA leases: same LoRA shares the model, another waits until it is handed back", async (dev) => {
  await withModels(dev, async (cache, dir) => {
    await Deno.writeFile(join(dir, "a.safetensors"), kohyaFile(await makePairs(300, 2)));
    const file = await readLora(join(dir, "a.safetensors"));
    const a1 = await cache.stableDiffusion(SPEC, "f32", adapter([{ file, scale: 1 }]));
    const a2 = await cache.stableDiffusion(SPEC, "f32", adapter([{ file, scale: 1 }]));
    const slot = adaptableWeights(a1.model).unet.slots.get(`${UNET_MODULES[0]}.weight`)!;
    const merged = slot.layer.w;
    let baseGranted = false;
    const basePending = cache.stableDiffusion(SPEC, "f32").then((l) => (baseGranted = true, l));
    await new Promise((r) => setTimeout(r, 50));
    assert(!baseGranted, "a base lease was granted while a LoRA job holds the model");
    a1.release();
    await new Promise((r) => setTimeout(r, 20));
    assert(!baseGranted && slot.layer.w === merged, "the LoRA was undone while a job still uses it");
    a2.release();
    const b = await basePending;
    assert(slot.layer.w !== merged, "the base lease sees merged weights");
    b.release();
  });
});

gpuTest("LoRAs that do not fit are refused with an example key, before any GPU work", async (dev) => {
  await withModels(dev, async (cache, dir) => {
    const write = async (name: string, t: Record<string, StEntry>) => {
      const p = join(dir, name);
      await Deno.writeFile(p, encodeSafetensors(t));
      return p;
    };
    const r4 = (n: number) => randn(n, 5);
    // SD 2.x: cross-attention keys/values read 1024-wide text embeddings.
    const k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
    const sd2 = await readLora(
      await write("sd2.safetensors", {
        [`${k}.lora_down.weight`]: f32(r4(4 * 1024), [4, 1024]),
        [`${k}.lora_up.weight`]: f32(r4(32 * 4), [32, 4]),
      }),
    );
    const unknown = await readLora(
      await write("unknown.safetensors", {
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight": f32(r4(4 * 32), [4, 32]),
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight": f32(r4(32 * 4), [32, 4]),
      }),
    );
    const lease = await cache.stableDiffusion(SPEC, "f32");
    const before = await snapshot(lease.model);
    lease.release();
    for (const [file, want] of [[sd2, `"${k}.lora_down.weight"`], [unknown, "match no unet weight"]] as const) {
      const dispatches = dev.dispatches, submits = dev.submits;
      await assertRejects(() => cache.stableDiffusion(SPEC, "f32", adapter([{ file, scale: 1 }])), LoraError, want);
      assertEquals([dev.dispatches, dev.submits], [dispatches, submits], "GPU work before the LoRA was refused");
    }
    await assertSameWeights((await cache.stableDiffusion(SPEC, "f32")).model, before);

    // Files refused on their own.
    const bad: [string, Record<string, StEntry>, string][] = [
      ["ckpt.safetensors", { "model.diffusion_model.out.2.weight": f32(r4(4), [4]) }, "not a LoRA key"],
      ["xl.safetensors", { "lora_te1_text_model_x.lora_down.weight": f32(r4(4), [1, 4]) }, "SDXL"],
      ["half.safetensors", { [`${k}.lora_down.weight`]: f32(r4(4 * 32), [4, 32]) }, "no matching up"],
      ["rank.safetensors", {
        [`${k}.lora_down.weight`]: f32(r4(4 * 32), [4, 32]),
        [`${k}.lora_up.weight`]: f32(r4(32 * 2), [32, 2]),
      }, "not a rank-r pair"],
    ];
    for (const [name, t, want] of bad) {
      await assertRejects(async () => readLora(await write(name, t)), LoraError, want);
    }
  });
});

gpuTest(
  "mergedCopy: stacked weights, rows at aligned and unaligned offsets, several LoRAs on one weight",
  async (dev) => {
    for (const dtype of ["f32", "f16"] as const) {
      // Three weights of [5, 7] stacked by rows: row 5 starts at byte 140 (f32) / 70 (f16), not bindable.
      const K = 7, OUT = 5;
      const base = quantize(randn(3 * OUT * K, 1), dtype);
      const t = uploadOwned(dev, base, [3 * OUT, K], dtype);
      const layer = { w: t };
      const plan = planLora(
        [{
          file: {
            path: "x",
            name: "x",
            format: "diffusers",
            modules: [1, 2].map((i) => ({
              component: "unet" as const,
              name: `w${i}`,
              underscored: false,
              key: `w${i}.lora_A.weight`,
              down: quantize(randn(3 * K, 10 + i), dtype),
              downShape: [3, K],
              up: quantize(randn(OUT * 3, 20 + i), dtype),
              upShape: [OUT, 3],
              alpha: 1.5,
            })),
          },
          scale: 0.5,
        }],
        { unet: new Map([0, 1, 2].map((i) => [`w${i}.weight`, [OUT, K]])), text_encoder: new Map() },
      );
      const parts = [1, 2].map((i) =>
        [{ layer, shape: [OUT, K], row: i * OUT }, plan.unet.get(`w${i}.weight`)!] as const
      );
      const merged = mergedCopy(t, parts.map(([s, d]) => [s, d]));
      const got = await merged.read();
      const want = Float64Array.from(base);
      for (const [slot, d] of parts) {
        for (let o = 0; o < OUT; o++) {
          for (let i = 0; i < K; i++) {
            let s = 0;
            for (let r = 0; r < d.rank; r++) s += d.up[o * d.rank + r] * d.down[r * K + i];
            want[(slot.row + o) * K + i] += s;
          }
        }
      }
      assertClose(got, Float32Array.from(want), dtype === "f32" ? { maxAbs: 1e-5 } : { maxAbs: 1e-2 }, dtype);
      const after = await t.read();
      assert(after.every((v, i) => v === quantize(base, dtype)[i]), "base changed");
      merged.release();
      t.release();
    }
  },
);

Deno.test("LoRA key names: kohya, PEFT, .lora.down/.lora.up, lora_linear_layer, attention processors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-lora-keys-" });
  try {
    const pair = (down: string, up: string, k = 32): Record<string, StEntry> => ({
      [down]: f32(randn(2 * k, 1), [2, k]),
      [up]: f32(randn(32 * 2, 2), [32, 2]),
    });
    const u = "down_blocks.0.attentions.0.transformer_blocks.0";
    const te = "text_model.encoder.layers.0";
    const files: [string, Record<string, StEntry>, string[]][] = [
      ["old.safetensors", {
        ...pair(`unet.${u}.attn1.to_q.lora.down.weight`, `unet.${u}.attn1.to_q.lora.up.weight`),
        ...pair(
          `text_encoder.${te}.mlp.fc2.lora_linear_layer.down.weight`,
          `text_encoder.${te}.mlp.fc2.lora_linear_layer.up.weight`,
          64,
        ),
      }, [`unet:${u}.attn1.to_q.weight`, `text_encoder:${te}.mlp.fc2.weight`]],
      ["procs.safetensors", {
        ...pair(`${u}.attn2.processor.to_out_lora.down.weight`, `${u}.attn2.processor.to_out_lora.up.weight`),
        ...pair(
          `text_encoder.${te}.self_attn.to_k_lora.down.weight`,
          `text_encoder.${te}.self_attn.to_k_lora.up.weight`,
        ),
      }, [`unet:${u}.attn2.to_out.0.weight`, `text_encoder:${te}.self_attn.k_proj.weight`]],
      ["kohya.safetensors", {
        ...pair(
          `lora_te_text_model_encoder_layers_0_self_attn_v_proj.lora_down.weight`,
          `lora_te_text_model_encoder_layers_0_self_attn_v_proj.lora_up.weight`,
        ),
      }, [`text_encoder:${te}.self_attn.v_proj.weight`]],
    ];
    const shapes = {
      unet: new Map<string, number[]>([[`${u}.attn1.to_q.weight`, [32, 32]], [`${u}.attn2.to_out.0.weight`, [32, 32]]]),
      text_encoder: new Map<string, number[]>([
        [`${te}.mlp.fc2.weight`, [32, 64]],
        [`${te}.self_attn.k_proj.weight`, [32, 32]],
        [`${te}.self_attn.v_proj.weight`, [32, 32]],
      ]),
    };
    for (const [name, tensors, want] of files) {
      await Deno.writeFile(join(dir, name), encodeSafetensors(tensors));
      const file = await readLora(join(dir, name));
      const plan = planLora([{ file, scale: 1 }], shapes);
      const got = (["unet", "text_encoder"] as const).flatMap((c) => [...plan[c].keys()].map((k) => `${c}:${k}`));
      assertEquals(got.sort(), [...want].sort(), name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
