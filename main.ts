// zerovid command line: `deno run -A main.ts <mode> [options]` generates one video; `main.ts serve ...` starts the
// server (routes/server.ts). Bad options or inputs exit with 2 and one line naming the problem; other failures
// (GPU, I/O) exit with 1.
import { basename, dirname, extname, resolve } from "node:path";
import { Device } from "./pipeline/gpu/device.ts";
import { DEMO_DEFAULTS, FIELDS, MODE_DEFAULTS, runJob, validateRequest, VIDEO_MODES } from "./pipeline/job.ts";
import {
  type Format,
  type JobProgress,
  type JobRequest,
  type Mode,
  MODES,
  RequestError,
} from "./pipeline/job_types.ts";
import { ModelCache } from "./pipeline/model_cache.ts";
import { Cancelled } from "./pipeline/modes/common.ts";
import { DEMO_MODEL, DEMO_NOTICE } from "./fixtures/demo_model.ts";

/** A bad command line (exit 2). */
class UsageError extends Error {}

type OptKind = "string" | "int" | "number" | "file" | "flag";

interface Opt {
  kind: OptKind;
  /** The JobRequest field it sets (default: the camelCase name). */
  field?: keyof JobRequest;
  arg: string;
  help: string;
  /** Modes it applies to (default: those of the field, else all). */
  modes?: readonly Mode[];
}

const OPTS: Record<string, Opt> = {
  "prompt": { kind: "string", arg: "TEXT", help: "what to generate (pix2pix: the edit instruction)" },
  "negative-prompt": { kind: "string", arg: "TEXT", help: "what to avoid (default: empty)" },
  "video": { kind: "file", arg: "FILE", help: "input video (mp4, webm, gif, mov, ...)" },
  "model": {
    kind: "string",
    arg: "PATH|ID",
    help: "base model: diffusers folder, .safetensors file, hub id, or 'demo' (default: $ZEROVID_MODEL, else demo)",
  },
  "config": { kind: "string", arg: "DIR|ID", help: "configs + tokenizer for a single-file model (diffusers folder)" },
  "controlnet": { kind: "string", arg: "DIR|ID", help: "ControlNet folder or hub id (default per mode)" },
  "video-length": { kind: "int", arg: "N", help: "frames (text2video); at most N frames (video modes)" },
  "width": { kind: "int", arg: "PX", help: "frame width, a multiple of 8" },
  "height": { kind: "int", arg: "PX", help: "frame height, a multiple of 8" },
  "resolution": { kind: "int", arg: "PX", help: "longer side of the input frames, rounded to multiples of 64" },
  "steps": { kind: "int", arg: "N", help: "denoising steps" },
  "guidance-scale": { kind: "number", arg: "G", help: "classifier-free guidance scale" },
  "image-guidance-scale": { kind: "number", arg: "G", help: "Instruct-Pix2Pix image guidance scale" },
  "control-scale": { kind: "number", arg: "S", help: "ControlNet conditioning scale" },
  "seed": { kind: "int", arg: "N", help: "random seed (default: random, printed)" },
  "t0": { kind: "int", arg: "N", help: "DDIM step index (from the end) where the motion warp starts" },
  "t1": { kind: "int", arg: "N", help: "DDIM step index (from the end) the warped frames are re-noised to" },
  "motion-x": { kind: "number", arg: "D", help: "horizontal motion per frame (pixels of a 512 frame)" },
  "motion-y": { kind: "number", arg: "D", help: "vertical motion per frame (pixels of a 512 frame)" },
  "chunk-size": { kind: "int", arg: "N", help: "frames per model call, anchor included (bounds GPU memory)" },
  "fps": {
    kind: "number",
    arg: "FPS",
    help: "frames per second of the output (video modes: the input is resampled to it; -1: the source's)",
  },
  "start": { kind: "number", arg: "SEC", help: "first second of the input video used" },
  "end": { kind: "number", arg: "SEC", help: "last second of the input video used (-1: to the end)" },
  "precision": { kind: "string", arg: "f16|f32", help: "storage precision (default: f16 if the GPU has it)" },
  "low-threshold": { kind: "number", arg: "T", help: "Canny low threshold (0-255)" },
  "high-threshold": { kind: "number", arg: "T", help: "Canny high threshold (0-255)" },
  "depth-model": { kind: "string", arg: "FILE", help: "MiDaS/DPT depth model (.onnx)" },
  "pose-model": { kind: "string", arg: "FILE", help: "pose detector (.onnx) for raw videos (default: skeleton input)" },
  "smooth-background": { kind: "flag", arg: "", help: "background smoothing (needs --saliency-model)" },
  "smooth-strength": { kind: "number", arg: "A", help: "weight kept of each frame's own background (0-1)" },
  "saliency-model": { kind: "string", arg: "FILE", help: "salient-object model (.onnx) for background smoothing" },
};

