// deno task gpu-check [--small] --out DIR: everything a day on a GPU needs, in one command, on whatever WebGPU
// adapter it finds. Writes DIR/report.json and DIR/report.md (rewritten after every section): the adapter,
// correctness (op table, golden set f32/f16), the adapter's ceilings (probe kernels), kernels at SD 1.5 shapes,
// one UNet call at batch 2 and 16 (GPU time by kernel, GEMM-shaped FLOPs against the FMA ceiling), text-to-video end
// to end, and the peers (PyTorch + diffusers, onnxruntime-web WebGPU) on the same UNet in the same run. --small
// runs the same sections on the tiny models and small shapes.
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { Device, type DType } from "../pipeline/gpu/device.ts";
import { loadOpTable } from "../tests/ops/table.ts";
import { GOLDEN_DIR, GOLDEN_MODELS } from "../fixtures/paths.ts";
import { StableDiffusion } from "../pipeline/models/sd.ts";
import { benchKernels } from "./bench/kernels.ts";
import { errorMessage, type LoopOptions } from "./bench/measure.ts";
import {
  defaultRef,
  exportSd15Onnx,
  findTorch,
  missingRows,
  type OrtModel,
  peerOrt,
  type PeerRow,
  peerTorch,
  ratioText,
  speedup,
  tinyOnnx,
} from "./bench/peers.ts";
import { adapterReport, machineReport } from "./gpu_check/adapter.ts";
import { runGolden, runOpTable } from "./gpu_check/correctness.ts";
import { measureCeilings } from "./gpu_check/probes.ts";
import { tuneTiles } from "./gpu_check/tiles.ts";
import {
  fmaCeiling,
  loadSd15,
  type ModelSpec,
  runText2Video,
  SD15_SPEC,
  SMALL_SPEC,
  t2vCalls,
  tflopsOf,
  unetCalls,
  unetMathVariant,
} from "./gpu_check/models.ts";
import {
  emptyReport,
  type KernelReportRow,
  type Report,
  type Section,
  SECTIONS,
  writeReport,
} from "./gpu_check/report.ts";

const HELP = `deno task gpu-check [--small] --out DIR [options]

Writes DIR/report.json and DIR/report.md: adapter, correctness (op table, golden f32/f16), ceilings (FMA f32/f16,
copy bandwidth), kernels at SD 1.5 shapes, one UNet call at batch 2 and 16 (GPU time by kernel; GEMM-shaped FLOPs,
TFLOP/s and the floor at the FMA ceiling), text-to-video end to end, and the peers (PyTorch + diffusers,
onnxruntime-web WebGPU) on the same UNet, with the TFLOP/s their times imply. Exit status 1 when a correctness
case fails or a section errs.

  --out DIR          report folder (required)
  --small            tiny models and small shapes (what CI runs on a software adapter)
  --budget S         total seconds (default 540 full, 600 --small); late sections shrink or are skipped to fit
  --skip LIST        comma list of sections to leave out (${SECTIONS.filter((s) => s !== "adapter").join(", ")})
  --kernels REGEX    the kernels section times only the cases whose "op shape" matches (e.g. '^attention')
  --ref DIR          upstream sources for the PyTorch peer (diffusers-*_src.tgz); default ../shared/ref if present
  --cache DIR        where exported ONNX models go (default ~/.cache/zerovid/gpu-check)
  --peer-timeout S   deadline per peer process (default 240)
  --adapter NAME     adapter description substring
  --tiles-dir DIR    where the measured GEMM tiles go, read by every later run on this adapter (default
                     $ZEROVID_TILES_DIR, else ~/.cache/zerovid/tiles; "none": not written; with --small only
                     when given)
`;

