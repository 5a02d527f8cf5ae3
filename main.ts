// zerovid command line: `deno run -A main.ts <mode> [options]` generates one video; `main.ts serve ...` starts the
// server (routes/server.ts). Bad options or inputs exit with 2 and one line naming the problem; other failures
// (GPU, I/O) exit with 1.
import { basename, dirname, extname, join, resolve } from "node:path";
import { parseArgs as parseArgv } from "node:util";
import { Device } from "./pipeline/gpu/device.ts";
import { RequestError } from "./pipeline/errors.ts";
import {
  appliesTo,
  boundsOf,
  defaultOf,
  defaultText,
  FIELD_NAMES,
  type FieldName,
  FIELDS,
  type FieldSpec,
  fieldSpec,
} from "./pipeline/job/fields.ts";
import { isMode, type Mode, MODE_HELP, MODES, VIDEO_MODES } from "./pipeline/job/modes.ts";
import { type JobPreview, runJob } from "./pipeline/job/run.ts";
import type { JobProgress, JobRequest } from "./pipeline/job/types.ts";
import { validateRequest } from "./pipeline/job/validate.ts";
import { ModelCache } from "./pipeline/model_cache.ts";
import { Cancelled } from "./pipeline/modes/common.ts";
import { DEMO_MODEL, DEMO_NOTICE } from "./pipeline/models/demo.ts";
import { GPU_WORKER_NAME } from "./routes/gpu_worker/protocol.ts";

/** A malformed command line (exit 2): a request error whose message names the option itself. */
export class UsageError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "UsageError";
  }
}

// The options are the registry's fields (pipeline/job/fields.ts) in kebab-case (or their `flag`), plus these of
// the CLI's own. A list field's option is repeated, one entry each (--lora a.safetensors --lora b.safetensors:0.5).
const kebab = (f: string) => f.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
const optionName = (n: FieldName) => (FIELDS[n] as FieldSpec).flag ?? kebab(n);
const OPTION_FIELDS = new Map<string, FieldName>(
  FIELD_NAMES.filter((n) => FIELDS[n].arg !== false).map((n) => [optionName(n), n]),
);
const isList = (n: FieldName) => FIELDS[n].kind === "loras" || FIELDS[n].kind === "names";
const VIDEO_FORMATS = FIELDS.format.values.filter((v: string) => v !== "png");
const CLI_ONLY: Record<string, { arg: string; help: string }> = {
  "out": {
    arg: "FILE|DIR/",
    help: `output file, its format from the extension (${VIDEO_FORMATS.join(", ")}); a folder (ending in /): ` +
      "lossless PNG frames frame_0001.png, ...",
  },
  "preview": { arg: "FILE.png", help: "rewrite this PNG with a live preview strip while denoising" },
  "adapter": { arg: "NAME", help: "WebGPU adapter: a substring of its name, low-power or high-performance" },
};

function row(name: string, arg: string, help: string, def?: string): string {
  const left = `  --${name}${arg ? " " + arg : ""}`;
  return `${left.padEnd(34)}${help}${def === undefined ? "" : ` [default: ${def}]`}`;
}

function usage(mode?: Mode): string {
  const lines: string[] = [];
  const fieldRow = (n: FieldName, m?: Mode) => {
    const s: FieldSpec = FIELDS[n], b = boundsOf(n, m ?? "text2video");
    const special = b.special !== undefined ? `, or ${b.special}: ${s.special!.means}` : "";
    const range = s.kind === "int" || s.kind === "number" ? ` (${b.min} to ${b.max}${special})` : "";
    const repeat = s.kind === "loras" || s.kind === "names" ? " (repeatable)" : "";
    return row(optionName(n), s.arg as string, s.help + range + repeat, m && defaultText(n, m));
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
      ...(["prompt", "model", "video", "steps", "seed", "precision"] as const).map((n) => fieldRow(n)),
      row("out", CLI_ONLY.out.arg, CLI_ONLY.out.help),
      "",
      "With no model configured (no --model, no $ZEROVID_MODEL) the built-in demo model runs: its output is noise.",
    );
    return lines.join("\n");
  }
  lines.push(`usage: deno run -A main.ts ${mode} [options]`, "", MODE_HELP[mode], "", "options:");
  for (const n of OPTION_FIELDS.values()) if (appliesTo(FIELDS[n], mode)) lines.push(fieldRow(n, mode));
  lines.push(row("out", CLI_ONLY.out.arg, CLI_ONLY.out.help, `${mode}.${defaultOf("format", mode)}`));
  lines.push(row("preview", CLI_ONLY.preview.arg, CLI_ONLY.preview.help));
  lines.push(row("adapter", CLI_ONLY.adapter.arg, CLI_ONLY.adapter.help));
  lines.push(`  ${"--help".padEnd(32)}this text`);
  if (VIDEO_MODES.includes(mode)) lines.push("", "--video is required.");
  if (mode === "pix2pix") lines.push("--model should be an Instruct-Pix2Pix model.");
  return lines.join("\n");
}

export interface Parsed {
  req: JobRequest;
  /** A file, or a folder for PNG frames (format png). */
  out: string;
  preview?: string;
  adapter?: string;
}

/** An option's text as the field's value; text that is not a number stays text for validation to refuse. */
function fromText(field: FieldName, text: string): unknown {
  const kind = FIELDS[field].kind;
  if (kind === "loras") {
    // PATH[:SCALE]: the scale is what follows the last ":" when that is a number (paths may hold colons).
    const i = text.lastIndexOf(":"), tail = text.slice(i + 1).trim();
    const scale = i > 0 && tail !== "" ? Number(tail) : NaN;
    return Number.isFinite(scale) ? { name: text.slice(0, i), scale } : { name: text };
  }
  if (kind !== "int" && kind !== "number") return text;
  const n = text.trim() === "" ? NaN : Number(text);
  return Number.isFinite(n) ? n : text;
}

