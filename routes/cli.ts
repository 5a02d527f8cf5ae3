// `main.ts serve`'s command line: one table of flags gives node:util's parseArgs its options, the usage text, and
// the environment variables that stand in for a flag that is not given.
import { parseArgs } from "node:util";
import { delimiter, join, resolve } from "node:path";
import { DEFAULT_LIMITS, type Limits } from "./schema.ts";
import { parseRedisUrl, RedisUrlError } from "./queue/redis_url.ts";

export class ServeArgError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ServeArgError";
  }
}

export interface ServeArgs {
  host: string;
  port: number;
  /** Absolute paths; none = the built-in demo model. */
  modelRoots: string[];
  token?: string;
  /** Absolute; "" = not given (serve() picks defaultDataDir()). */
  dataDir: string;
  limits: Limits;
  keepHours: number;
  keepMb: number;
  cacheMb?: number;
  /** GPU memory one job may hold (MiB); jobs are planned to fit. */
  maxGpuMb?: number;
  /** redis://... shared by many nodes; none = SQLite in the data directory (one box). */
  queue?: string;
  /** api: takes requests, no GPU; worker: runs jobs on one GPU, no HTTP; both (default). */
  role: Role;
  /** How long a worker may go unheard before another takes its job (Redis). */
  stallSeconds: number;
  /** WebGPU adapter: a substring of its name, low-power or high-performance. */
  adapter?: string;
  /** A job running longer than this fails (its GPU worker is replaced). */
  jobTimeoutS: number;
  /** Uploads received at the same time; more get 429. */
  uploadSlots: number;
  /** A request body that stops arriving this long gets 408. */
  bodyTimeoutS: number;
  /** A request's headers must be complete this long after their first byte (slow clients get 408). */
  headerTimeoutS: number;
  /** A connection on which nothing moves either way this long is closed. */
  idleTimeoutS: number;
  /** Origins whose pages may use the API (--cors). */
  cors: string[];
  /** Host names answered besides the loopback ones when listening on loopback (--allow-host). */
  allowHosts: string[];
  help: boolean;
}

export type Role = "api" | "worker" | "both";

interface Flag {
  /** The value's name in the usage text. */
  value: string;
  help: string;
  /** May be given more than once. */
  multiple?: boolean;
  /** Read when the flag is not given; `list`: a path list ($PATH-style), one value per entry. */
  env?: { name: string; list?: boolean };
  /** Stores one value; throws ServeArgError naming the flag when the value is bad. */
  set(out: ServeArgs, value: string, flag: string): void;
}

function nonEmpty(flag: string, v: string): string {
  if (!v.trim()) throw new ServeArgError(`${flag}: empty`);
  return v;
}

function num(flag: string, v: string, o: { int?: boolean; min: number; max?: number }): number {
  const n = Number(v);
  const int = o.int ?? true;
  if (v.trim() === "" || !Number.isFinite(n) || (int && !Number.isInteger(n)) || n < o.min || n > (o.max ?? Infinity)) {
    const range = o.max === undefined ? `>= ${o.min}` : `in ${o.min}..${o.max}`;
    throw new ServeArgError(`${flag}: expected ${int ? "an integer" : "a number"} ${range}, got "${v}"`);
  }
  return n;
}

/** A number > 0; 0 is refused with what it would mean. */
function positive(flag: string, v: string, zeroMeans: string): number {
  const n = num(flag, v, { int: false, min: 0 });
  if (n === 0) throw new ServeArgError(`${flag}: expected a number > 0 (0: ${zeroMeans})`);
  return n;
}

const limit = (key: keyof Limits, help: string): Flag => ({
  value: "N",
  help: `${help} (default ${DEFAULT_LIMITS[key]})`,
  set: (o, v, f) => o.limits[key] = num(f, v, { min: 1 }),
});