function fail(msg: string): never {
  console.error(`gpu-check: ${msg}`);
  Deno.exit(2);
}

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string" },
    small: { type: "boolean", default: false },
    budget: { type: "string" },
    skip: { type: "string", default: "" },
    kernels: { type: "string" },
    ref: { type: "string" },
    cache: { type: "string" },
    "peer-timeout": { type: "string", default: "240" },
    adapter: { type: "string" },
    "tiles-dir": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (a.help) {
  console.log(HELP);
  Deno.exit(0);
}
if (!a.out) fail("--out DIR is required (where report.json and report.md go)");
function regex(name: string, v: string): RegExp {
  try {
    return new RegExp(v);
  } catch (e) {
    fail(`--${name}: not a regular expression: ${errorMessage(e)}`);
  }
}
const positive = (name: string, v: string) => {
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0) fail(`--${name} must be a positive number of seconds, got "${v}"`);
  return x;
};
const small = a.small;
const budgetS = positive("budget", a.budget ?? (small ? "600" : "540"));
const peerTimeoutS = positive("peer-timeout", a["peer-timeout"]);
const skip = new Set(a.skip.split(",").map((s) => s.trim()).filter(Boolean));
for (const s of skip) {
  if (!SECTIONS.includes(s as Section) || s === "adapter") {
    fail(`--skip: unknown section "${s}" (have ${SECTIONS.filter((x) => x !== "adapter").join(", ")})`);
  }
}
const kernelFilter = a.kernels ? regex("kernels", a.kernels) : null;
const outDir = resolve(a.out);
const cache = resolve(
  a.cache ??
    join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache"), "zerovid/gpu-check"),
);
const spec: ModelSpec = small ? SMALL_SPEC : SD15_SPEC;

const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const left = () => budgetS - elapsed();
const log = (line: string) => console.error(`[${elapsed().toFixed(0).padStart(4)} s] ${line}`);
const report: Report = emptyReport(small, budgetS);
let failed = false;

async function section(name: Section, minS: number, fn: () => Promise<void>): Promise<void> {
  const st = report.sections[name];
  if (skip.has(name)) {
    Object.assign(st, { status: "skipped", error: "--skip" });
  } else if (left() < minS) {
    Object.assign(st, { status: "skipped", error: `out of time budget (${left().toFixed(0)} s left, needs ~${minS})` });
  } else {
    log(`${name}...`);
    const s0 = performance.now();
    try {
      await fn();
      st.status = "ok";
    } catch (e) {
      Object.assign(st, { status: "error", error: errorMessage(e) });
      failed = true;
      log(`${name}: error: ${errorMessage(e)}`);
    }
    st.seconds = (performance.now() - s0) / 1000;
  }
  report.seconds = elapsed();
  await writeReport(outDir, report);
}

async function withDevice<T>(profile: boolean, fn: (dev: Device) => Promise<T>): Promise<T> {
  const dev = await Device.open({ profile, adapter: a.adapter });
  try {
    return await fn(dev);
  } finally {
    dev.destroy();
  }
}

const loop: LoopOptions = small
  ? { warmupS: 0, warmupMax: 1, timeS: 0, maxIters: 1, profiledCalls: 1 }
  : { warmupS: 0.05, warmupMax: 2, timeS: 0.25, maxIters: 10, profiledCalls: 2 };

// 1. Adapter -------------------------------------------------------------------------------------------------------
await section("adapter", 0, async () => {
  report.machine = await machineReport();
  report.adapter = await adapterReport(a.adapter);
  report.adapter.subgroupsUsed = await withDevice(false, (dev) => Promise.resolve(dev.subgroupNote));
});
if (!report.adapter) {
  console.error(`gpu-check: no adapter (${report.sections.adapter.error}); report in ${outDir}`);
  Deno.exit(1);
}
const f16 = report.adapter.features["shader-f16"];
const dtypes: DType[] = f16 ? ["f32", "f16"] : ["f32"];
/** The precision of the model sections: f16 where the adapter has it (what a user's run picks). */
const modelDType: DType = f16 ? "f16" : "f32";

// The peers' Python side starts now: finding torch, then exporting SD 1.5's UNet to ONNX (f16; a minute or more of
// tracing), beside the correctness section, which times nothing; so onnxruntime-web's own run keeps its share of the
// budget at the end. --small uses the committed tiny ONNX UNet instead.
const peerPrep = skip.has("peers") ? null : (() => {
  const torch = findTorch(defaultRef(a.ref)).catch((e) => `looking for torch failed: ${errorMessage(e)}`);
  const onnx = small ? Promise.resolve(tinyOnnx()) : torch.then(async (t) => {
    const s0 = elapsed();
    const r = await exportSd15Onnx(t, cache, Math.min(peerTimeoutS, budgetS / 2))
      .catch((e) => `ONNX export failed: ${errorMessage(e)}`);
    log(`peers: ONNX export ${typeof r === "string" ? `missing (${r})` : "done"} in ${(elapsed() - s0).toFixed(0)} s`);
    return r;
  });
  return { torch, onnx };
})();