/** A mode's command line -> its request (not yet validated), output file and adapter; UsageError when malformed. */
export async function parseCommandLine(mode: Mode, args: string[]): Promise<Parsed> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [opt, f] of OPTION_FIELDS) options[opt] = { type: FIELDS[f].kind === "bool" ? "boolean" : "string" };
  for (const opt of Object.keys(CLI_ONLY)) options[opt] = { type: "string" };
  // Not strict: the checks below name the option at fault in our words, and a value may start with "-" (--fps -1).
  const { tokens } = parseArgv({ args, options, strict: false, allowPositionals: true, tokens: true });
  const req: Record<string, unknown> = { mode };
  let out: string | undefined, adapter: string | undefined, preview: string | undefined;
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind === "positional") throw new UsageError(`unexpected argument "${t.value}" (options start with --)`);
    if (t.kind === "option-terminator") throw new UsageError('unexpected "--"');
    const name = t.name, field = OPTION_FIELDS.get(name), cli = CLI_ONLY[name];
    if (!t.rawName.startsWith("--") || (!field && !cli)) {
      throw new UsageError(`${t.rawName}: unknown option (see main.ts ${mode} --help)`);
    }
    if (seen.has(name) && !(field && isList(field))) throw new UsageError(`--${name}: given twice`);
    seen.add(name);
    const boolean = options[name].type === "boolean";
    if (boolean && t.value !== undefined) throw new UsageError(`--${name}: takes no value`);
    if (!boolean && t.value === undefined) {
      throw new UsageError(`--${name}: missing value (${cli?.arg ?? FIELDS[field!].arg})`);
    }
    const value = t.value as string;
    if (cli) {
      if (name === "out") out = value;
      else if (name === "preview") preview = value;
      else adapter = value;
      continue;
    }
    const f = field!;
    if (!appliesTo(FIELDS[f], mode)) {
      throw new UsageError(
        `--${name}: does not apply to ${mode} (only ${((FIELDS[f] as FieldSpec).modes ?? MODES).join(", ")})`,
      );
    }
    if (FIELDS[f].kind === "file") {
      try {
        req[f] = await Deno.readFile(value);
      } catch (e) {
        throw new UsageError(`--${name}: cannot read ${value} (${(e as Error).message.split(":")[0]})`);
      }
      req.videoName = basename(value);
    } else if (isList(f)) req[f] = [...(req[f] as unknown[] ?? []), fromText(f, value)];
    else req[f] = boolean ? true : fromText(f, value);
  }
  if (out === undefined) out = `${mode}.${defaultOf("format", mode)}`;
  else if (out.endsWith("/")) req.format = "png";
  else {
    const ext = extname(out).slice(1).toLowerCase();
    if (!(VIDEO_FORMATS as readonly string[]).includes(ext)) {
      const exts = VIDEO_FORMATS.map((v: string) => "." + v).join(", ");
      throw new UsageError(
        `--out: cannot tell the format of "${out}" (use a file name ending in ${exts}, or a folder ending in /)`,
      );
    }
    req.format = ext;
  }
  const dir = dirname(resolve(out.endsWith("/") ? out.slice(0, -1) : out));
  if (!(await Deno.stat(dir).catch(() => null))?.isDirectory) {
    throw new UsageError(`--out: the folder ${dir} does not exist`);
  }
  if (preview !== undefined) {
    if (!/\.png$/i.test(preview)) throw new UsageError(`--preview: expected a .png file name, got "${preview}"`);
    const pdir = dirname(resolve(preview));
    if (!(await Deno.stat(pdir).catch(() => null))?.isDirectory) {
      throw new UsageError(`--preview: the folder ${pdir} does not exist`);
    }
  }
  return { req: req as unknown as JobRequest, out, preview, adapter };
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
  if (!e.field) return e.detail;
  const f = e.field as FieldName;
  const opt = fieldSpec(f) && FIELDS[f].arg !== false ? `--${optionName(f)}` : e.field;
  return `${opt}: ${e.detail}`;
}

async function generate(mode: Mode, args: string[]): Promise<number> {
  const { req, out, preview, adapter } = await parseCommandLine(mode, args);
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
    const onPreview = preview === undefined ? undefined : (p: JobPreview) => {
      // Written aside and renamed, so a viewer never reads half a file.
      Deno.writeFileSync(preview + ".tmp", p.png);
      Deno.renameSync(preview + ".tmp", preview);
    };
    const r = await runJob({ dev, models }, full, {
      onProgress: progress.onProgress,
      signal: abort.signal,
      onPreview,
      onPlan: (p) => console.log(`plan: ${p.summary}`),
    });
    progress.done();
    if (r.images) {
      await Deno.mkdir(out, { recursive: true });
      for (const img of r.images) await Deno.writeFile(join(out, img.name), img.data);
    } else await Deno.writeFile(out, r.bytes);
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
    if (!isMode(cmd)) {
      throw new UsageError(`unknown mode "${cmd}" (expected ${MODES.join(", ")} or serve; see --help)`);
    }
    const mode = cmd;
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(usage(mode));
      return 0;
    }
    return await generate(mode, rest);
  } catch (e) {
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

if (import.meta.main) {
  // Inside a single-file bundle the server's GPU worker thread starts from this same module.
  if ((globalThis as { name?: string }).name === GPU_WORKER_NAME) await import("./routes/gpu_worker/entry.ts");
  else Deno.exit(await main(Deno.args));
}
