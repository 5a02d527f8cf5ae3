// Weight loading: diffusers folders (single, fp16 variant, sharded, deprecated names, errors) and original-layout
// single files converted to diffusers names, compared bit for bit with the golden tiny-sd folder.
import { assert, assertEquals, assertRejects, assertThrows } from "../fixtures/asserts.ts";
import { join } from "node:path";
import { encodeSafetensors, f16, type StEntry } from "../fixtures/safetensors_writer.ts";
import { Safetensors } from "../pipeline/weights/safetensors.ts";
import type { WeightSource } from "../pipeline/weights/source.ts";
import { WeightError } from "../pipeline/errors.ts";
import { loadComponent, loadPipelineIndex, pickWeightFiles } from "../pipeline/weights/diffusers.ts";
import { loadSingleFile } from "../pipeline/weights/single_file.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";
import { Params, type TensorSource } from "../pipeline/models/layers.ts";
import { randomSource } from "../pipeline/weights/random.ts";
import { clipTextShapes, type ShapeMap, unetShapes, vaeShapes } from "../pipeline/models/shapes.ts";
import { DEMO_TEXT_ENCODER, DEMO_UNET, DEMO_VAE } from "../pipeline/models/demo.ts";
import { UNet } from "../pipeline/models/unet.ts";
import { VAE } from "../pipeline/models/vae.ts";
import { ClipTextModel } from "../pipeline/models/clip.ts";
import type { Device } from "../pipeline/gpu/device.ts";
import { DTYPES, gpuTest, quantize } from "./util.ts";

const GOLDEN = GOLDEN_MODELS + "/";
const TINY = join(GOLDEN, "tiny-sd");
const ORIGINAL = join(GOLDEN, "tiny-sd-original.safetensors");

async function readAll(path: string): Promise<Record<string, StEntry>> {
  const st = await Safetensors.open(path);
  try {
    const out: Record<string, StEntry> = {};
    for (const [name, info] of st.tensors) {
      out[name] = { dtype: info.dtype, shape: info.shape, bytes: await st.raw(name) };
    }
    return out;
  } finally {
    st.close();
  }
}