// 2. Correctness ---------------------------------------------------------------------------------------------------
await section("correctness", 10, () =>
  withDevice(false, async (dev) => {
    const c = report.correctness;
    c.ops = await runOpTable(dev, { sample: small, log });
    c.golden.f32 = await runGolden(dev, GOLDEN_DIR, "f32", { modulesOnly: small, log });
    c.golden.f16 = await runGolden(dev, GOLDEN_DIR, "f16", { modulesOnly: small, log });
    const bad = c.ops.failed + c.golden.f32.failed + c.golden.f16.failed;
    log(`correctness: ${bad} failed`);
    if (bad) failed = true;
  }));

// 3. Ceilings ------------------------------------------------------------------------------------------------------
await section("ceilings", 5, () =>
  withDevice(true, async (dev) => {
    // A ceiling is a yardstick: time several calls even with --small (one call on a busy CPU reads low).
    const ceilLoop = small ? { ...loop, warmupMax: 2, timeS: 0.3, maxIters: 8 } : { ...loop, timeS: 0.5, maxIters: 20 };
    report.ceilings = await measureCeilings(dev, { small, loop: ceilLoop });
  }));

// 4. Kernels at SD 1.5 shapes ----------------------------------------------------------------------------------------
await section("kernels", 10, () =>
  withDevice(true, async (dev) => {
    const { perf: all } = await loadOpTable();
    const perf = kernelFilter ? all.filter((c) => kernelFilter.test(`${c.op} ${c.shape}`)) : all;
    if (!perf.length) throw new Error(`--kernels ${a.kernels}: no case matches`);
    for (const dtype of dtypes) {
      // --small: each case that would take more than 0.3 s a call is listed as skipped (SD shapes on a CPU adapter).
      const rows = await benchKernels(dev, perf, dtype, { loop, maxCallS: small ? 0.3 : 2 });
      const ceil = report.ceilings;
      for (const k of rows) {
        const c = k.unit === "GB/s" ? ceil?.copy : dtype === "f16" ? ceil?.fmaF16 : ceil?.fmaF32;
        const share = k.rate !== null && c?.rate ? k.rate / c.rate : null;
        report.kernels.push({ ...k, share } as KernelReportRow);
      }
    }
  }));

// 5-6. UNet calls and text-to-video, on one model ---------------------------------------------------------------------
let sd: StableDiffusion | null = null;
let sdDev: Device | null = null;
const needModel = !skip.has("tiles") || !skip.has("unet") || !skip.has("text2video");
if (needModel) {
  try {
    sdDev = await Device.open({ profile: true, adapter: a.adapter });
    log(`loading ${spec.label} in ${modelDType}`);
    sd = small
      ? await StableDiffusion.load(sdDev, join(GOLDEN_MODELS, "tiny-sd"), { dtype: modelDType })
      : await loadSd15(sdDev, modelDType);
  } catch (e) {
    for (const s of ["tiles", "unet", "text2video"] as const) {
      Object.assign(report.sections[s], { status: "error", error: `loading the model: ${errorMessage(e)}` });
    }
    failed = true;
  }
}

