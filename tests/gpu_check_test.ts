// tools/gpu_check.ts --small in a subprocess on this machine's adapter: the report is complete and well formed
// (every section ran, numbers finite, correctness counts add up, each missing peer has a reason, the UNet calls'
// per-kernel GPU time adds up to their GPU time, their FLOP count is the one written here from the model's config).
// Never a timing.
import { join } from "node:path";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { loadOpTable } from "./ops/table.ts";
import { listCases } from "../tools/golden/runner.ts";
import { GOLDEN_DIR, GOLDEN_MODELS } from "../fixtures/paths.ts";
import type { DType } from "../pipeline/gpu/device.ts";
import type { Report } from "../tools/gpu_check/report.ts";
import { SECTIONS } from "../tools/gpu_check/report.ts";
import { SMALL_SPEC } from "../tools/gpu_check/models.ts";
import type { PeerRow } from "../tools/bench/peers.ts";
import { gemmHooks, SPLITS, TILES } from "../pipeline/ops/matmul.ts";
import { isCandidate, resetMeasuredTiles, tilesFile, tilesFor } from "../pipeline/ops/tiles.ts";
import { attentionHooks, validTiling } from "../pipeline/ops/attention.ts";
import { UNet, type UNetConfig } from "../pipeline/models/unet.ts";
import { loadComponent } from "../pipeline/weights/diffusers.ts";
import { countFlops } from "../tools/bench/flops.ts";
import { attnFor, randomTensor } from "../tools/bench/unet.ts";
import { gpuTest } from "./util.ts";

const TOOL = new URL("../tools/gpu_check.ts", import.meta.url).pathname;
/** The run takes about 2 minutes on 2 idle cores; a busy machine gets a generous deadline, never a hang. */
const DEADLINE_S = 900;

async function gpuCheck(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), DEADLINE_S * 1000);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", TOOL, ...args],
      stdout: "piped",
      stderr: "piped",
      signal: ac.signal,
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

function finitePositive(x: unknown, what: string): void {
  assert(typeof x === "number" && Number.isFinite(x) && x > 0, `${what} is not a finite positive number: ${x}`);
}

function near(got: number | null | undefined, want: number, what: string, rel = 1e-9): void {
  assert(typeof got === "number" && Math.abs(got - want) <= rel * Math.abs(want), `${what}: ${got}, expected ${want}`);
}

const TINY_SD = join(GOLDEN_MODELS, "tiny-sd");

/**
 * A UNet call's GEMM-shaped FLOPs (2*M*N*K of linear layers and of conv2d's implicit GEMM, attention's QK^T and PV)
 * written from its config, diffusers' UNet2DConditionModel layer by layer, as zerovid runs it: the calls share one
 * timestep (one time-embedding row, every resnet's time_emb_proj one GEMM), the text context is [2, 77, cross];
 * batch 2 stacks Q/K/V, larger batches are 2 groups of frames in cross-frame attention (K/V of the 2 anchor frames);
 * the text K/V count only when not cached (`textKV`). gpu-check counts the same work from the ops' hooks instead.
 */