/** Same names, shapes and bit-identical float32 values. */
async function assertSameWeights(got: WeightSource, want: WeightSource): Promise<void> {
  assertEquals(got.names().sort(), want.names().sort());
  for (const n of want.names()) {
    assertEquals([...got.shape(n)], [...want.shape(n)], n);
    const a = new Uint32Array((await got.float32(n)).buffer);
    const b = new Uint32Array((await want.float32(n)).buffer);
    assert(a.length === b.length && a.every((v, i) => v === b[i]), `values of ${n} differ`);
  }
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-weights-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A copy of a tiny-sd component folder with the given weight files. */
async function componentDir(root: string, component: string, files: Record<string, Uint8Array>): Promise<string> {
  const dir = join(root, component);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.copyFile(join(TINY, component, "config.json"), join(dir, "config.json"));
  for (const [name, bytes] of Object.entries(files)) await Deno.writeFile(join(dir, name), bytes);
  return dir;
}

Deno.test("single file (original layout) equals the diffusers folder bit for bit", async () => {
  const sf = await loadSingleFile(ORIGINAL, { configDir: TINY });
  try {
    assertEquals(sf.family, "sd1");
    assertEquals(sf.tokenizerDir, join(TINY, "tokenizer"));
    assertEquals(sf.scheduler._class_name, "DDIMScheduler");
    for (const c of ["unet", "vae", "text_encoder"] as const) {
      const folder = await loadComponent(TINY, c);
      try {
        assertEquals(sf[c].config, folder.config);
        await assertSameWeights(sf[c].weights, folder.weights);
      } finally {
        folder.weights.close();
      }
    }
    // VAE attention: 1x1 convs (bias [C,1,1] as written by diffusers' script) presented as Linear.
    assertEquals([...sf.vae.weights.shape("decoder.mid_block.attentions.0.to_out.0.weight")], [32, 32]);
    assertEquals([...sf.vae.weights.shape("encoder.mid_block.attentions.0.to_q.bias")], [32]);
  } finally {
    sf.close();
  }
});

Deno.test("single file without --config: SD 1.5 defaults, adapted to the weights", async () => {
  const sf = await loadSingleFile(ORIGINAL);
  try {
    assertEquals(sf.unet.config.block_out_channels, [320, 640, 1280, 1280]);
    assertEquals(sf.unet.config.cross_attention_dim, 32);
    assertEquals(sf.unet.config.in_channels, 4);
    assertEquals(sf.unet.config.use_linear_projection, false);
    assertEquals(sf.tokenizerDir, null);
    const folder = await loadComponent(TINY, "unet");
    assertEquals(sf.unet.weights.names().sort(), folder.weights.names().sort());
    folder.weights.close();
  } finally {
    sf.close();
  }
});

Deno.test("single file: old CLIP names without text_model., SD2-style linear proj_in/out", async () => {
  await withTemp(async (tmp) => {
    const all = await readAll(ORIGINAL);
    const out: Record<string, StEntry> = {};
    for (const [k, v] of Object.entries(all)) {
      const k2 = k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.");
      const linear = /^model\.diffusion_model\..*\.proj_(in|out)\.weight$/.test(k);
      out[k2] = linear ? { ...v, shape: v.shape.slice(0, 2) } : v;
    }
    out["cond_stage_model.transformer.embeddings.position_ids"] = {
      dtype: "I64",
      shape: [1, 77],
      bytes: new Uint8Array(new BigInt64Array(77).map((_, i) => BigInt(i)).buffer),
    };
    const path = join(tmp, "old.safetensors");
    await Deno.writeFile(path, encodeSafetensors(out));
    // A config folder whose UNet uses linear projections.
    const cfg = join(tmp, "cfg");
    for (const c of ["unet", "vae", "text_encoder"]) {
      await Deno.mkdir(join(cfg, c), { recursive: true });
      const j = JSON.parse(await Deno.readTextFile(join(TINY, c, "config.json")));
      if (c === "unet") j.use_linear_projection = true;
      await Deno.writeTextFile(join(cfg, c, "config.json"), JSON.stringify(j));
    }
    const sf = await loadSingleFile(path, { configDir: cfg });
    const te = await loadComponent(TINY, "text_encoder");
    try {
      await assertSameWeights(sf.text_encoder.weights, te.weights);
      assertEquals([...sf.unet.weights.shape("down_blocks.0.attentions.0.proj_in.weight")], [32, 32]);
      assertEquals(sf.scheduler._class_name, "PNDMScheduler"); // no scheduler/ in cfg: default
    } finally {
      sf.close();
      te.weights.close();
    }
  });
});

Deno.test("single file: SD 2.x OpenCLIP text encoder (fused q/k/v) converts to CLIPTextModel names", async () => {
  await withTemp(async (tmp) => {
    const all = await readAll(ORIGINAL);
    const out: Record<string, StEntry> = {};
    for (const [k, v] of Object.entries(all)) if (!k.startsWith("cond_stage_model.")) out[k] = v;
    const te = await readAll(join(TINY, "text_encoder", "model.safetensors"));
    const P = "cond_stage_model.model.";
    const T = "text_model.";
    out[P + "token_embedding.weight"] = te[T + "embeddings.token_embedding.weight"];
    out[P + "positional_embedding"] = te[T + "embeddings.position_embedding.weight"];
    out[P + "ln_final.weight"] = te[T + "final_layer_norm.weight"];
    out[P + "ln_final.bias"] = te[T + "final_layer_norm.bias"];
    out[P + "text_projection"] = { dtype: "F32", shape: [32, 32], bytes: new Uint8Array(32 * 32 * 4) };
    out[P + "logit_scale"] = { dtype: "F32", shape: [1], bytes: new Uint8Array(4) };
    for (let i = 0; i < 3; i++) {
      const L = `${T}encoder.layers.${Math.min(i, 1)}.`; // layer 2 is an extra one SD2 configs leave out
      const R = `${P}transformer.resblocks.${i}.`;
      for (
        const [a, b] of [["ln_1", "layer_norm1"], ["ln_2", "layer_norm2"], ["mlp.c_fc", "mlp.fc1"], [
          "mlp.c_proj",
          "mlp.fc2",
        ], ["attn.out_proj", "self_attn.out_proj"]]
      ) {
        for (const wb of ["weight", "bias"]) out[`${R}${a}.${wb}`] = te[`${L}${b}.${wb}`];
      }
      for (const wb of ["weight", "bias"]) {
        const parts = ["q", "k", "v"].map((x) => te[`${L}self_attn.${x}_proj.${wb}`]);
        const bytes = new Uint8Array(parts.reduce((s, p) => s + p.bytes.byteLength, 0));
        let o = 0;
        for (const p of parts) bytes.set(p.bytes, (o += p.bytes.byteLength) - p.bytes.byteLength);
        out[`${R}attn.in_proj_${wb}`] = { dtype: "F32", shape: [96, ...parts[0].shape.slice(1)], bytes };
      }
    }
    const path = join(tmp, "sd2.safetensors");
    await Deno.writeFile(path, encodeSafetensors(out));
    const sf = await loadSingleFile(path, { configDir: TINY });
    const folder = await loadComponent(TINY, "text_encoder");
    try {
      assertEquals(sf.family, "sd2");
      await assertSameWeights(sf.text_encoder.weights, folder.weights);
    } finally {
      sf.close();
      folder.weights.close();
    }
    const def = await loadSingleFile(path);
    assertEquals(def.text_encoder.config.num_hidden_layers, 23);
    assertEquals(def.scheduler.prediction_type, "v_prediction");
    def.close();
  });
});

Deno.test("single file: clear errors for .ckpt, SDXL and foreign files", async () => {
  await assertRejects(() => loadSingleFile("/tmp/model.ckpt"), WeightError, "pickle");
  await withTemp(async (tmp) => {
    const one = { dtype: "F32", shape: [1], bytes: new Uint8Array(4) } as StEntry;
    const xl = join(tmp, "xl.safetensors");
    await Deno.writeFile(xl, encodeSafetensors({ "conditioner.embedders.0.transformer.x": one }));
    await assertRejects(() => loadSingleFile(xl), WeightError, "SDXL");
    const other = join(tmp, "other.safetensors");
    await Deno.writeFile(other, encodeSafetensors({ "foo.weight": one }));
    await assertRejects(() => loadSingleFile(other), WeightError, "not an original-layout");
  });
});

Deno.test("diffusers: model_index components, missing tensor and shape errors name the tensor and file", async () => {
  const index = await loadPipelineIndex(TINY);
  assertEquals(index.className, "StableDiffusionPipeline");
  assertEquals(Object.keys(index.components).sort(), ["scheduler", "text_encoder", "tokenizer", "unet", "vae"]);
  assertEquals(index.components.unet, { library: "diffusers", className: "UNet2DConditionModel" });
  const unet = await loadComponent(TINY, "unet");
  try {
    assertEquals(unet.config.cross_attention_dim, 32);
    const e = await assertRejects(() => unet.weights.float32("down_blocks.0.resnets.9.conv1.weight"), WeightError);
    assert(e.message.includes('missing tensor "down_blocks.0.resnets.9.conv1.weight"'), e.message);
    assert(e.message.includes("unet/diffusion_pytorch_model.safetensors"), e.message);
    unet.weights.expectShape("conv_in.weight", [32, 4, 3, 3]);
    unet.weights.expectShape("conv_in.weight", [-1, 4, 3, 3]);
    const s = assertThrows(() => unet.weights.expectShape("conv_in.weight", [32, 8, 3, 3]), WeightError);
    assert(s.message.includes('"conv_in.weight" has shape [32,4,3,3], expected [32,8,3,3]'), s.message);
  } finally {
    unet.weights.close();
  }
  await assertRejects(() => loadComponent(TINY, "nope"), WeightError, "no config.json");
});

Deno.test("diffusers: .bin-only folder says pickle is not supported and to convert", async () => {
  await withTemp(async (tmp) => {
    await componentDir(tmp, "unet", { "diffusion_pytorch_model.bin": new Uint8Array(8) });
    const e = await assertRejects(() => loadComponent(tmp, "unet"), WeightError);
    assert(e.message.includes("diffusion_pytorch_model.bin") && e.message.includes("safetensors"), e.message);
  });
});

Deno.test("diffusers: fp16 variant is preferred when asked, plain file otherwise", async () => {
  await withTemp(async (tmp) => {
    const src = join(TINY, "vae", "diffusion_pytorch_model.safetensors");
    const all = await readAll(src);
    const half: Record<string, StEntry> = {};
    for (const [k, v] of Object.entries(all)) {
      half[k] = f16(new Float32Array(v.bytes.slice().buffer), v.shape);
    }
    await componentDir(tmp, "vae", {
      "diffusion_pytorch_model.safetensors": await Deno.readFile(src),
      "diffusion_pytorch_model.fp16.safetensors": encodeSafetensors(half),
    });
    const n = "decoder.conv_in.weight";
    const plain = await loadComponent(tmp, "vae");
    const fp16 = await loadComponent(tmp, "vae", { variant: "fp16" });
    try {
      assertEquals(plain.weights.dtype(n), "F32");
      assertEquals(fp16.weights.dtype(n), "F16");
      const want = Float32Array.from(Float16Array.from(await plain.weights.float32(n)));
      assertEquals(await fp16.weights.float32(n), want);
      assert(fp16.weights.label.includes("fp16.safetensors"), fp16.weights.label);
    } finally {
      plain.weights.close();
      fp16.weights.close();
    }
    await Deno.remove(join(tmp, "vae", "diffusion_pytorch_model.safetensors"));
    const only = await loadComponent(tmp, "vae");
    assertEquals(only.weights.dtype(n), "F16");
    only.weights.close();
  });
});

Deno.test("diffusers: sharded checkpoint with index.json reads like the single file", async () => {
  await withTemp(async (tmp) => {
    const src = join(TINY, "unet", "diffusion_pytorch_model.safetensors");
    const all = Object.entries(await readAll(src));
    const half = Math.floor(all.length / 2);
    const shards = [all.slice(0, half), all.slice(half)];
    const files: Record<string, Uint8Array> = {};
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      const name = `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`;
      files[name] = encodeSafetensors(Object.fromEntries(s));
      for (const [k] of s) weightMap[k] = name;
    });
    files["diffusion_pytorch_model.safetensors.index.json"] = new TextEncoder().encode(
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    await componentDir(tmp, "unet", files);
    const sharded = await loadComponent(tmp, "unet");
    const single = await loadComponent(TINY, "unet");
    try {
      await assertSameWeights(sharded.weights, single.weights);
    } finally {
      sharded.weights.close();
      single.weights.close();
    }
  });
});