if (sd) {
  const model = sd;
  await section("tiles", 10, async () => {
    // Tuned first, so the UNet and text-to-video sections measure the kernels a later run will use. Wall-clock
    // times without timestamps (they would split every dispatch into its own pass).
    const profiled = model.dev.profile;
    model.dev.setProfiling(false);
    try {
      report.tiles = await tuneTiles(model.dev, model.unet, {
        latent: spec.latent,
        batches: spec.batches,
        budgetS: Math.min(small ? 60 : 90, Math.max(5, left() / 5)),
        perTileMs: small ? 5 : 25,
        // --small measures toy shapes: written only where asked.
        dir: a["tiles-dir"] === "none" ? null : a["tiles-dir"] ?? (small ? null : undefined),
      });
    } finally {
      model.dev.setProfiling(profiled);
    }
    log(`tiles: ${report.tiles.rows.length} shapes, ${report.tiles.file ?? "not written"}`);
  });
  await section("unet", 10, async () => {
    report.unet = await unetCalls(model, spec, loop, report.ceilings);
    const err = report.unet.find((u) => u.error);
    if (err) throw new Error(`batch ${err.batch}: ${err.error}`);
    report.unetMath = await unetMathVariant(model, spec, loop, report.ceilings, report.unet);
  });
  await section("text2video", 10, async () => {
    model.dev.setProfiling(false);
    // Keep time for the peers: estimate the run from the UNet calls and take fewer steps if it would not fit.
    const reserve = skip.has("peers") ? 10 : Math.min(peerTimeoutS * 2, small ? 200 : 240);
    const byBatch = (b: number) => report.unet.find((u) => u.batch === b)?.wallMs ?? null;
    const [b2, bF] = [byBatch(2), byBatch(2 * spec.frames)];
    let steps = spec.steps, note: string | undefined;
    if (b2 !== null && bF !== null) {
      const est = (s: number) => {
        const c = t2vCalls(s);
        return 1.3 * (c.anchor * b2 + c.video * bF) / 1000 + 5;
      };
      const avail = left() - reserve;
      while (steps > 3 && est(steps) > avail) steps--;
      if (steps < spec.steps) {
        note = `cut from ${spec.steps} steps: ${spec.steps} were estimated at ${est(spec.steps).toFixed(0)} s, ` +
          `${avail.toFixed(0)} s were left`;
      }
    }
    report.text2video = await runText2Video(model, spec, steps, note);
    if (report.text2video.error) throw new Error(report.text2video.error);
  });
  sd.dispose();
}
sdDev?.destroy();
// Skipped with --skip (or not reached): say so in the report rather than leave them pending.
for (const s of ["tiles", "unet", "text2video"] as const) {
  if (report.sections[s].status === "pending") {
    await section(s, 0, () => Promise.reject(new Error("no model was loaded")));
  }
}

// 7. Peers ---------------------------------------------------------------------------------------------------------
await section("peers", 20, async () => {
  const p = report.peers;
  p.model = small
    ? "tiny-sd UNet (fixtures/golden), latent 8x8"
    : "SD 1.5 UNet (random weights, SD 1.5 config), latent 64x64 (512x512)";
  const batches = spec.batches;
  const timeout = () => Math.max(10, Math.min(peerTimeoutS, left() - 5));
  const peerLoop = small
    ? { warmup: 1, timeS: 0, iters: 1, minIters: 1 }
    : { warmup: 2, timeS: 1, iters: 10, minIters: 3 };
  // onnxruntime-web's calls of the SD 1.5 UNet take seconds (its session setup tens of them): fewer, to fit the budget.
  const ortLoop = small ? peerLoop : { warmup: 1, timeS: 4, iters: 5, minIters: 2 };

  const torch = await peerPrep!.torch;
  p.torch = typeof torch === "string" ? null : `${torch.python}: ${torch.versions}`;
  log(`peers: PyTorch ${typeof torch === "string" ? "missing" : torch.versions}`);
  p.rows.push(
    ...await peerTorch(torch, {
      model: small ? join(GOLDEN_MODELS, "tiny-sd") : "sd15-random",
      batches,
      latent: spec.latent,
      dtype: modelDType,
      attn: ["eager", "sdpa"],
      device: "auto",
      loop: peerLoop,
    }, timeout()),
  );

  const onnx: OrtModel | string = await peerPrep!.onnx;
  log("peers: onnxruntime-web webgpu");
  p.rows.push(
    ...typeof onnx === "string"
      ? missingRows("onnxruntime-web webgpu", batches, spec.latent, small ? "f32" : "f16", onnx)
      : await peerOrt({
        backend: "webgpu",
        model: onnx,
        batches,
        latent: spec.latent,
        cross: spec.cross,
        loop: ortLoop,
      }, timeout()),
  );
  for (const r of p.rows) {
    const z = report.unet.find((u) => u.batch === r.batch && u.latent === r.latent);
    // The peer's implied rate for zerovid's FLOP count of the same call; against the FMA ceiling only on a GPU.
    const tflops = tflopsOf(z?.flops?.total, r.ms);
    const ceil = r.device.startsWith("cpu") ? null : fmaCeiling(report.ceilings, r.dtype);
    p.ratios.push({
      peer: r.peer,
      batch: r.batch,
      zerovidMs: z?.wallMs ?? null,
      peerMs: r.ms,
      speedup: speedup(z?.wallMs ?? null, r.ms),
      tflops,
      ofCeiling: tflops !== null && ceil ? tflops / (ceil.rate! / 1000) : null,
    });
  }
  // One line per peer and reason (a peer can miss one batch only: out of memory at batch 16, say).
  const missing = new Map<string, number[]>();
  for (const r of p.rows) {
    if (r.error) missing.set(`${r.peer}|${r.error}`, [...missing.get(`${r.peer}|${r.error}`) ?? [], r.batch]);
  }
  p.missing = [...missing].map(([k, b]) =>
    `${k.split("|")[0]} (batch ${b.join(", ")}): ${k.split("|").slice(1).join("|")}`
  );
});