const CLI_ONLY: Record<string, { arg: string; help: string }> = {
  "out": { arg: "FILE", help: "output file; the format follows the extension: .mp4, .gif or .webm" },
  "adapter": { arg: "NAME", help: "WebGPU adapter: a substring of its name, low-power or high-performance" },
};

const MODE_HELP: Record<Mode, string> = {
  text2video: "text to video: Text2Video-Zero (motion field + cross-frame attention)",
  pix2pix: "edit a video by instruction: Video Instruct-Pix2Pix",
  pose: "pose-guided video from a rendered skeleton video (ControlNet openpose)",
  canny: "edge-guided video: Canny edges of the input video (ControlNet canny)",
  depth: "depth-guided video: depth maps of the input video (ControlNet depth)",
};

const camel = (k: string) => k.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const kebab = (f: string) => f.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

function optModes(name: string): readonly Mode[] {
  const o = OPTS[name];
  return o.modes ?? FIELDS[(o.field ?? camel(name)) as keyof typeof FIELDS]?.modes ?? MODES;
}

function usage(mode?: Mode): string {
  const lines: string[] = [];
  const row = (name: string, arg: string, help: string, def?: unknown) => {
    const left = `  --${name}${arg ? " " + arg : ""}`;
    const d = def === undefined ? "" : ` [default: ${def}]`;
    lines.push(`${left.padEnd(34)}${help}${d}`);
  };
  if (!mode) {
    lines.push(
      "zerovid: zero-shot video diffusion (Text2Video-Zero) on WebGPU",
      "",
      "usage: deno run -A main.ts <mode> [options]     (deno task generate <mode> ...)",
      "       deno run -A main.ts serve [options]      (the HTTP server and web page)",
      "",
      "modes:",
      ...MODES.map((m) => `  ${m.padEnd(12)}${MODE_HELP[m]}`),
      "",
      "`main.ts <mode> --help` lists the options of a mode and their defaults. Common options:",
    );
    for (const k of ["prompt", "model", "video", "steps", "seed", "precision"]) row(k, OPTS[k].arg, OPTS[k].help);
    row("out", CLI_ONLY.out.arg, CLI_ONLY.out.help);
    lines.push(
      "",
      "With no model configured (no --model, no $ZEROVID_MODEL) the built-in demo model runs: its output is noise.",
    );
    return lines.join("\n");
  }
  lines.push(`usage: deno run -A main.ts ${mode} [options]`, "", MODE_HELP[mode], "", "options:");
  const defs = MODE_DEFAULTS[mode] as Record<string, unknown>;
  for (const [k, o] of Object.entries(OPTS)) {
    if (!optModes(k).includes(mode)) continue;
    let def = defs[o.field ?? camel(k)];
    if (k === "t0" || k === "t1") def = k === "t0" ? "44 of 50 steps, scaled" : "47 of 50 steps, scaled";
    const demo = (DEMO_DEFAULTS[mode] as Record<string, unknown>)[o.field ?? camel(k)];
    if (demo !== undefined) def = `${def}; demo model: ${demo}`;
    if (def === undefined && VIDEO_MODES.includes(mode)) {
      def = { "fps": "the source's", "video-length": "all", "start": 0, "end": "-1" }[k];
    }
    row(k, o.arg, o.help, def);
  }
  row("out", CLI_ONLY.out.arg, CLI_ONLY.out.help, `${mode}.${defs.format}`);
  row("adapter", CLI_ONLY.adapter.arg, CLI_ONLY.adapter.help);
  lines.push(`  ${"--help".padEnd(32)}this text`);
  if (VIDEO_MODES.includes(mode) && mode !== "pix2pix") lines.push("", "--video is required.");
  if (mode === "pix2pix") lines.push("", "--video is required; --model should be an Instruct-Pix2Pix model.");
  return lines.join("\n");
}

