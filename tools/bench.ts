// deno task bench [options]: kernel throughput (the op table's perf cases, SD 1.5 shapes at 512x512), the tiny
// UNet's call time (CFG batch 2 and 2F frames with cross-frame attention), with --full one denoising step of
// an SD 1.5-sized UNet with random weights, with --peers the tiny UNet call beside onnxruntime-web (WebGPU
// and wasm) and PyTorch on the CPU, in the same run, and with --parts previews the cost of live previews on a tiny
// text-to-video run. Plain aligned tables, or --json.
import { parseArgs } from "node:util";
import { stat } from "node:fs/promises";
import { Device, type DType } from "../pipeline/gpu/device.ts";
import { loadOpTable } from "../tests/ops/table.ts";
import { kernelTable, mib, ms, rate, table } from "./bench/format.ts";
import { benchKernels, type KernelRow } from "./bench/kernels.ts";
import { errorMessage, type LoopOptions } from "./bench/measure.ts";
import { benchFullStep, benchTinyUNet, type FullResult, type UNetRow } from "./bench/unet.ts";
import {
  defaultRef,
  findTorch,
  missingRows,
  peerOrt,
  type PeerRow,
  peerTorch,
  ratioText,
  speedup,
  tinyOnnx,
} from "./bench/peers.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";
import { benchPreviews, type PreviewRow } from "./bench/previews.ts";

const HELP = `deno task bench [options]

Parts (default: kernels,tiny; --full alone: full; --peers alone: peers):
  --parts LIST        comma list of kernels, tiny, full, peers, previews
                      (previews: a tiny text-to-video run with and without live previews, alternated; overhead)
  --full              one denoising step of an SD 1.5-sized UNet with random weights
  --peers             the tiny UNet call (batch 2, f32) in zerovid, onnxruntime-web WebGPU and wasm, and PyTorch
                      (CPU), in this run; prints each peer's time and its ratio to zerovid
  --ref DIR           peers: upstream diffusers sources (diffusers-*_src.tgz; default ../shared/ref if present)
  --peer-timeout S    peers: deadline per peer process (default 300)
Selection:
  --precision P       f32 or f16 (default: both, f16 when the adapter has shader-f16)
  --filter REGEX      kernels whose "op shape" matches
  --quick             one warm-up call and one timed call per case
Timing:
  --time S            timed loop per case stops after S seconds (default 0.5) ...
  --iters N           ... or N calls (default 50)
  --max-call S        skip kernel cases estimated to take more than S s per call (default 2; 0: never)
Models:
  --tiny-model DIR    tiny diffusers folder (default fixtures/golden/models/tiny-sd, else a random tiny config)
  --tiny-latent N     tiny UNet latent size (default 8, the model's sample_size)
  --frames F          frames for the cross-frame call, batch 2F (default 8)
  --latent N          --full latent size (default 64 = 512x512)
  --batch N           --full UNet batch (default 2: CFG; 2F > 2 adds cross-frame attention)
Other:
  --adapter NAME      adapter substring, low-power or high-performance
  --json              machine-readable output on stdout
`;