report.seconds = elapsed();
await writeReport(outDir, report);

// Summary on stdout (the full report is in the files).
const c = report.correctness;
const line = (label: string, x: { passed: number; failed: number } | null) =>
  `${label} ${x ? `${x.passed} passed, ${x.failed} failed` : "not run"}`;
console.log(`gpu-check${small ? " --small" : ""} on ${report.adapter.name}: ${report.seconds.toFixed(0)} s`);
console.log(
  [line("ops", c.ops), line("golden f32", c.golden.f32), line("golden f16", c.golden.f16)].join("; "),
);
const ce = report.ceilings;
if (ce) {
  const r = (x: { rate: number | null; unit: string }) => x.rate === null ? "-" : `${x.rate.toFixed(1)} ${x.unit}`;
  console.log(`ceilings: FMA f32 ${r(ce.fmaF32)}, FMA f16 ${r(ce.fmaF16)}, copy ${r(ce.copy)}`);
}
for (const u of report.unet) {
  const x = u.arithmetic;
  const flops = x
    ? `; ${x.gflop.toPrecision(4)} GFLOP, ${x.tflops?.toPrecision(3) ?? "-"} TFLOP/s, floor at the FMA ceiling ` +
      `${x.floorMs?.toPrecision(3) ?? "-"} ms`
    : "";
  console.log(
    `UNet ${u.dtype} batch ${u.batch}: wall ${u.wallMs?.toFixed(1) ?? "-"} ms, gpu ${u.gpuMs?.toFixed(1) ?? "-"} ms, ` +
      `${u.dispatches === null ? "-" : Math.round(u.dispatches)} dispatches${flops}`,
  );
  const top = u.kernels.slice(0, 3).map((k) => `${k.name} ${(100 * k.share).toFixed(0)}%`);
  if (top.length) console.log(`  top kernels: ${top.join(", ")}`);
}
for (const u of report.unetMath?.rows ?? []) {
  const ratio = u.vsDefault === null ? "" : ` (${u.vsDefault.toFixed(2)}x the default's)`;
  console.log(`UNet batch ${u.batch}, ${report.unetMath!.variant}: gpu ${u.gpuMs?.toFixed(1) ?? "-"} ms${ratio}`);
}
const t = report.text2video;
if (t) {
  console.log(
    `text2video ${t.frames}x${t.width}x${t.height} ${t.steps} steps: ${t.wallS?.toFixed(1) ?? "-"} s, peak pool ` +
      `${t.peakPoolBytes === null ? "-" : (t.peakPoolBytes / 2 ** 20).toFixed(0)} MiB`,
  );
}
for (const q of report.peers.ratios) {
  const row = report.peers.rows.find((r: PeerRow) => r.peer === q.peer && r.batch === q.batch);
  console.log(
    `${q.peer} batch ${q.batch}: ${q.peerMs?.toFixed(1) ?? "-"} ms (${
      row?.error ? `missing: ${row.error.slice(0, 120)}` : ratioText(q.speedup)
    }${q.tflops === null ? "" : `; ${q.tflops.toPrecision(3)} TFLOP/s implied`})`,
  );
}
for (const s of SECTIONS) {
  const st = report.sections[s];
  if (st.status !== "ok") console.log(`section ${s}: ${st.status}${st.error ? ` (${st.error})` : ""}`);
}
console.log(`report: ${join(outDir, "report.md")}`);
Deno.exit(failed ? 1 : 0);