interface Parsed {
  req: JobRequest;
  out: string;
  adapter?: string;
}

function parseNumber(name: string, kind: OptKind, s: string): number {
  const v = s.trim() === "" ? NaN : Number(s);
  if (!Number.isFinite(v)) {
    throw new UsageError(`--${name}: expected ${kind === "int" ? "an integer" : "a number"}, got "${s}"`);
  }
  if (kind === "int" && !Number.isInteger(v)) throw new UsageError(`--${name}: expected an integer, got "${s}"`);
  return v;
}

async function parseArgs(mode: Mode, args: string[]): Promise<Parsed> {
  const req: Record<string, unknown> = { mode };
  let out: string | undefined, adapter: string | undefined;
  const seen = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) throw new UsageError(`unexpected argument "${a}" (options start with --)`);
    let [name, value] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const opt = OPTS[name], cli = CLI_ONLY[name];
    if (!opt && !cli) throw new UsageError(`--${name}: unknown option (see main.ts ${mode} --help)`);
    if (seen.has(name)) throw new UsageError(`--${name}: given twice`);
    seen.add(name);
    if (opt?.kind === "flag") {
      if (value !== undefined) throw new UsageError(`--${name}: takes no value`);
      value = "true";
    } else if (value === undefined) {
      if (i + 1 >= args.length) throw new UsageError(`--${name}: missing value (${(opt ?? cli).arg})`);
      value = args[++i];
    }
    if (cli) {
      if (name === "out") out = value;
      else adapter = value;
      continue;
    }
    if (!optModes(name).includes(mode)) {
      throw new UsageError(`--${name}: does not apply to ${mode} (only ${optModes(name).join(", ")})`);
    }
    const field = opt.field ?? camel(name);
    if (opt.kind === "file") {
      try {
        req[field] = await Deno.readFile(value);
      } catch (e) {
        throw new UsageError(`--${name}: cannot read ${value} (${(e as Error).message.split(":")[0]})`);
      }
      req.videoName = basename(value);
    } else if (opt.kind === "flag") req[field] = true;
    else if (opt.kind === "string") req[field] = value;
    else req[field] = parseNumber(name, opt.kind, value);
  }
  const format = (MODE_DEFAULTS[mode].format ?? "mp4") as Format;
  if (out === undefined) out = `${mode}.${format}`;
  else {
    const ext = extname(out).slice(1).toLowerCase();
    if (!["mp4", "gif", "webm"].includes(ext)) {
      throw new UsageError(`--out: cannot tell the format of "${out}" (use a .mp4, .gif or .webm file name)`);
    }
    req.format = ext;
  }
  const dir = dirname(resolve(out));
  if (!(await Deno.stat(dir).catch(() => null))?.isDirectory) {
    throw new UsageError(`--out: the folder ${dir} does not exist`);
  }
  return { req: req as unknown as JobRequest, out, adapter };
}

// ---------------------------------------------------------------------------------------------------------------
// Progress

const STAGE_NAMES: Record<string, string> = {
  load: "loading model",
  download: "downloading",
  decode_video: "reading video",
  annotate: "control images",
  anchor: "anchor frame",
  denoise: "denoising",
  decode: "VAE decode",
  saliency: "saliency masks",
  smooth: "smoothing pass",
  encode_video: "writing video",
};