/** serve's flags, in the order the usage text lists them. */
export const SERVE_FLAGS: Record<string, Flag> = {
  host: {
    value: "H",
    help: "address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    set: (o, v, f) => o.host = nonEmpty(f, v),
  },
  port: {
    value: "N",
    help: "port (default 8000; 0 picks a free one)",
    set: (o, v, f) => o.port = num(f, v, { min: 0, max: 65535 }),
  },
  models: {
    value: "DIR",
    help: "a folder with models (diffusers folders, single-file .safetensors, ControlNets, .onnx\n" +
      "annotators); repeat for several. Also $ZEROVID_MODELS (a path list). None: the built-in\n" +
      "demo model (random weights, output is noise)",
    multiple: true,
    env: { name: "ZEROVID_MODELS", list: true },
    set: (o, v, f) => o.modelRoots.push(resolve(nonEmpty(f, v))),
  },
  token: {
    value: "T",
    help: "require Authorization: Bearer T on /v1/* (also $ZEROVID_TOKEN)",
    env: { name: "ZEROVID_TOKEN" },
    set: (o, v, f) => {
      // What an Authorization: Bearer header can carry (RFC 6750's token68); bearerAuth refuses anything else.
      if (!/^[A-Za-z0-9._~+/-]+=*$/.test(v)) {
        throw new ServeArgError(`${f}: use letters, digits and . _ ~ + / - (then any "="), got ${v.length} characters`);
      }
      o.token = v;
    },
  },
  "data-dir": {
    value: "DIR",
    help: "jobs database and results (default $ZEROVID_DATA or ~/.local/share/zerovid)",
    env: { name: "ZEROVID_DATA" },
    set: (o, v, f) => o.dataDir = resolve(nonEmpty(f, v)),
  },
  "max-upload-mb": limit("maxUploadMb", "largest upload"),
  "max-frames": limit("maxFrames", "most frames per video; longer inputs are cut"),
  "max-resolution": limit("maxResolution", "largest width / height / resolution"),
  "max-prompt": limit("maxPrompt", "longest prompt in characters"),
  "max-steps": limit("maxSteps", "most denoising steps"),
  "queue-size": limit("queueSize", "most waiting jobs; more get 429"),
  "keep-hours": {
    value: "N",
    help: "delete results older than this (default 168)",
    set: (o, v, f) => o.keepHours = positive(f, v, "every result would be deleted as soon as it is written"),
  },
  "keep-mb": {
    value: "N",
    help: "keep at most this many MiB of results, oldest deleted first; the newest one always stays\n(default 2048)",
    set: (o, v, f) => o.keepMb = positive(f, v, "no result could be kept"),
  },
  "cache-mb": {
    value: "N",
    help: "GPU memory for loaded models kept between jobs (default: no limit)",
    set: (o, v, f) => o.cacheMb = num(f, v, { int: false, min: 0 }),
  },
  "upload-slots": {
    value: "N",
    help: "uploads received at the same time (each streamed to a temporary file); more get 429\n(default 2)",
    set: (o, v, f) => o.uploadSlots = num(f, v, { min: 1, max: 1000 }),
  },
  "body-timeout": {
    value: "S",
    help: "a request body that stops arriving for S seconds gets 408 (default 30)",
    set: (o, v, f) => o.bodyTimeoutS = num(f, v, { int: false, min: 1 }),
  },
  "header-timeout": {
    value: "S",
    help: "a request's headers must arrive within S seconds of their first byte (of the connection's\n" +
      "opening, for its first request), else 408 and the connection is closed (default 10)",
    set: (o, v, f) => o.headerTimeoutS = num(f, v, { int: false, min: 0.1 }),
  },
  "idle-timeout": {
    value: "S",
    help: "close a connection on which nothing moves either way for S seconds (default 60; event\n" +
      "streams send a ping every 15 s)",
    set: (o, v, f) => o.idleTimeoutS = num(f, v, { int: false, min: 1 }),
  },
  cors: {
    value: "ORIGIN",
    help: "let pages from ORIGIN (https://app.example) use the API: CORS answers, and their POSTs and\n" +
      "DELETEs pass (other sites' get 403); repeat for several",
    multiple: true,
    set: (o, v, f) => {
      let origin = "";
      try {
        origin = new URL(v).origin;
      } catch { /* below */ }
      if (!/^https?:\/\//.test(origin) || origin !== v.replace(/\/$/, "")) {
        throw new ServeArgError(
          `${f}: expected an origin like https://app.example or http://localhost:3000, got "${v}"`,
        );
      }
      o.cors.push(origin);
    },
  },
  "allow-host": {
    value: "NAME",
    help: "when listening on loopback, also answer requests for host NAME (other names get 403: DNS\n" +
      "rebinding); repeat for several",
    multiple: true,
    set: (o, v, f) => o.allowHosts.push(nonEmpty(f, v).toLowerCase()),
  },
  "job-timeout": {
    value: "T",
    help: "a job running longer fails and its GPU worker is restarted: seconds, or 90m, 2h\n(default 2h)",
    set: (o, v, f) => {
      const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$/.exec(v);
      const unit: Record<string, number> = { s: 1, m: 60, min: 60, h: 3600 };
      const secs = m ? Number(m[1]) * unit[m[2] ?? "s"] : NaN;
      if (!(secs >= 1)) {
        throw new ServeArgError(`${f}: expected seconds (>= 1) or a duration like 90m or 2h, got "${v}"`);
      }
      o.jobTimeoutS = secs;
    },
  },
  "max-gpu-mb": {
    value: "N",
    help: "GPU memory one job may hold, weights included (shared GPUs); jobs are planned to fit (default: no cap)",
    set: (o, v, f) => o.maxGpuMb = num(f, v, { int: true, min: 16 }),
  },
  adapter: {
    value: "NAME",
    help: "WebGPU adapter: a substring of its name, low-power or high-performance (also $ZEROVID_ADAPTER)",
    env: { name: "ZEROVID_ADAPTER" },
    set: (o, v, f) => o.adapter = nonEmpty(f, v),
  },
  queue: {
    value: "URL",
    help: "a Redis shared by many nodes: redis://[:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS; also\n" +
      "$ZEROVID_QUEUE). Default: SQLite in --data-dir, one box",
    env: { name: "ZEROVID_QUEUE" },
    set: (o, v, f) => {
      try {
        parseRedisUrl(v);
      } catch (e) {
        if (e instanceof RedisUrlError) throw new ServeArgError(`${f}: ${e.message}`);
        throw e;
      }
      o.queue = v;
    },
  },
  role: {
    value: "R",
    help: "with --queue: api (takes requests, opens no GPU), worker (runs jobs on one GPU, no HTTP)\n" +
      "or both (default)",
    set: (o, v, f) => {
      if (v !== "api" && v !== "worker" && v !== "both") {
        throw new ServeArgError(`${f}: expected api, worker or both, got ${JSON.stringify(v)}`);
      }
      o.role = v;
    },
  },
  "stall-seconds": {
    value: "N",
    help: "with --queue: a worker unheard this long loses its job to another worker (default 30)",
    set: (o, v, f) => o.stallSeconds = num(f, v, { int: false, min: 1 }),
  },
};

