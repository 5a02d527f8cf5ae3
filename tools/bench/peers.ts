// The peers: the same UNet call in the programs a user would pick instead of zerovid, timed in the same run on the
// same machine. onnxruntime-web (WebGPU execution provider, and wasm) on the UNet exported to ONNX, and PyTorch with
// diffusers (CUDA when torch sees a GPU, else the CPU in f32). Each peer runs in a child process with a deadline, so
// a crash or a hang costs that peer only; a peer that cannot run comes back with the reason.
//
// Library: peerOrt, peerTorch, findTorch, tinyOnnx, exportSd15Onnx. Child entry (used by peerOrt):
//   deno run -A tools/bench/peers.ts ort '<json OrtJob>'
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type * as Ort from "onnxruntime-web";
import { GOLDEN_MODELS, PEER_ONNX } from "../../fixtures/paths.ts";
import { errorMessage } from "./measure.ts";

export interface PeerRow {
  /** "onnxruntime-web webgpu", "onnxruntime-web wasm", "PyTorch eager", "PyTorch SDPA", ... */
  peer: string;
  /** Where it ran: adapter or device description ("llvmpipe ...", "NVIDIA H200", "cpu"). */
  device: string;
  dtype: "f32" | "f16";
  batch: number;
  latent: number;
  iters: number;
  /** Median wall time of one call (inputs in, output out), ms. */
  ms: number | null;
  /** Session creation / model build, s. */
  setupS: number | null;
  /** What the row measured beyond the bare call, or why the device differs from the request. */
  note?: string;
  /** Why the peer did not run (missing package, no model, crashed, timed out). */
  error?: string;
}

export interface PeerLoop {
  /** Warm-up calls (the first call compiles shaders). */
  warmup: number;
  /** Timed loop: at least `minIters` calls, then stops after `timeS` seconds or `iters` calls. */
  timeS: number;
  iters: number;
  minIters: number;
}

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const REPO = here("../../");

// ---------------------------------------------------------------------------------------------------------------
// Child processes with deadlines

export interface Child {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a child to its end or its deadline (then killed); what it printed up to then is kept either way, so a peer
 *  that reports as it goes (the onnxruntime-web child: one line per finished batch) still says how far it got. */
export async function runChild(cmd: string, args: string[], o: { timeoutS: number; env?: Record<string, string> }) {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, env: o.env, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    return { code: -1, stdout: "", stderr: errorMessage(e), timedOut: false } as Child;
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, o.timeoutS * 1000);
  const text = async (r: ReadableStream<Uint8Array>) => {
    let t = "";
    for await (const chunk of r.pipeThrough(new TextDecoderStream())) t += chunk;
    return t;
  };
  try {
    const [stdout, stderr, status] = await Promise.all([text(child.stdout), text(child.stderr), child.status]);
    return { code: status.code, stdout, stderr, timedOut } as Child;
  } finally {
    clearTimeout(timer);
  }
}