Deno.test("diffusers: deprecated VAE attention names (query/key/value/proj_attn) load as to_q/to_k/to_v/to_out.0", async () => {
  await withTemp(async (tmp) => {
    const src = join(TINY, "vae", "diffusion_pytorch_model.safetensors");
    const renames: Record<string, string> = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" };
    const out: Record<string, StEntry> = {};
    for (const [k, v] of Object.entries(await readAll(src))) {
      out[
        k.replace(/\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\./, (_, a: string) => `.attentions.0.${renames[a]}.`)
      ] = v;
    }
    assert("encoder.mid_block.attentions.0.query.weight" in out);
    await componentDir(tmp, "vae", { "diffusion_pytorch_model.safetensors": encodeSafetensors(out) });
    const old = await loadComponent(tmp, "vae");
    const cur = await loadComponent(TINY, "vae");
    try {
      await assertSameWeights(old.weights, cur.weights);
    } finally {
      old.weights.close();
      cur.weights.close();
    }
  });
});

Deno.test("pickWeightFiles: variant order, shards, other variants", () => {
  const names = [
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
  ];
  assertEquals(pickWeightFiles(names, "unet/"), { kind: "single", file: "unet/diffusion_pytorch_model.safetensors" });
  assertEquals(pickWeightFiles(names, "unet/", "fp16"), {
    kind: "single",
    file: "unet/diffusion_pytorch_model.fp16.safetensors",
  });
  assertEquals(pickWeightFiles(["model.safetensors.index.fp16.json"], "", "fp16"), {
    kind: "sharded",
    index: "model.safetensors.index.fp16.json",
  });
  assertEquals(pickWeightFiles(["model.ema.safetensors"]), { kind: "single", file: "model.ema.safetensors" });
  assertEquals(pickWeightFiles(["diffusion_pytorch_model.bin"]), null);
});