function progressPrinter(): { onProgress(p: JobProgress): void; done(): void } {
  const enc = new TextEncoder();
  const tty = Deno.stdout.isTerminal();
  const t0 = performance.now();
  let lastKey = "", lastDraw = 0, drawn = false;
  return {
    onProgress(p) {
      const name = STAGE_NAMES[p.stage] ?? p.stage;
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      if (tty) {
        const now = performance.now();
        if (now - lastDraw < 50 && p.step !== p.total) return;
        lastDraw = now;
        const frac = p.total > 0 ? Math.min(1, p.step / p.total) : 0;
        const width = 30, fill = Math.round(frac * width);
        const count = p.stage === "download" ? `${(p.step / 1e6).toFixed(1)} MB` : `${p.step}/${p.total}`;
        const bar = `${"#".repeat(fill)}${"-".repeat(width - fill)}`;
        Deno.stdout.writeSync(enc.encode(`\r\x1b[K${name.padEnd(15)} [${bar}] ${count}  ${secs} s`));
        drawn = true;
        return;
      }
      // Plain lines: one per step; the encoder's and downloader's fine-grained reports only when a stage ends.
      if ((p.stage === "encode_video" || p.stage === "download") && p.step !== p.total) return;
      const key = `${p.stage}:${p.step}`;
      if (key === lastKey) return;
      lastKey = key;
      console.log(`${name} ${p.step}/${p.total} (${secs} s)`);
    },
    done() {
      if (tty && drawn) Deno.stdout.writeSync(enc.encode("\r\x1b[K"));
      drawn = false;
    },
  };
}

function fmtBytes(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n").find((l) => l.trim()) ?? String(e);
}

/** RequestError fields are camelCase request fields; name them as the options the user typed. */
function requestErrorLine(e: RequestError): string {
  const opt = e.field in OPTS || kebab(e.field) in OPTS ? `--${kebab(e.field)}` : e.field;
  return `${opt}: ${e.message.slice(e.field.length + 2)}`;
}

async function generate(mode: Mode, args: string[]): Promise<number> {
  const { req, out, adapter } = await parseArgs(mode, args);
  validateRequest(req); // bad options fail here, before the GPU opens
  const dev = await Device.open({ adapter });
  const models = new ModelCache(dev);
  const full = validateRequest(req, dev);
  if (full.model === DEMO_MODEL) console.log(DEMO_NOTICE);
  console.log(`${mode}: seed ${full.seed}, ${full.precision} on ${dev.adapterName}`);
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  try {
    Deno.addSignalListener("SIGINT", onSigint);
  } catch { /* not supported on this platform */ }
  const progress = progressPrinter();
  try {
    const r = await runJob({ dev, models }, full, { onProgress: progress.onProgress, signal: abort.signal });
    progress.done();
    await Deno.writeFile(out, r.bytes);
    const t = Object.entries(r.timings).filter(([k]) => k !== "total").map(([k, v]) => `${k} ${v.toFixed(2)}`);
    const frames = `${r.frames} frame${r.frames === 1 ? "" : "s"}`;
    const what = `${frames}, ${r.width}x${r.height}, ${r.fps} fps, ${r.format}, ${fmtBytes(r.bytes.length)}`;
    console.log(`wrote ${out}: ${what} in ${r.timings.total.toFixed(1)} s (seed ${r.params.seed})`);
    console.log(`timings (s): ${t.join(", ")}`);
    return 0;
  } finally {
    progress.done();
    try {
      Deno.removeSignalListener("SIGINT", onSigint);
    } catch { /* see above */ }
    models.dispose();
  }
}

export async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  try {
    if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
      console.log(usage());
      return cmd === undefined ? 2 : 0;
    }
    if (cmd === "serve") {
      let mod: { serve(args: string[]): Promise<number> };
      try {
        mod = await import("./routes/server.ts"); // loaded only for `serve`: the CLI works without it
      } catch (e) {
        console.error(`error: the server is not available in this build (${firstLine(e)})`);
        return 1;
      }
      return await mod.serve(rest);
    }
    if (!MODES.includes(cmd as Mode)) {
      throw new UsageError(`unknown mode "${cmd}" (expected ${MODES.join(", ")} or serve; see --help)`);
    }
    const mode = cmd as Mode;
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(usage(mode));
      return 0;
    }
    return await generate(mode, rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}`);
      return 2;
    }
    if (e instanceof RequestError) {
      console.error(`error: ${requestErrorLine(e)}`);
      return 2;
    }
    if (e instanceof Cancelled) {
      console.error("cancelled");
      return 130;
    }
    console.error(`error: ${firstLine(e)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