/** The child's last stdout line as JSON, or a reason from its exit status and stderr. */
function childResult<T>(c: Child, what: string, timeoutS: number): T | string {
  if (c.timedOut) return `${what} timed out after ${timeoutS} s`;
  const last = c.stdout.trim().split("\n").pop() ?? "";
  if (c.code === 0 && (last.startsWith("{") || last.startsWith("["))) {
    try {
      return JSON.parse(last) as T;
    } catch { /* fall through to the error text */ }
  }
  const err = c.stderr.split("\n").map((l) => l.trim()).filter((l) => l && !/^\s*at /.test(l) && !/\[W:onnx/.test(l));
  return `${what} failed (exit ${c.code}): ${err.slice(-3).join(" | ").slice(0, 400) || "no output"}`;
}

// ---------------------------------------------------------------------------------------------------------------
// onnxruntime-web

export interface OrtModel {
  /** An .onnx file, or .onnx.gz (the committed tiny UNet). */
  path: string;
  /** External data: the name the model refers to -> the file that holds it. */
  external?: Record<string, string>;
  /** Weights dtype of the graph (inputs and output are f32 either way). */
  dtype: "f32" | "f16";
}

export interface OrtJob {
  backend: "webgpu" | "wasm";
  model: OrtModel;
  /** One session, one row per batch. */
  batches: number[];
  latent: number;
  /** Text embedding width (cross_attention_dim). */
  cross: number;
  loop: PeerLoop;
  threads?: number;
}

/** The tiny golden UNet as ONNX: the committed graph, whose weights are the golden model's safetensors. */
export function tinyOnnx(): OrtModel | string {
  const st = join(GOLDEN_MODELS, "tiny-sd/unet/diffusion_pytorch_model.safetensors");
  if (!existsSync(PEER_ONNX)) return `no ${PEER_ONNX}`;
  if (!existsSync(st)) return `no ${st}`;
  return { path: PEER_ONNX, external: { "diffusion_pytorch_model.safetensors": st }, dtype: "f32" };
}

/** A whole file into one buffer of its size, read in 16 MiB pieces: for the SD 1.5 export's 1.7 GB of weights
 *  Deno.readFile took 15.6 s on the 2-core CI machine, this 4.8 s (most of it the first touch of the buffer's pages). */
export async function readWhole(path: string): Promise<Uint8Array> {
  using f = await Deno.open(path);
  const size = (await f.stat()).size;
  const buf = new Uint8Array(size);
  for (let off = 0; off < size;) {
    const n = await f.read(buf.subarray(off, Math.min(size, off + 2 ** 24)));
    if (n === null) throw new Error(`${path}: ended at byte ${off} of ${size}`);
    off += n;
  }
  return buf;
}

async function readModel(path: string): Promise<Uint8Array> {
  if (!path.endsWith(".gz")) return await readWhole(path);
  const f = await Deno.open(path);
  const out = f.readable.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(out).arrayBuffer());
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs in the child: one session, then per batch warm-up and timed calls. */
async function ortChild(job: OrtJob): Promise<PeerRow[]> {
  const ort =
    (job.backend === "webgpu" ? await import("onnxruntime-web/webgpu") : await import("onnxruntime-web")) as typeof Ort;
  // The webgpu entry's threaded glue loads a worker from a blob: URL, which Deno rejects: one thread there.
  // wasm: the idle cores (threads that wait spin, which costs many times over on a busy machine), at most 4.
  const idle = Math.round(navigator.hardwareConcurrency - Deno.loadavg()[0]);
  const threads = job.threads ?? Math.max(1, Math.min(4, idle));
  ort.env.wasm.numThreads = job.backend === "webgpu" ? 1 : threads;
  ort.env.logLevel = "error";
  let device = "cpu (wasm)";
  if (job.backend === "webgpu") {
    const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
    device = a?.info.description || a?.info.vendor || "unknown adapter";
  }
  // Progress on stdout, one JSON line each, for a parent that kills this child at its deadline (peerOrt).
  const progress = (m: { progress: string; row?: PeerRow }) => console.log(JSON.stringify(m));
  const t0 = performance.now();
  // The weights as external data (the SD 1.5 export's .onnx.data, the tiny graph's safetensors): onnxruntime-web
  // uploads each initializer from this buffer straight to its GPU buffer, and parses only the graph.
  const externalData = [];
  for (const [name, file] of Object.entries(job.model.external ?? {})) {
    externalData.push({ path: name, data: await readWhole(file) });
  }
  const model = await readModel(job.model.path);
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const ext = externalData.reduce((s, e) => s + e.data.byteLength, 0);
  const readS = (performance.now() - t0) / 1000;
  progress({
    progress: `model read (graph ${mib(model.byteLength)}${ext ? ` + external data ${mib(ext)}` : ""}) in ` +
      `${readS.toFixed(1)} s; creating the session`,
  });
  const session = await ort.InferenceSession.create(model, { executionProviders: [job.backend], externalData });
  const setupS = (performance.now() - t0) / 1000;
  progress({ progress: `session created in ${setupS.toFixed(1)} s (model read in ${readS.toFixed(1)} s)` });
  const rows: PeerRow[] = [];
  for (const B of job.batches) {
    const L = job.latent;
    const rnd = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
    const feeds = {
      sample: new ort.Tensor("float32", rnd(B * 4 * L * L), [B, 4, L, L]),
      timestep: new ort.Tensor("float32", new Float32Array([500]), [1]),
      encoder_hidden_states: new ort.Tensor("float32", rnd(B * 77 * job.cross), [B, 77, job.cross]),
    };
    const row: PeerRow = {
      peer: `onnxruntime-web ${job.backend}`,
      device,
      dtype: job.model.dtype,
      batch: B,
      latent: L,
      iters: 0,
      ms: null,
      setupS,
      note: job.backend === "webgpu"
        ? "inputs uploaded and output read back each call"
        : `${threads} thread${threads > 1 ? "s" : ""}`,
    };
    rows.push(row);
    const call = async () => {
      const t = performance.now();
      const r = await session.run(feeds);
      const out = r[session.outputNames[0]];
      if (!(out.data as Float32Array).every(Number.isFinite)) throw new Error("output has non-finite values");
      out.dispose();
      return performance.now() - t;
    };
    try {
      progress({ progress: `session created in ${setupS.toFixed(1)} s; batch ${B}: first call` });
      const first = await call();
      progress({
        progress: `session created in ${setupS.toFixed(1)} s; batch ${B}: first call ${first.toFixed(0)} ms`,
      });
      for (let i = 1; i < Math.max(1, job.loop.warmup); i++) await call();
      const times: number[] = [];
      let total = 0;
      do {
        const t = await call();
        times.push(t);
        total += t;
      } while ((total < job.loop.timeS * 1000 || times.length < job.loop.minIters) && times.length < job.loop.iters);
      row.iters = times.length;
      row.ms = median(times);
    } catch (e) {
      row.error = errorMessage(e);
    }
    progress({ progress: `batch ${B} done`, row });
  }
  await session.release();
  return rows;
}

/** onnxruntime-web on `job.backend`, in a child process that must finish within `timeoutS`. */
export async function peerOrt(job: OrtJob, timeoutS: number): Promise<PeerRow[]> {
  const rows = job.batches.map((batch): PeerRow => ({
    peer: `onnxruntime-web ${job.backend}`,
    device: job.backend === "webgpu" ? "-" : "cpu (wasm)",
    dtype: job.model.dtype,
    batch,
    latent: job.latent,
    iters: 0,
    ms: null,
    setupS: null,
  }));
  const c = await runChild(
    Deno.execPath(),
    // "manual": use node_modules as the parent left it (the parent's run installed it; offline there is no other way).
    [
      "run",
      "-A",
      "--node-modules-dir=manual",
      "--config",
      join(REPO, "deno.json"),
      here("./peers.ts"),
      "ort",
      JSON.stringify(job),
    ],
    { timeoutS },
  );
  const r = childResult<PeerRow[]>(c, `onnxruntime-web ${job.backend}`, timeoutS);
  return typeof r === "string" ? partialRows(rows, c.stdout, r) : r;
}

/** A killed or failed onnxruntime-web child's rows: the batches it finished (its progress lines' rows), the rest
 *  with `why` and the last stage it reported. */
export function partialRows(rows: PeerRow[], stdout: string, why: string): PeerRow[] {
  const done = new Map<number, PeerRow>();
  let stage = "";
  for (const line of stdout.split("\n")) {
    try {
      const m = JSON.parse(line) as { progress?: string; row?: PeerRow };
      if (m.row) done.set(m.row.batch, m.row);
      if (m.progress) stage = m.progress;
    } catch { /* not a progress line */ }
  }
  return rows.map((row) => done.get(row.batch) ?? { ...row, error: stage ? `${why} (${stage})` : why });
}

/** A row per batch saying why `peer` did not run. */
export function missingRows(peer: string, batches: number[], latent: number, dtype: "f32" | "f16", why: string) {
  return batches.map((batch): PeerRow => ({
    peer,
    device: "-",
    dtype,
    batch,
    latent,
    iters: 0,
    ms: null,
    setupS: null,
    error: why,
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// PyTorch + diffusers

export interface TorchEnv {
  python: string;
  env: Record<string, string>;
  /** "torch 2.11.0, diffusers 0.25.1 (../shared/ref sources)" */
  versions: string;
}

/** Cache folder for the extracted reference sources. */
function cacheDir(): string {
  const base = Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(base, "zerovid");
}

/** The upstream sources (diffusers 0.25.1 + huggingface_hub 0.20.3) from a ref folder, extracted once. */
async function refSources(refDir: string): Promise<string[] | string> {
  let tgz: string | undefined;
  for await (const e of Deno.readDir(refDir)) {
    if (e.isFile && /^diffusers-.*_src\.tgz$/.test(e.name)) tgz = e.name;
  }
  if (!tgz) return `${refDir} has no diffusers-*_src.tgz`;
  const dest = join(cacheDir(), "ref", tgz.replace(/\.tgz$/, ""));
  if (!existsSync(join(dest, "diffusers/src/diffusers/__init__.py"))) {
    await Deno.mkdir(dest, { recursive: true });
    const c = await runChild("tar", ["xzf", join(refDir, tgz), "-C", dest], { timeoutS: 120 });
    if (c.code !== 0) return `extracting ${tgz}: ${c.stderr.trim()}`;
  }
  const paths = [join(dest, "diffusers/src"), join(dest, "hfhub/src")];
  // Debian's torch comes without the `safetensors` package: the ref folder has a numpy stand-in.
  if (existsSync(join(refDir, "stubs/safetensors"))) paths.push(join(refDir, "stubs"));
  return paths;
}

/** The ref folder: `--ref DIR`, else ../shared/ref beside the repository when present. */
export function defaultRef(ref?: string): string | null {
  if (ref) return resolve(ref);
  const guess = resolve(REPO, "../shared/ref");
  return existsSync(guess) ? guess : null;
}

/**
 * A python3 that imports torch and diffusers: ZEROVID_PYTHON, python3, /usr/bin/python3 (first that works). With a
 * ref folder its diffusers 0.25.1 sources go on PYTHONPATH (the version the goldens were recorded with).
 */
export async function findTorch(refDir: string | null): Promise<TorchEnv | string> {
  const tried: string[] = [];
  const candidates = [Deno.env.get("ZEROVID_PYTHON"), "python3", "/usr/bin/python3"].filter((p): p is string => !!p);
  let extra: string[] = [];
  if (refDir) {
    const r = await refSources(refDir);
    if (typeof r === "string") tried.push(`ref: ${r}`);
    else extra = r;
  }
  const probe = "import sys, torch, diffusers\n" +
    "try:\n import safetensors\nexcept ImportError:\n sys.exit('no safetensors')\n" +
    "print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')";
  const seen = new Set<string>();
  for (const py of candidates) {
    if (seen.has(py)) continue;
    seen.add(py);
    // Stubs last: a real safetensors package wins.
    const pp = [
      ...extra.filter((p) => !p.endsWith("stubs")),
      Deno.env.get("PYTHONPATH") ?? "",
      ...extra.filter((p) => p.endsWith("stubs")),
    ].filter(Boolean).join(":");
    const env = { PYTHONPATH: pp, HF_HUB_OFFLINE: "1", PYTHONUNBUFFERED: "1", PYTHONWARNINGS: "ignore" };
    const c = await runChild(py, ["-c", probe], { timeoutS: 120, env });
    if (c.code === 0) {
      const versions = c.stdout.trim().split("\n").pop()! + (extra.length ? ` (sources from ${refDir})` : "");
      return { python: py, env, versions };
    }
    const why = c.stderr.trim().split("\n").pop() || `exit ${c.code}`;
    tried.push(`${py}: ${why}`);
  }
  return `no python3 imports torch and diffusers (${tried.join("; ")})`;
}

export interface TorchJob {
  /** A diffusers model folder (its unet/), or "sd15-random". */
  model: string;
  batches: number[];
  latent: number;
  /** f16 on CUDA; the CPU runs f32 whatever is asked. */
  dtype: "f32" | "f16";
  /** Attention processors to time: plain ("eager") and scaled_dot_product_attention ("sdpa"). */
  attn: ("eager" | "sdpa")[];
  device: "auto" | "cpu";
  loop: PeerLoop;
}

/** PyTorch + diffusers, one row per attention processor and batch. */
export async function peerTorch(t: TorchEnv | string, job: TorchJob, timeoutS: number): Promise<PeerRow[]> {
  const rows = () =>
    job.attn.flatMap((a) =>
      job.batches.map((batch): PeerRow => ({
        peer: `PyTorch ${a === "sdpa" ? "SDPA" : "eager"}`,
        device: "-",
        dtype: job.dtype,
        batch,
        latent: job.latent,
        iters: 0,
        ms: null,
        setupS: null,
      }))
    );
  if (typeof t === "string") return rows().map((r) => ({ ...r, error: t }));
  const c = await runChild(t.python, [here("../gpu_check/torch_peer.py"), JSON.stringify(job)], {
    timeoutS,
    env: t.env,
  });
  const r = childResult<PeerRow[]>(c, "PyTorch", timeoutS);
  return typeof r === "string" ? rows().map((row) => ({ ...row, error: r })) : r;
}

/** An exported ONNX file, with its weights file `OUT.data` as external data when the export wrote one. */
export function exportedOnnx(path: string, dtype: "f32" | "f16"): OrtModel {
  const data = `${path}.data`;
  return existsSync(data) ? { path, external: { [basename(data)]: data }, dtype } : { path, dtype };
}

/**
 * SD 1.5's UNet (random weights) exported to ONNX in `dir`, in f16 (f32 is 3.4 GB, more than onnxruntime-web's
 * 32-bit heap holds). Exported on CUDA when torch sees a GPU. The weights go to a file of their own (ONNX external
 * data, `--external-data`), so that onnxruntime-web parses only the graph and uploads the weights without copying
 * them through its wasm heap (on llvmpipe, reading plus session creation 57-68 s -> 25-43 s, peak memory 7.9 ->
 * 4.4 GB; docs/PERFORMANCE.md). Returns the model or the reason it is missing.
 */
export async function exportSd15Onnx(t: TorchEnv | string, dir: string, timeoutS: number): Promise<OrtModel | string> {
  if (typeof t === "string") return `no ONNX export: ${t}`;
  const out = join(dir, "sd15-unet-f16.onnx");
  // A cached export without its .data is one from before --external-data: exported again.
  if (existsSync(out) && existsSync(`${out}.data`)) return exportedOnnx(out, "f16");
  await Deno.mkdir(dir, { recursive: true });
  const cuda = t.versions.includes(" cuda");
  const args = [
    here("../gpu_check/export_unet_onnx.py"),
    "--sd15-random",
    out,
    "--f16",
    "--external-data",
    ...(cuda ? ["--cuda"] : []),
  ];
  const c = await runChild(t.python, args, { timeoutS, env: t.env });
  if (c.timedOut) return `ONNX export timed out after ${timeoutS} s`;
  if (c.code !== 0 || !existsSync(out) || !existsSync(`${out}.data`)) {
    return `ONNX export failed: ${c.stderr.trim().split("\n").slice(-2).join(" | ").slice(0, 400)}`;
  }
  return exportedOnnx(out, "f16");
}

/** zerovid's time over the peer's: > 1 means zerovid is faster. */
export function speedup(zerovidMs: number | null, peerMs: number | null): number | null {
  return zerovidMs && peerMs ? peerMs / zerovidMs : null;
}

export function ratioText(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return "-";
  return x >= 1 ? `zerovid ${x.toFixed(2)}x faster` : `zerovid ${(1 / x).toFixed(2)}x slower`;
}

if (import.meta.main) {
  const [kind, arg] = Deno.args;
  if (kind !== "ort" || !arg) {
    console.error("usage: peers.ts ort '<json job>' (run by tools/bench.ts and tools/gpu_check.ts)");
    Deno.exit(2);
  }
  try {
    console.log(JSON.stringify(await ortChild(JSON.parse(arg) as OrtJob)));
    Deno.exit(0);
  } catch (e) {
    console.error(errorMessage(e));
    Deno.exit(1);
  }
}