// Random weights (pipeline/weights/random.ts): the loaders generate them on the GPU (randomFill), float32() on the host.

/** `src` without its GPU path: the loaders upload float32(name). */
function hostOnly(src: TensorSource): TensorSource {
  return { has: (n) => src.has(n), shape: (n) => src.shape(n), float32: (n) => src.float32(n) };
}

/** Every tensor a Params loaded, whole buffers (16-byte rounded) back to back: one readback. */
async function loadedBytes(p: Params): Promise<Uint32Array> {
  const dev = p.dev;
  const size = p.loaded.reduce((n, t) => n + t.buffer.size, 0);
  const all = dev.gpu.createBuffer({ size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  try {
    let at = 0;
    for (const t of p.loaded) {
      dev.copy({ buffer: t.buffer, offset: 0, size: t.buffer.size }, { buffer: all, offset: at, size: t.buffer.size });
      at += t.buffer.size;
    }
    return new Uint32Array(await dev.read({ buffer: all, offset: 0, size }));
  } finally {
    all.destroy();
  }
}

/** Two loads of the same weights hold the same tensors (names, shapes, dtypes, bits), loaded in the same order. */
async function assertSameParams(got: Params, want: Params, label: string): Promise<void> {
  assertEquals([...got.slots.keys()], [...want.slots.keys()], label);
  assertEquals(got.loaded.map((t) => [t.shape, t.dtype]), want.loaded.map((t) => [t.shape, t.dtype]), label);
  const a = await loadedBytes(got), b = await loadedBytes(want);
  assertEquals(a.length, b.length, label);
  const bad = a.findIndex((v, j) => v !== b[j]);
  assert(bad < 0, `${label}: word ${bad} of the weights differs`);
}

/** Load with `load` twice, on the GPU path and the host path; the GPU one records a fill per tensor, the host one
 *  no GPU work. */
async function bothWays<M extends { params: Params; dispose(): void }>(
  dev: Device,
  src: TensorSource,
  load: (src: TensorSource) => Promise<M>,
  label: string,
): Promise<void> {
  let n0 = dev.dispatches;
  const gpu = await load(src);
  const fills = dev.dispatches - n0;
  n0 = dev.dispatches;
  const host = await load(hostOnly(src));
  try {
    assertEquals(dev.dispatches - n0, 0, `${label}: the host path recorded GPU work`);
    assert(fills >= gpu.params.loaded.length, `${label}: ${fills} fills for ${gpu.params.loaded.length} tensors`);
    await assertSameParams(gpu.params, host.params, label);
  } finally {
    gpu.dispose(), host.dispose();
  }
}

gpuTest("random weights: generated on the GPU equal the host's float32 values (demo UNet, VAE, CLIP)", async (dev) => {
  for (const dtype of DTYPES.filter((d) => d === "f32" || dev.f16)) {
    await bothWays(
      dev,
      randomSource(unetShapes(DEMO_UNET), 2),
      (s) => UNet.load(dev, s, DEMO_UNET, dtype),
      `unet ${dtype}`,
    );
    await bothWays(dev, randomSource(vaeShapes(DEMO_VAE), 4), (s) => VAE.load(dev, s, DEMO_VAE, dtype), `vae ${dtype}`);
    await bothWays(
      dev,
      randomSource(clipTextShapes(DEMO_TEXT_ENCODER), 1),
      (s) => ClipTextModel.load(dev, s, DEMO_TEXT_ENCODER, dtype),
      `clip ${dtype}`,
    );
  }
});

gpuTest(
  "random weights: a stacked linear's row blocks (odd K, a layer without bias) are each layer's values",
  async (dev) => {
    // K = 7: in f16 the second and third blocks start at odd elements (words shared with the block before).
    const shapes: ShapeMap = new Map([
      ["a.weight", [3, 7]],
      ["a.bias", [3]],
      ["b.weight", [5, 7]],
      ["c.weight", [2, 7]],
      ["c.bias", [2]],
    ]);
    const src = randomSource(shapes, 9);
    for (const dtype of DTYPES.filter((d) => d === "f32" || dev.f16)) {
      const gpu = new Params(dev, src, dtype, "test"), host = new Params(dev, hostOnly(src), dtype, "test");
      try {
        const n0 = dev.dispatches;
        const { linear, offsets } = await gpu.linearStack(["a", "b", "c"]);
        assertEquals(dev.dispatches - n0, 5, "a fill per weight and bias");
        assertEquals(offsets, [0, 3, 8]);
        await host.linearStack(["a", "b", "c"]);
        await assertSameParams(gpu, host, `stack ${dtype}`);
        const w: number[] = [], b: number[] = [];
        for (const n of ["a", "b", "c"]) {
          w.push(...await src.float32(`${n}.weight`));
          b.push(
            ...src.has(`${n}.bias`) ? await src.float32(`${n}.bias`) : new Float32Array(shapes.get(`${n}.weight`)![0]),
          );
        }
        assertEquals(await linear.w.read(), quantize(Float32Array.from(w), dtype), `stacked weight ${dtype}`);
        assertEquals(await linear.b!.read(), quantize(Float32Array.from(b), dtype), `stacked bias ${dtype}`);
      } finally {
        gpu.dispose(), host.dispose();
      }
    }
  },
);

Deno.test("random weights: per-tensor ranges, uniform statistics, independent streams", async () => {
  const n = 16384;
  const shapes: ShapeMap = new Map([
    ["m.norm1.weight", [n]],
    ["m.norm1.bias", [n]],
    ["m.token_embedding.weight", [256, 64]],
    ["m.proj.weight", [256, 64]],
    ["m.proj2.weight", [256, 64]],
    ["m.conv.weight", [256, 16, 2, 2]],
  ]);
  const src = randomSource(shapes);
  const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
  const corr = (x: Float32Array, y: Float32Array) => {
    const mx = mean(x), my = mean(y);
    let sxy = 0, sxx = 0, syy = 0;
    for (let i = 0; i < x.length; i++) {
      sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) ** 2, syy += (y[i] - my) ** 2;
    }
    return sxy / Math.sqrt(sxx * syy);
  };
  // [offset, scale]: norms near 1 / 0, embeddings 0.02 * sqrt(3), the rest 1 / sqrt(fan-in).
  const want: Record<string, [number, number]> = {
    "m.norm1.weight": [1, 0.1],
    "m.norm1.bias": [0, 0.1],
    "m.token_embedding.weight": [0, 0.02 * Math.sqrt(3)],
    "m.proj.weight": [0, 1 / 8],
    "m.proj2.weight": [0, 1 / 8],
    "m.conv.weight": [0, 1 / 8],
  };
  const values = new Map<string, Float32Array>();
  for (const [name, [offset, scale]] of Object.entries(want)) {
    const x = await src.float32(name);
    values.set(name, x);
    assertEquals(x.length, n, name);
    const lo = Math.min(...x), hi = Math.max(...x);
    assert(lo >= offset - scale * 1.004 && hi < offset + scale * 1.004, `${name}: range [${lo}, ${hi}]`);
    assert(lo < offset - scale * 0.99 && hi > offset + scale * 0.99, `${name}: range [${lo}, ${hi}] too narrow`);
    const m = mean(x), sd = scale / Math.sqrt(3);
    assert(Math.abs(m - offset) < 4 * sd / Math.sqrt(n), `${name}: mean ${m}`);
    const v = mean(x.map((y) => (y - m) ** 2));
    assert(Math.abs(v / (sd * sd) - 1) < 0.05, `${name}: variance ${v}, want ${sd * sd}`);
    assert(new Set(x).size > 0.8 * n, `${name}: ${new Set(x).size} distinct values`);
    assert(Math.abs(corr(x.subarray(1), x.subarray(0, n - 1))) < 4 / Math.sqrt(n), `${name}: neighbours correlate`);
  }
  const r = corr(values.get("m.proj.weight")!, values.get("m.proj2.weight")!);
  assert(Math.abs(r) < 4 / Math.sqrt(n), `two tensors correlate (${r})`);
  // Same seed: the same values; another seed: others.
  assertEquals(await randomSource(shapes).float32("m.proj.weight"), values.get("m.proj.weight"));
  const other = await randomSource(shapes, 1).float32("m.proj.weight");
  assert(Math.abs(corr(other, values.get("m.proj.weight")!)) < 4 / Math.sqrt(n), "another seed gives other values");
});