function unetFlops(cfg: UNetConfig, latent: number, B: number, textKV: boolean): number {
  const ch = cfg.block_out_channels, cross = cfg.cross_attention_dim as number, temb = 4 * ch[0];
  const layers = cfg.layers_per_block as number;
  let f = 0, projections = 0;
  const gemm = (m: number, n: number, k: number) => f += 2 * m * n * k;
  const conv = (cin: number, cout: number, s: number, k = 3) => gemm(cout, B * s * s, cin * k * k);
  const resnet = (cin: number, cout: number, s: number) => {
    conv(cin, cout, s), conv(cout, cout, s);
    if (cin !== cout) conv(cin, cout, s, 1); // conv_shortcut
    projections += cout; // its time_emb_proj's columns
  };
  const transformer = (C: number, s: number) => {
    const N = s * s, M = B * N;
    gemm(M, C, C); // proj_in
    if (B > 2) gemm(M, C, C), gemm(2 * N, 2 * C, C); // to_q; to_k, to_v of the anchors
    else gemm(M, 3 * C, C); // to_q, to_k, to_v
    f += 2 * (2 * B * N * N * C); // self-attention: QK^T, PV
    gemm(M, C, C), gemm(M, C, C); // attn1.to_out, attn2.to_q
    if (textKV) gemm(2 * 77, 2 * C, cross);
    f += 2 * (2 * B * N * 77 * C); // cross-attention: QK^T, PV
    gemm(M, C, C); // attn2.to_out
    gemm(M, 8 * C, C), gemm(M, C, 4 * C); // GEGLU feed-forward
    gemm(M, C, C); // proj_out
  };
  let s = latent, h = ch[0];
  conv(cfg.in_channels, h, s);
  const skips = [h];
  cfg.down_block_types.forEach((type, i) => {
    for (let j = 0; j < layers; j++) {
      resnet(h, ch[i], s), h = ch[i];
      if (type.startsWith("CrossAttn")) transformer(h, s);
      skips.push(h);
    }
    if (i < ch.length - 1) s = Math.ceil(s / 2), conv(h, h, s), skips.push(h); // stride 2
  });
  resnet(h, h, s), transformer(h, s), resnet(h, h, s);
  const up = [...ch].reverse();
  cfg.up_block_types.forEach((type, i) => {
    for (let j = 0; j <= layers; j++) {
      resnet(h + skips.pop()!, up[i], s), h = up[i];
      if (type.startsWith("CrossAttn")) transformer(h, s);
    }
    if (i < ch.length - 1) s *= 2, conv(h, h, s);
  });
  conv(h, cfg.out_channels, s);
  gemm(1, temb, ch[0]), gemm(1, temb, temb), gemm(1, projections, temb); // time embedding, time_emb_proj
  return f;
}

gpuTest("flops: a tiny UNet call's count from the ops' hooks (a dry run) is the config's", async (dev) => {
  const c = await loadComponent(TINY_SD, "unet");
  const cfg = c.config as unknown as UNetConfig;
  const unet = await UNet.load(dev, c.weights, cfg, "f32").finally(() => c.weights.close());
  try {
    const L = SMALL_SPEC.latent;
    const context = randomTensor(dev, [2, 77, cfg.cross_attention_dim as number], 7, "f32");
    for (const B of SMALL_SPEC.batches) {
      const sample = randomTensor(dev, [B, cfg.in_channels, L, L], 11, "f32");
      const call = () => unet.forward({ sample, timesteps: [500], context, attn: attnFor(B).ctx });
      // First batch: a fresh context, so its K/V are computed (a dry run never caches them); then cached.
      const fresh = B === SMALL_SPEC.batches[0];
      const before = countFlops(dev, call);
      assertEquals(before.total, unetFlops(cfg, L, B, fresh), `batch ${B}, before a real call`);
      call().release();
      await dev.sync();
      const after = countFlops(dev, call);
      assertEquals(after.total, unetFlops(cfg, L, B, false), `batch ${B}, text K/V cached`);
      assertEquals(after.linear + after.conv2d + after.attention, after.total);
      assert(after.linear > 0 && after.conv2d > 0 && after.attention > 0, JSON.stringify(after));
      sample.release();
    }
    context.release();
    // The hooks are as they were: later calls run the table's kernels and count nothing.
    assertEquals([gemmHooks.onGemm, gemmHooks.directConv, attentionHooks.onAttention], [null, null, null]);
  } finally {
    unet.dispose();
    dev.pool.trim();
  }
});

Deno.test("gpu-check: argument errors name the option", async () => {
  const noOut = await gpuCheck("--small");
  assertEquals(noOut.code, 2);
  assert(noOut.stderr.includes("--out DIR is required"), noOut.stderr);
  const badSkip = await gpuCheck("--out", "/nonexistent", "--skip", "kernels,bogus");
  assertEquals(badSkip.code, 2);
  assert(badSkip.stderr.includes(`--skip: unknown section "bogus"`), badSkip.stderr);
  const badKernels = await gpuCheck("--out", "/nonexistent", "--kernels", "attention[");
  assertEquals(badKernels.code, 2);
  assert(badKernels.stderr.includes("--kernels: not a regular expression"), badKernels.stderr);
});