function usage(): string {
  const col = 24;
  const lines = Object.entries(SERVE_FLAGS).map(([name, f]) => {
    const head = `  --${name} ${f.value}`;
    const [first, ...rest] = f.help.split("\n");
    return [head.padEnd(col) + first, ...rest.map((l) => " ".repeat(col) + l)].join("\n");
  });
  return `usage: deno run -A main.ts serve [options]\n\n${lines.join("\n")}\n  -h, --help            this text`;
}

export const SERVE_USAGE: string = usage();

/** Parses serve's options (then the environment for those not given); throws ServeArgError naming the bad option. */
export function parseServeArgs(args: string[], env: Record<string, string | undefined> = {}): ServeArgs {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: "boolean", short: "h" },
        ...Object.fromEntries(
          Object.entries(SERVE_FLAGS).map(([name, f]) => [name, { type: "string", multiple: !!f.multiple }] as const),
        ),
      },
    }).values;
  } catch (e) {
    throw argError(e);
  }
  const out: ServeArgs = {
    host: "127.0.0.1",
    port: 8000,
    modelRoots: [],
    dataDir: "",
    limits: { ...DEFAULT_LIMITS },
    keepHours: 168,
    keepMb: 2048,
    role: "both",
    stallSeconds: 30,
    jobTimeoutS: 7200,
    uploadSlots: 2,
    bodyTimeoutS: 30,
    headerTimeoutS: 10,
    idleTimeoutS: 60,
    cors: [],
    allowHosts: [],
    help: values.help === true,
  };
  for (const [name, f] of Object.entries(SERVE_FLAGS)) {
    const given = values[name] as string | string[] | undefined;
    if (given !== undefined) {
      for (const v of [given].flat()) f.set(out, v, `--${name}`);
    } else if (f.env && env[f.env.name]) {
      const v = env[f.env.name]!;
      for (const one of f.env.list ? v.split(delimiter).filter(Boolean) : [v]) f.set(out, one, `$${f.env.name}`);
    }
  }
  if (out.role !== "both" && !out.queue) {
    throw new ServeArgError(`--role ${out.role}: needs --queue redis://... (without it one process does both)`);
  }
  return out;
}

/** parseArgs' errors (a TypeError with a code) as one line that names the option. */
function argError(e: unknown): unknown {
  const err = e as Error & { code?: string };
  const flag = /'(-[^' ]+)/.exec(err.message ?? "")?.[1] ?? /"(-[^"]+)"/.exec(err.message ?? "")?.[1];
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return new ServeArgError(`unknown option ${JSON.stringify(flag ?? err.message)} (see serve --help)`);
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(err.message)) return new ServeArgError(`${flag} needs a value`);
      if (/ambiguous/.test(err.message)) {
        return new ServeArgError(`${flag}: a value that starts with "-" is written ${flag}=VALUE`);
      }
      return new ServeArgError(`${flag}: ${err.message.split(".")[0]}`);
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return new ServeArgError(`${err.message.split(".")[0]} (serve takes options only; see serve --help)`);
    default:
      return e;
  }
}

/** Where jobs and results go when neither --data-dir nor $ZEROVID_DATA is given: the XDG data directory. */
export function defaultDataDir(env: (k: string) => string | undefined): string {
  const xdg = env("XDG_DATA_HOME") ?? (env("HOME") ? join(env("HOME")!, ".local", "share") : undefined);
  return xdg ? join(xdg, "zerovid") : resolve(".zerovid");
}