function fail(msg: string): never {
  console.error(`bench: ${msg}`);
  Deno.exit(2);
}

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    parts: { type: "string" },
    full: { type: "boolean", default: false },
    peers: { type: "boolean", default: false },
    ref: { type: "string" },
    "peer-timeout": { type: "string", default: "300" },
    precision: { type: "string" },
    filter: { type: "string" },
    quick: { type: "boolean", default: false },
    time: { type: "string", default: "0.5" },
    iters: { type: "string", default: "50" },
    "max-call": { type: "string", default: "2" },
    "tiny-model": { type: "string" },
    "tiny-latent": { type: "string", default: "8" },
    frames: { type: "string", default: "8" },
    latent: { type: "string", default: "64" },
    batch: { type: "string", default: "2" },
    adapter: { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (a.help) {
  console.log(HELP);
  Deno.exit(0);
}

function num(name: string, v: string, min: number, integer = true): number {
  const x = Number(v);
  if (!Number.isFinite(x) || x < min || (integer && !Number.isInteger(x))) {
    fail(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got "${v}"`);
  }
  return x;
}

const PARTS = ["kernels", "tiny", "full", "peers", "previews"];
const parts = new Set(
  a.parts
    ? a.parts.split(",").map((s) => s.trim()).filter(Boolean)
    : a.full || a.peers
    ? [...(a.full ? ["full"] : []), ...(a.peers ? ["peers"] : [])]
    : ["kernels", "tiny"],
);
for (const p of parts) if (!PARTS.includes(p)) fail(`--parts: unknown part "${p}" (have ${PARTS.join(", ")})`);
if (a.precision !== undefined && a.precision !== "f32" && a.precision !== "f16") {
  fail(`--precision must be f32 or f16, got "${a.precision}"`);
}
let filter: RegExp | null = null;
try {
  filter = a.filter ? new RegExp(a.filter) : null;
} catch (e) {
  fail(`--filter: ${errorMessage(e)}`);
}
const loop: LoopOptions = a.quick ? { warmupS: 0, warmupMax: 1, timeS: 0, maxIters: 1, profiledCalls: 1 } : {
  warmupS: 0.1,
  warmupMax: 3,
  timeS: num("time", a.time, 0, false),
  maxIters: num("iters", a.iters, 1),
  profiledCalls: 3,
};
const maxCallS = num("max-call", a["max-call"], 0, false);
const tinyLatent = num("tiny-latent", a["tiny-latent"], 1);
const frames = num("frames", a.frames, 1);
const latent = num("latent", a.latent, 1);
const batch = num("batch", a.batch, 1);
const peerTimeoutS = num("peer-timeout", a["peer-timeout"], 1, false);

const log = (line: string) => console.error(line);
const print = (s = "") => a.json || console.log(s);

async function openDevice(): Promise<Device> {
  try {
    return await Device.open({ profile: true, adapter: a.adapter });
  } catch (e) {
    fail(errorMessage(e));
  }
}

const probe = await openDevice();
const adapter = {
  name: probe.adapterName,
  fallback: probe.isFallback,
  f16: probe.f16,
  timestamps: probe.timestamps,
  subgroups: probe.subgroupNote,
  maxStorageBufferBindingSize: probe.maxBinding,
};
probe.destroy();
let precisions: DType[];
if (a.precision) {
  if (a.precision === "f16" && !adapter.f16) fail(`precision f16 needs 'shader-f16', which "${adapter.name}" lacks`);
  precisions = [a.precision as DType];
} else precisions = adapter.f16 ? ["f32", "f16"] : ["f32"];

print(
  `zerovid bench on ${adapter.name}${adapter.fallback ? " (software/fallback adapter)" : ""}; ` +
    `shader-f16 ${adapter.f16 ? "yes" : "no"}, timestamp-query ${adapter.timestamps ? "yes" : "no"}, ` +
    `max binding ${mib(adapter.maxStorageBufferBindingSize)} MiB; subgroups ${adapter.subgroups}`,
);
print(
  a.quick
    ? "mode: --quick (1 warm-up call, 1 timed call)"
    : `mode: warm-up up to ${loop.warmupMax} calls, then timed until ${loop.timeS} s or ${loop.maxIters} calls`,
);

const out: {
  adapter: typeof adapter;
  options: Record<string, unknown>;
  kernels: KernelRow[];
  unet: UNetRow[];
  full: FullResult[];
  peers: PeerRow[];
  previews: PreviewRow[];
} = {
  adapter,
  options: {
    parts: [...parts],
    precisions,
    filter: a.filter ?? null,
    quick: a.quick,
    loop,
    maxCallS,
    tinyLatent,
    frames,
    latent,
    batch,
  },
  kernels: [],
  unet: [],
  full: [],
  peers: [],
  previews: [],
};

const gpuWord = adapter.timestamps ? "GPU timestamps" : "wall time (no timestamp-query)";

// ---------------------------------------------------------------------------------------------------------------
// 1. Kernels

if (parts.has("kernels")) {
  const { perf } = await loadOpTable();
  const cases = perf.filter((c) => !filter || filter.test(`${c.op} ${c.shape}`));
  if (!cases.length) fail(`--filter ${a.filter} matches no perf case`);
  for (const dtype of precisions) {
    const dev = await openDevice();
    try {
      out.kernels.push(...await benchKernels(dev, cases, dtype, { loop, maxCallS, log }));
    } finally {
      dev.destroy();
    }
  }
  print();
  print(`Kernels (SD 1.5 at 512x512; rate from ${gpuWord}; GB/s counts bytes at the storage dtype)`);
  const headers = ["op", "shape", "dtype", "iters", "wall ms", "gpu ms", "rate", "unit", "note"];
  print(table(
    headers,
    out.kernels.map((r) => [
      r.op,
      r.shape,
      r.dtype,
      r.status === "ok" ? r.iters : "-",
      ms(r.wallMs),
      ms(r.gpuMs),
      rate(r.rate),
      r.unit,
      r.note,
    ]),
    ["iters", "wall ms", "gpu ms", "rate"],
  ));
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Tiny UNet

/** Kernels per call in the "top kernels" tables (gpu-check's report lists them all). */
const TOP = 8;

const ratio = (gpu: number | null, wall: number | null) =>
  gpu !== null && wall ? `${(100 * gpu / wall).toFixed(0)}%` : "-";
const timedCell = (timed: number | null, d: number | null) =>
  timed === null || d === null ? "-" : timed < d ? `${Math.round(timed)}/${Math.round(d)}` : "all";

if (parts.has("tiny")) {
  const def = GOLDEN_MODELS + "/tiny-sd";
  const dir = a["tiny-model"] ?? def;
  const exists = !!(await stat(dir).catch(() => null))?.isDirectory();
  if (a["tiny-model"] && !exists) fail(`--tiny-model ${dir}: not a folder`);
  for (const dtype of precisions) {
    const dev = await openDevice();
    try {
      log(`tiny UNet ${dtype}: latent ${tinyLatent}, batch 2 and ${2 * frames}`);
      out.unet.push(...await benchTinyUNet(dev, dtype, { dir: exists ? dir : null, latent: tinyLatent, frames, loop }));
    } catch (e) {
      out.unet.push({
        model: exists ? dir : "random tiny config",
        dtype,
        latent: tinyLatent,
        batch: 2,
        attention: "-",
        iters: 0,
        wallMs: null,
        recordMs: null,
        gpuMs: null,
        dispatches: null,
        timed: null,
        wallUnprofiled: false,
        profiledWallMs: null,
        kernels: [],
        flops: null,
        error: errorMessage(e),
      });
    } finally {
      dev.destroy();
    }
  }
  const u = out.unet;
  print();
  print(
    `Tiny UNet, one call (${u[0]?.model}, latent ${tinyLatent}x${tinyLatent}); ` +
      `wall = record + submit + wait, measured ${u.some((r) => r.wallUnprofiled) ? "without" : "with"} timestamps; ` +
      `gpu = sum of the dispatches' ${gpuWord}; wall+ts = wall of the profiled calls`,
  );
  print(table(
    [
      "dtype",
      "batch",
      "attention",
      "iters",
      "wall ms",
      "record ms",
      "gpu ms",
      "gpu/wall",
      "wall+ts ms",
      "dispatches",
      "timed",
      "note",
    ],
    u.map((r) => [
      r.dtype,
      r.batch,
      r.attention,
      r.error ? "-" : r.iters,
      ms(r.wallMs),
      ms(r.recordMs),
      ms(r.gpuMs),
      ratio(r.gpuMs, r.wallMs),
      ms(r.profiledWallMs),
      r.dispatches === null ? "-" : Math.round(r.dispatches),
      timedCell(r.timed, r.dispatches),
      r.error ? `error: ${r.error}` : "",
    ]),
    ["batch", "iters", "wall ms", "record ms", "gpu ms", "gpu/wall", "wall+ts ms", "dispatches"],
  ));
  if (u.some((r) => r.kernels.length)) {
    print();
    print("Tiny UNet: top kernels by GPU time per call");
    print(kernelTable(u.map((r) => ({ label: `${r.dtype} B=${r.batch}`, kernels: r.kernels })), TOP));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Live previews: their cost on a whole (tiny) text-to-video run

if (parts.has("previews")) {
  const dir = a["tiny-model"] ?? GOLDEN_MODELS + "/tiny-sd";
  if (!(await stat(dir).catch(() => null))?.isDirectory()) fail(`--tiny-model ${dir}: not a folder`);
  const steps = a.quick ? 4 : 20, runs = a.quick ? 1 : 5;
  for (const dtype of precisions) {
    // Without timestamps: profiling splits every dispatch into its own pass, which is not how runs go.
    const dev = await Device.open({ adapter: a.adapter }).catch((e) => fail(errorMessage(e)));
    try {
      out.previews.push(
        await benchPreviews(dev, dtype, { dir, frames, size: tinyLatent * 8, steps, runs, log }),
      );
    } finally {
      dev.destroy();
    }
  }
  print();
  print(
    `Live previews: text2video on ${dir.split("/").pop()}, ${frames} frames at ${tinyLatent * 8}x${tinyLatent * 8}; ` +
      "median of alternated runs without and with previews (budget: 5 %)",
  );
  print(table(
    ["dtype", "steps", "previews", "runs", "plain s", "previews s", "overhead"],
    out.previews.map((r) => [
      r.dtype,
      r.steps,
      r.previews,
      r.runs,
      r.plainS.toFixed(3),
      r.previewS.toFixed(3),
      `${r.overheadPct.toFixed(1)}%`,
    ]),
    ["steps", "previews", "runs", "plain s", "previews s", "overhead"],
  ));
}

// ---------------------------------------------------------------------------------------------------------------
// 3. SD 1.5-sized UNet, one denoising step

let fullFailed = false;
if (parts.has("full")) {
  for (const dtype of precisions) {
    const dev = await openDevice();
    try {
      const r = await benchFullStep(dev, dtype, { latent, batch, loop, log });
      if (r.error) {
        fullFailed = true;
        const hint = r.error.includes("maxStorageBufferBindingSize")
          ? "; this adapter cannot bind a tensor that large: try --precision f16 or a smaller --latent/--batch"
          : "";
        r.error = `SD 1.5 step at latent ${latent}, batch ${batch}, ${dtype} failed: ${r.error}${hint}`;
      }
      out.full.push(r);
    } finally {
      dev.destroy();
    }
  }
  print();
  print(
    `SD 1.5 UNet (random weights), one denoising step = [CFG gather +] UNet [+ CFG] + DDIM at latent ` +
      `${latent}x${latent} (${latent * 8}x${latent * 8} px), batch ${batch}`,
  );
  print(table(
    [
      "dtype",
      "weights MiB",
      "build s",
      "iters",
      "wall ms",
      "record ms",
      "gpu ms",
      "gpu/wall",
      "wall+ts ms",
      "dispatches",
      "timed",
      "peak pool MiB",
    ],
    out.full.map((r) => [
      r.dtype,
      r.weightBytes ? mib(r.weightBytes) : "-",
      r.buildS ? r.buildS.toFixed(1) : "-",
      r.iters ?? "-",
      ms(r.wallMs),
      ms(r.recordMs),
      ms(r.gpuMs),
      ratio(r.gpuMs, r.wallMs),
      ms(r.profiledWallMs),
      r.dispatches === null ? "-" : Math.round(r.dispatches),
      timedCell(r.timed, r.dispatches),
      r.peakPoolBytes === null ? "-" : mib(r.peakPoolBytes),
    ]),
    [
      "weights MiB",
      "build s",
      "iters",
      "wall ms",
      "record ms",
      "gpu ms",
      "gpu/wall",
      "wall+ts ms",
      "dispatches",
      "peak pool MiB",
    ],
  ));
  for (const r of out.full) if (r.error) print(`error: ${r.error}`);
  if (out.full.some((r) => r.kernels.length)) {
    print();
    print("SD 1.5 step: top kernels by GPU time per step");
    print(kernelTable(out.full.map((r) => ({ label: r.dtype, kernels: r.kernels })), TOP));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Peers: the tiny UNet call, batch 2, f32, in zerovid and in the programs a user would run instead

if (parts.has("peers")) {
  const dir = GOLDEN_MODELS + "/tiny-sd";
  const L = tinyLatent, B = 2;
  // At least 3 timed calls on each side: one slow call on a busy machine should not decide a ratio.
  const timeS = Math.max(2, loop.timeS);
  const peerLoop = a.quick
    ? { warmup: 1, timeS: 0, iters: 1, minIters: 1 }
    : { warmup: 2, timeS, iters: loop.maxIters, minIters: 3 };
  const zvLoop = a.quick ? loop : { ...loop, timeS };
  const dev = await openDevice();
  let zv: UNetRow;
  try {
    log(`peers: zerovid, tiny UNet f32, batch ${B}, latent ${L}`);
    [zv] = await benchTinyUNet(dev, "f32", { dir, latent: L, frames: 1, loop: zvLoop, batches: [B] });
  } finally {
    dev.destroy();
  }
  out.peers.push({
    peer: "zerovid",
    device: adapter.name,
    dtype: "f32",
    batch: B,
    latent: L,
    iters: zv.iters,
    ms: zv.wallMs,
    setupS: null,
    note: `${zv.dispatches === null ? "-" : Math.round(zv.dispatches)} dispatches; mean of the timed loop`,
    ...(zv.error ? { error: zv.error } : {}),
  });
  const onnx = tinyOnnx();
  for (const backend of ["webgpu", "wasm"] as const) {
    log(`peers: onnxruntime-web ${backend}`);
    out.peers.push(
      ...typeof onnx === "string"
        ? missingRows(`onnxruntime-web ${backend}`, [B], L, "f32", onnx)
        : await peerOrt({ backend, model: onnx, batches: [B], latent: L, cross: 32, loop: peerLoop }, peerTimeoutS),
    );
  }
  log("peers: PyTorch (CPU)");
  const torch = await findTorch(defaultRef(a.ref));
  out.peers.push(
    ...await peerTorch(
      torch,
      { model: dir, batches: [B], latent: L, dtype: "f32", attn: ["eager"], device: "cpu", loop: peerLoop },
      peerTimeoutS,
    ),
  );
  const zMs = out.peers[0].ms;
  print();
  print(
    `Peers: tiny-sd UNet, one call, batch ${B}, latent ${L}x${L}, f32, same machine, same run ` +
      `(peers: median wall per call; ratio = peer time / zerovid time)`,
  );
  print(table(
    ["peer", "device", "dtype", "iters", "ms/call", "setup s", "vs zerovid", "note"],
    out.peers.map((r) => [
      r.peer,
      r.device,
      r.dtype,
      r.ms === null ? "-" : r.iters,
      ms(r.ms),
      r.setupS === null ? "-" : r.setupS.toFixed(1),
      r.peer === "zerovid" ? "-" : ratioText(speedup(zMs, r.ms)),
      r.error ? `missing: ${r.error}` : r.note,
    ]),
    ["iters", "ms/call", "setup s"],
  ));
  const ortGpu = out.peers.find((r) => r.peer === "onnxruntime-web webgpu");
  const x = speedup(zMs, ortGpu?.ms ?? null);
  print(
    `target: zerovid >= 3x faster than onnxruntime-web webgpu on the same adapter: ` +
      (x === null ? "not measured" : `${x.toFixed(2)}x, ${x >= 3 ? "met" : "not met"}`),
  );
}

if (a.json) console.log(JSON.stringify(out, null, 2));
if (fullFailed) Deno.exit(1);