Deno.test("gpu-check --kernels: the kernels section times only the matching cases", async () => {
  const out = await Deno.makeTempDir({ prefix: "zerovid-gpu-check-" });
  try {
    const only = ["--small", "--out", out, "--skip", "correctness,tiles,unet,text2video,peers"];
    const r = await gpuCheck(...only, "--kernels", "^attention\\.self");
    assertEquals(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-2000)}`);
    const rep = JSON.parse(await Deno.readTextFile(join(out, "report.json"))) as Report;
    const ops = new Set(rep.kernels.map((k) => k.op));
    assertEquals([...ops], ["attention.self"]);
    // Every matching case, in each dtype the adapter has.
    const { perf } = await loadOpTable();
    const want = perf.filter((c) => c.op === "attention.self").length;
    assertEquals(rep.kernels.length % want, 0, `${rep.kernels.length} rows for ${want} cases`);
    // A pattern that matches nothing fails the section and says why.
    const none = await gpuCheck(...only, "--kernels", "^no such op");
    assertEquals(none.code, 1);
    const rep2 = JSON.parse(await Deno.readTextFile(join(out, "report.json"))) as Report;
    assertEquals(rep2.sections.kernels.status, "error");
    assert(rep2.sections.kernels.error?.includes("no case matches"), JSON.stringify(rep2.sections.kernels));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("gpu-check --small: every section, finite numbers, correctness counts, peers or their reasons", async () => {
  const out = await Deno.makeTempDir({ prefix: "zerovid-gpu-check-" });
  try {
    const tilesDir = join(out, "tiles");
    const r = await gpuCheck("--small", "--out", out, "--tiles-dir", tilesDir);
    const seen = `exit ${r.code}\nstdout:\n${r.stdout}\nstderr (end):\n${r.stderr.slice(-3000)}`;
    assertEquals(r.code, 0, seen);
    const rep = JSON.parse(await Deno.readTextFile(join(out, "report.json"))) as Report;
    const md = await Deno.readTextFile(join(out, "report.md"));

    for (const s of SECTIONS) {
      assertEquals(rep.sections[s].status, "ok", `section ${s}: ${JSON.stringify(rep.sections[s])}`);
    }
    for (
      const h of [
        "## Adapter",
        "## Correctness",
        "## Ceilings",
        "## Kernels",
        "## Tiles",
        "## UNet",
        "## Text to video",
        "## Peers",
      ]
    ) assert(md.includes(h), `report.md has no "${h}"`);
    assert(rep.small);

    // Adapter
    const a = rep.adapter!;
    assert(a.name.length > 0 && a.driver.length > 0);
    for (const f of ["shader-f16", "subgroups", "timestamp-query"] as const) {
      assertEquals(typeof a.features[f], "boolean");
    }
    finitePositive(a.limits.maxStorageBufferBindingSize, "maxStorageBufferBindingSize");
    // Whether the reductions use subgroups, with the reason (llvmpipe does not list them, so: not in use).
    assert(
      a.features.subgroups ? /^in use|^not used/.test(a.subgroupsUsed ?? "") : !!a.subgroupsUsed,
      `subgroups: ${a.subgroupsUsed}`,
    );
    finitePositive(rep.machine!.cpus, "cpus");

    // Correctness: every case of the op table and the golden set accounted for, none failed.
    const { cases: opCases, perf } = await loadOpTable();
    const golden = await listCases(GOLDEN_DIR);
    const f16 = a.features["shader-f16"];
    const c = rep.correctness;
    for (
      const [label, k, total] of [
        ["ops", c.ops, opCases.length],
        ["golden f32", c.golden.f32, golden.length],
        ["golden f16", c.golden.f16, golden.length],
      ] as const
    ) {
      assert(k, `${label}: not in the report`);
      assertEquals(k.total, total, `${label}: total`);
      assertEquals(k.passed + k.failed, k.run, `${label}: passed + failed = run`);
      assertEquals(k.run + k.skipped, k.total, `${label}: run + skipped = total`);
      assertEquals(k.failed, 0, `${label}: ${JSON.stringify(k.failures)}`);
      if (label !== "golden f16" || f16) assert(k.run > 0, `${label}: nothing ran`);
      if (k.skipped) assert(k.skipReason, `${label}: skips without a reason`);
    }
    // --small runs one case per op and dtype: every op appears.
    assertEquals(
      c.ops!.run,
      new Set(opCases.filter((k) => f16 || k.dtype === "f32").map((k) => `${k.op}|${k.dtype}`)).size,
    );

    // Ceilings
    const ce = rep.ceilings!;
    finitePositive(ce.fmaF32.rate, "FMA f32");
    finitePositive(ce.copy.rate, "copy");
    if (f16) finitePositive(ce.fmaF16.rate, "FMA f16");
    else assert(ce.fmaF16.error, "FMA f16 without shader-f16 needs a reason");

    // Kernels: every perf case at each of its dtypes, run or skipped with a reason; each unit measured at least once.
    const dtypes: DType[] = f16 ? ["f32", "f16"] : ["f32"];
    assertEquals(
      rep.kernels.length,
      dtypes.reduce((n, d) => n + perf.filter((p) => !p.dtypes || p.dtypes.includes(d)).length, 0),
    );
    assert(!f16 || rep.kernels.some((k) => k.shape.endsWith("f16math")), "no f16math GEMM row");
    for (const k of rep.kernels) {
      assert(k.status === "ok" || k.status === "skipped", `${k.op} ${k.shape} ${k.dtype}: ${k.status} ${k.note}`);
      if (k.status === "ok") {
        finitePositive(k.rate, `${k.op} ${k.shape} rate`);
        finitePositive(k.share, `${k.op} ${k.shape} share of the ceiling`);
      } else assert(k.note.startsWith("skipped:"), k.note);
    }
    for (const unit of ["GB/s", "GFLOP/s"]) {
      assert(rep.kernels.some((k) => k.unit === unit && k.status === "ok"), `no ${unit} kernel measured`);
    }

    // Tiles: the UNet's GEMM shapes, each timed with every candidate; the winners that differ from the table's
    // scoring are in the adapter's tiles file, and a later run on this adapter picks them.
    const tl = rep.tiles!;
    assert(tl.rows.length > 10 && tl.untimed === 0, `${tl.rows.length} shapes timed, ${tl.untimed} not`);
    assert(tl.rows.some((x) => x.op === "conv2d") && tl.rows.some((x) => x.op === "linear"), "both GEMM kinds");
    for (const x of tl.rows) {
      // A candidate tile; split-K only for conv2d, whose kernel has it.
      assert(isCandidate(x.best, TILES, SPLITS), `${x.key}: ${JSON.stringify(x.best)}`);
      assert(x.op === "conv2d" || !x.best.splitK, `${x.key}: a split linear layer`);
      assert(x.tried >= 4 && x.bestMs <= x.scoredMs, `${x.key}: tried ${x.tried}, ${x.bestMs} vs ${x.scoredMs}`);
      finitePositive(x.calls, `${x.key} calls`);
    }
    // The heaviest shapes' winners timed at each inner-loop unrolling (1, 4, 16 steps), the rest at none.
    tl.rows.forEach((x, i) => {
      const tried = Object.keys(x.unrollMs).map(Number).sort((a, b) => a - b);
      assertEquals(tried, i < 16 ? [1, 4, 16] : [], `${x.key}: unrollings timed`);
      for (const v of Object.values(x.unrollMs)) finitePositive(v, `${x.key} ms by unroll`);
      // (a challenger must beat the winner by the tuner's 3 % margin)
      const fastest = Math.min(...Object.values(x.unrollMs));
      assert(i >= 16 || x.bestMs * 0.97 <= fastest, `${x.key}: best ${x.bestMs} ms, an unrolling ${fastest} ms`);
    });
    // 3x3 stride-1 convolutions also timed by Winograd F(2x2, 3x3); the verdict is kept either way.
    for (const x of tl.rows) {
      const eligible = x.op === "conv2d" && x.shape.endsWith(" k=3");
      assertEquals(x.best.winograd !== undefined, eligible, `${x.key} ${x.shape}: a Winograd verdict`);
      if (!eligible) continue;
      finitePositive(x.winogradMs, `${x.key} winograd ms`);
      if (x.best.winograd) assertEquals(x.bestMs, x.winogradMs);
      else assert(x.bestMs * 0.97 <= x.winogradMs!, `${x.key}: best ${x.bestMs} ms, Winograd ${x.winogradMs} ms`);
    }
    assert(tl.rows.some((x) => x.winogradMs !== undefined), "no conv timed by Winograd");
    assertEquals(tl.file, tilesFile(a.name, tilesDir));
    const saved = JSON.parse(await Deno.readTextFile(tl.file!));
    const changed = tl.rows.filter((x) =>
      JSON.stringify(x.best) !== JSON.stringify(x.scored) || x.best.winograd !== undefined
    );
    assertEquals(saved.adapter, a.name);
    // (and the tiles of the Winograd GEMMs that beat their scored pick, keyed "MxNxKx16")
    assertEquals(
      Object.keys(saved.shapes).filter((k) => k.split("x").length === 3).sort(),
      changed.map((x) => x.key).sort(),
    );
    for (const k of Object.keys(saved.shapes).filter((k) => k.split("x").length === 4)) {
      assert(isCandidate(saved.shapes[k], TILES), `${k}: ${JSON.stringify(saved.shapes[k])}`);
    }
    // Attention: each head dim of the tiny UNet (4 and 8) timed with the rows kernel at every tile of keys (its head
    // dims are below flash's 13), the winners that differ from production in the file's `attention`.
    assertEquals(tl.attention.map((x) => x.D), [4, 8]);
    for (const x of tl.attention) {
      assert(
        x.tried >= 4 && x.bestMs <= x.productionMs,
        `D=${x.D}: tried ${x.tried}, ${x.bestMs} vs ${x.productionMs}`,
      );
      assert(x.calls >= x.shapeCalls && x.shapeCalls > 0, `D=${x.D}: ${x.shapeCalls} of ${x.calls} calls`);
      assert(validTiling(x.best, x.D), `D=${x.D}: ${JSON.stringify(x.best)}`);
    }
    const attnChanged = tl.attention.filter((x) => JSON.stringify(x.best) !== JSON.stringify(x.production));
    assertEquals(Object.keys(saved.attention).map(Number).sort(), attnChanged.map((x) => x.D).sort());
    const env = Deno.env.get("ZEROVID_TILES_DIR");
    Deno.env.set("ZEROVID_TILES_DIR", tilesDir);
    resetMeasuredTiles();
    try {
      const shapes = tilesFor(a.name, a.fallback).shapes ?? {};
      for (const x of changed) assertEquals(shapes[x.key], x.best, `${x.key}: a later run picks the measured tile`);
      const byD = tilesFor(a.name, a.fallback).attentionByD ?? {};
      for (const x of attnChanged) assertEquals(byD[x.D], x.best, `D=${x.D}: a later run picks the measured tiling`);
    } finally {
      if (env === undefined) Deno.env.delete("ZEROVID_TILES_DIR");
      else Deno.env.set("ZEROVID_TILES_DIR", env);
      resetMeasuredTiles();
    }

    // UNet calls at the spec's batches; in f16 the same calls again on the GEMM core's other math, which compiled
    // F16MATH kernels (llvmpipe's entry leaves it off) and computed the same FLOPs.
    assertEquals(rep.unet.map((u) => u.batch), SMALL_SPEC.batches);
    if (rep.unet[0].dtype === "f16") {
      const v = rep.unetMath!;
      assertEquals(v.variant, "every GEMM on f16 math");
      assertEquals(v.rows.map((u) => u.batch), SMALL_SPEC.batches);
      for (const u of v.rows) {
        assertEquals(u.error, undefined);
        finitePositive(u.wallMs, `f16-math UNet batch ${u.batch} wall`);
        const d = rep.unet.find((d) => d.batch === u.batch)!;
        assertEquals(u.flops, d.flops);
        if (a.features["timestamp-query"]) assertEquals(u.vsDefault, u.gpuMs! / d.gpuMs!);
      }
      assert(md.includes("### The same calls with every GEMM on f16 math"), "no f16-math UNet table in report.md");
    } else assertEquals(rep.unetMath, null);
    const unetCfg = JSON.parse(await Deno.readTextFile(join(TINY_SD, "unet", "config.json"))) as UNetConfig;
    const timestamps = a.features["timestamp-query"];
    for (const u of rep.unet) {
      const at = `UNet batch ${u.batch}`;
      assertEquals(u.error, undefined);
      finitePositive(u.wallMs, `${at} wall`);
      finitePositive(u.dispatches, `${at} dispatches`);
      if (timestamps) finitePositive(u.gpuMs, `${at} gpu`);

      // GPU time by kernel: every timed dispatch, largest first, adding up to the call's GPU time.
      if (timestamps) {
        const k = u.kernels;
        assert(k.length >= 4, `${at}: ${k.length} kernels`);
        for (const n of ["conv2d", "matmul", "attention", "groupnorm"]) {
          assert(k.some((x) => x.name === n), `${at}: no ${n} among ${k.map((x) => x.name)}`);
        }
        for (let i = 1; i < k.length; i++) assert(k[i - 1].ms >= k[i].ms, `${at}: kernels not sorted by time`);
        const sum = (f: (x: typeof k[number]) => number) => k.reduce((s, x) => s + f(x), 0);
        near(sum((x) => x.ms), u.gpuMs!, `${at}: kernel ms summed vs gpu ms`, 0.03);
        near(sum((x) => x.share), 1, `${at}: shares summed`, 0.01);
        near(sum((x) => x.calls), u.timed!, `${at}: kernel dispatches summed vs timed`, 1e-6);
        for (const x of k) finitePositive(x.calls, `${at} ${x.name} dispatches`);
        const label = `${u.dtype} B=${u.batch}`;
        assert(md.includes("### GPU time by kernel"), "report.md: no kernel breakdown");
        for (const x of k) {
          assert(new RegExp(`^${label}\\s+${x.name}\\s`, "m").test(md), `report.md: ${label} ${x.name}`);
        }
      } else {
        assertEquals(u.kernels, []);
        assert(md.includes("No per-kernel breakdown: this adapter has no timestamp-query"), "report.md: no reason");
      }

      // FLOPs: the ops' count of the call is the one written here from the model's config, and what the report
      // derives from it follows from the count, the GPU time and the measured ceiling.
      const fl = u.flops!;
      assertEquals(fl.total, unetFlops(unetCfg, SMALL_SPEC.latent, u.batch, false), `${at} FLOPs`);
      assertEquals(fl.linear + fl.conv2d + fl.attention, fl.total, `${at} FLOPs by op`);
      const x = u.arithmetic!;
      near(x.gflop, fl.total / 1e9, `${at} GFLOP`);
      near(x.wallTflops, fl.total / u.wallMs! / 1e9, `${at} wall TFLOP/s`);
      const ceil = (u.dtype === "f16" ? ce.fmaF16 : ce.fmaF32).rate!;
      near(x.ceilingTflops, ceil / 1000, `${at} FMA ceiling`);
      near(x.floorMs, fl.total / (ceil * 1e6), `${at} floor ms`);
      if (timestamps) {
        near(x.tflops, fl.total / u.gpuMs! / 1e9, `${at} TFLOP/s`);
        near(x.ofCeiling, x.floorMs! / u.gpuMs!, `${at} floor/gpu`);
      } else assertEquals(x.tflops, null);
    }
    assert(md.includes("### Arithmetic: GEMM-shaped work only"), "report.md: no arithmetic table");

    // Text to video end to end
    const t = rep.text2video!;
    assertEquals([t.frames, t.width, t.steps], [SMALL_SPEC.frames, SMALL_SPEC.size, SMALL_SPEC.steps]);
    finitePositive(t.wallS, "text2video wall");
    finitePositive(t.peakPoolBytes, "pool high-water mark");
    finitePositive(t.weightBytes, "weights");
    assert(Number.isFinite(t.transformedBytes) && t.transformedBytes! >= 0, `transformed ${t.transformedBytes}`);
    for (const s of ["start", "denoise", "decode"]) finitePositive(t.stages[s], `stage ${s}`);
    assertEquals(t.lateCompiles, 0, "pipelines compiled inside the loop");

    // Peers: PyTorch (eager, SDPA) and onnxruntime-web WebGPU at each batch, each timed or missing with a reason;
    // onnxruntime-web runs from the repository alone (committed ONNX graph, npm package).
    const p = rep.peers;
    for (const peer of ["PyTorch eager", "PyTorch SDPA", "onnxruntime-web webgpu"]) {
      for (const b of SMALL_SPEC.batches) {
        const row = p.rows.find((x) => x.peer === peer && x.batch === b);
        assert(row, `no ${peer} row at batch ${b}`);
        if (row.error) {
          assert(p.missing.some((m) => m.startsWith(peer) && m.includes(row.error!)), `${peer}: not in missing`);
        } else {
          finitePositive(row.ms, `${peer} batch ${b}`);
          const q = p.ratios.find((x) => x.peer === peer && x.batch === b);
          finitePositive(q?.speedup, `${peer} batch ${b} ratio`);
          // The implied rate: zerovid's FLOP count of the same call over the peer's time.
          const flops = rep.unet.find((u) => u.batch === b)!.flops!.total;
          near(q!.tflops, flops / row.ms! / 1e9, `${peer} batch ${b} TFLOP/s`);
          if (row.device.startsWith("cpu")) assertEquals(q!.ofCeiling, null);
          else finitePositive(q!.ofCeiling, `${peer} batch ${b} share of the FMA ceiling`);
        }
      }
    }
    assert(!p.rows.some((x) => x.peer === "onnxruntime-web webgpu" && x.error), JSON.stringify(p.missing));
    assert(r.stdout.includes("onnxruntime-web webgpu batch 2:"), r.stdout);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("bench --peers --quick --json: zerovid and each peer timed, or missing with a reason", async () => {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), DEADLINE_S * 1000);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../tools/bench.ts", import.meta.url).pathname, "--peers", "--quick", "--json"],
      stdout: "piped",
      stderr: "piped",
      signal: ac.signal,
    }).output();
  } finally {
    clearTimeout(timer);
  }
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr.slice(-3000));
  const res = JSON.parse(new TextDecoder().decode(out.stdout)) as { peers: PeerRow[] };
  assertEquals(
    res.peers.map((r) => r.peer),
    ["zerovid", "onnxruntime-web webgpu", "onnxruntime-web wasm", "PyTorch eager"],
  );
  for (const r of res.peers) {
    assertEquals([r.batch, r.latent, r.dtype], [2, 8, "f32"], r.peer);
    // zerovid and onnxruntime-web run from the repository alone; PyTorch may be missing, with the reason.
    if (r.peer === "PyTorch eager" && r.error) assert(r.error.length > 10, r.error);
    else finitePositive(r.ms, `${r.peer} ms`);
  }
});

Deno.test("device_run's clock summary: busy samples only, min / median / max, reasons seen", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const csv = join(dir, "clocks.csv");
    await Deno.writeTextFile(
      csv,
      [
        "timestamp, utilization.gpu [%], clocks.current.sm [MHz], clocks.max.sm [MHz], power.draw [W], " +
        "temperature.gpu, clocks_event_reasons.active",
        "2026/12/04 15:28:37.123, 0, 345, 1980, 75.20, 31, 0x0000000000000001",
        "2026/12/04 15:28:38.123, 97, 1755, 1980, 480.10, 45, 0x0000000000000000",
        "2026/12/04 15:28:39.123, 100, 1980, 1980, 600.50, 52, 0x0000000000000004",
        "2026/12/04 15:28:40.123, 88, 1410, 1980, 690.00, 60, 0x0000000000000080",
        "2026/12/04 15:28:41.123, [N/A], [N/A], 1980, [N/A], 60, [N/A]",
      ].join("\n") + "\n",
    );
    const run = async (f: string) => {
      const o = await new Deno.Command("bash", { args: ["tools/gpu_check/clocks.sh", f] }).output();
      assertEquals(o.code, 0, new TextDecoder().decode(o.stderr));
      return new TextDecoder().decode(o.stdout).trim();
    };
    assertEquals(
      await run(csv),
      "clocks: 3 busy samples of 4: SM 1410 / 1755 / 1980 MHz (min / median / max; the GPU's max 1980), power up to " +
        "690 W, up to 60 C, reasons 0x0000000000000000 0x0000000000000004 0x0000000000000080",
    );
    assertEquals(
      await run(join(dir, "absent.csv")),
      `clocks: no samples (${join(dir, "absent.csv")} missing or empty)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
