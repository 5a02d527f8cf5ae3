// ffmpeg.wasm (@ffmpeg/core 0.12.10, single-threaded FFmpeg 5.1) driven directly: the 32 MB wasm is compiled once
// and every job gets a fresh instance, because reusing an instance after exec() corrupts its memory.
import createFFmpegCore from "@ffmpeg/core";

/** The parts of Emscripten's FS that the media code uses. */
export interface EmFS {
  writeFile(path: string, data: Uint8Array): void;
  readFile(path: string): Uint8Array;
  unlink(path: string): void;
  makedev(major: number, minor: number): number;
  registerDevice(dev: number, ops: DeviceOps): void;
  mkdev(path: string, dev: number): DeviceNode;
}

interface DeviceStream {
  seekable: boolean;
  position: number;
}

interface DeviceOps {
  open(stream: DeviceStream): void;
  close(): void;
  read(stream: DeviceStream, buf: Uint8Array, off: number, len: number, position: number): number;
  write(stream: DeviceStream, buf: Uint8Array, off: number, len: number): number;
  llseek?(stream: DeviceStream, offset: number, whence: number): number;
}

/** The node mkdev returns; its node_ops answer stat (FFmpeg's file protocol asks fstat for the size). */
interface DeviceNode {
  node_ops: { getattr(node: DeviceNode): Record<string, unknown> };
}

interface CoreModule {
  FS: EmFS;
  exec(...args: string[]): number;
  ffprobe(...args: string[]): number;
  setLogger(fn: (l: { type: string; message: string }) => void): void;
  setProgress(fn: (p: { progress: number; time: number }) => void): void;
  setTimeout(ms: number): void;
}

/** One fresh FFmpeg instance plus the log it has written so far. */
export class FFmpegJob {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  constructor(private core: CoreModule) {
    core.setLogger((l) => (l.type === "stdout" ? this.stdout : this.stderr).push(l.message));
  }
  get fs(): EmFS {
    return this.core.FS;
  }
  /** Runs `ffmpeg -nostdin -y ...args`; returns FFmpeg's exit code. Synchronous inside wasm. */
  exec(args: string[], timeoutMs = 300_000): number {
    this.core.setTimeout(timeoutMs);
    const t0 = performance.now();
    const ret = this.guard("ffmpeg", () => this.core.exec(...args));
    if (ret !== 0 && performance.now() - t0 >= timeoutMs) {
      throw new Error(`ffmpeg timed out after ${Math.round(timeoutMs / 1000)} s`);
    }
    return ret;
  }
  /** Runs ffprobe; its exit code is not reported by this build, so callers judge by the output. */
  ffprobe(args: string[]): void {
    this.guard("ffprobe", () => this.core.ffprobe(...args));
  }
  /** A wasm trap (e.g. "memory access out of bounds") leaves the instance unusable: report it as an Error. */
  private guard<T>(tool: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String((e as { message?: string })?.message ?? e);
      throw new Error(`${tool} crashed inside WebAssembly (${msg}); last log line: ${describeLog(this.stderr)}`);
    }
  }
  onProgress(fn: (p: { progress: number; time: number }) => void): void {
    this.core.setProgress(fn);
  }
  /** A character device at `path` whose writes go to `sink` (streams output without buffering it in MEMFS). */
  writeDevice(path: string, sink: (chunk: Uint8Array) => void): void {
    this.device(path, {
      open(s) {
        s.seekable = false;
      },
      close() {},
      read: () => 0,
      write(_s, buf, off, len) {
        sink(buf.subarray(off, off + len));
        return len;
      },
    });
  }
  /** A character device at `path` that reads `data` sequentially (feeds input without a MEMFS copy). */
  readDevice(path: string, data: Uint8Array): void {
    let pos = 0;
    this.device(path, {
      open(s) {
        s.seekable = false;
      },
      close() {},
      read(_s, buf, off, len) {
        const n = Math.min(len, data.length - pos);
        buf.set(data.subarray(pos, pos + n), off);
        pos += n;
        return n;
      },
      write: () => 0,
    });
  }
  /**
   * A seekable device at `path` that reads the open `file` (`size` bytes) where FFmpeg asks: a file on disk is
   * probed or decoded without copying it into the instance's memory (a 60 MB upload stays 60 MB on disk, not in
   * the WebAssembly heap). The device reports `size` to stat, as a regular file would (the MP4 demuxer needs it).
   */
  fileDevice(path: string, file: Deno.FsFile, size: number): void {
    const node = this.device(path, {
      open(s) {
        s.seekable = true;
      },
      close() {},
      read(_s, buf, off, len, position) {
        const n = Math.max(0, Math.min(len, size - position));
        if (n === 0) return 0;
        file.seekSync(position, Deno.SeekMode.Start);
        let got = 0;
        while (got < n) {
          // buf is the instance's heap (an Int8Array view): Deno reads into a Uint8Array over the same bytes.
          const r = file.readSync(new Uint8Array(buf.buffer, buf.byteOffset + off + got, n - got));
          if (r === null) break; // the file shrank under us: report what was read
          got += r;
        }
        return got;
      },
      write: () => 0,
      llseek(s, offset, whence) {
        const at = whence === 1 ? s.position + offset : whence === 2 ? size + offset : offset;
        if (at < 0) throw new Error("seek before the start of the input");
        return at;
      },
    });
    const ops = node.node_ops;
    node.node_ops = { ...ops, getattr: (n) => ({ ...ops.getattr(n), size }) };
  }
  private nextMajor = 64;
  private device(path: string, ops: DeviceOps): DeviceNode {
    const dev = this.fs.makedev(this.nextMajor++, 0);
    this.fs.registerDevice(dev, ops);
    return this.fs.mkdev(path, dev);
  }
}

/** Must match the @ffmpeg/core pin in deno.json (only used for the npm-cache fallback path). */
const CORE_VERSION = "0.12.10";

let compiled: Promise<WebAssembly.Module> | null = null;

/** Where the .wasm is looked for, in order: env override, import-map resolution, node_modules near cwd/main. */
function wasmCandidates(): string[] {
  const out: string[] = [];
  try {
    const env = Deno.env.get("ZEROVID_FFMPEG_WASM");
    if (env) out.push(env);
  } catch { /* no --allow-env: skip the override */ }
  try {
    // Resolves through deno.json's import map to the npm package (also inside `deno compile`'s embedded VFS).
    out.push(import.meta.resolve("@ffmpeg/core/wasm"));
  } catch { /* a bundle run without deno.json cannot resolve bare specifiers */ }
  const rel = "node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm";
  const roots: string[] = [];
  try {
    roots.push(Deno.cwd());
  } catch { /* no --allow-read for cwd */ }
  const main = Deno.mainModule as string | undefined; // undefined inside a Worker (the server's GPU thread)
  if (main?.startsWith("file:")) roots.push(new URL(".", main).pathname);
  for (const root of roots) {
    for (let dir = root.replace(/\/+$/, ""), i = 0; i < 4 && dir; i++, dir = dir.slice(0, dir.lastIndexOf("/"))) {
      out.push(`${dir}/${rel}`);
    }
  }
  // Deno's global npm cache, for a bundle run away from the project on a machine that has built it.
  try {
    const home = Deno.env.get("HOME");
    const cache = Deno.env.get("DENO_DIR") ?? (home ? `${home}/.cache/deno` : "");
    if (cache) out.push(`${cache}/npm/registry.npmjs.org/@ffmpeg/core/${CORE_VERSION}/dist/esm/ffmpeg-core.wasm`);
  } catch { /* no --allow-env */ }
  return [...new Set(out)];
}

async function compileWasm(): Promise<WebAssembly.Module> {
  const tried: string[] = [];
  for (const c of wasmCandidates()) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(c.startsWith("file:") ? new URL(c) : c);
    } catch {
      tried.push(c);
      continue;
    }
    return await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  }
  throw new Error(
    `ffmpeg.wasm not found (tried ${tried.join(", ")}); run from the project directory (deno.json + ` +
      `node_modules) or set ZEROVID_FFMPEG_WASM to the path of @ffmpeg/core's ffmpeg-core.wasm`,
  );
}

/** Compiles ffmpeg-core.wasm once per process (~0.3 s); a failure is not cached, so a later call retries. */
export function ffmpegModule(): Promise<WebAssembly.Module> {
  if (!compiled) compiled = compileWasm().catch((e) => (compiled = null, Promise.reject(e)));
  return compiled;
}

/** A fresh FFmpeg instance (~10-30 ms). */
export async function newFFmpeg(): Promise<FFmpegJob> {
  const mod = await ffmpegModule();
  // The glue reads self.location.href once while it initialises (it assumes a web worker). Define it only
  // for that synchronous call, then restore whatever was there.
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = Object.getOwnPropertyDescriptor(globalThis, "location");
  Object.defineProperty(globalThis, "location", {
    value: { href: import.meta.url },
    configurable: true,
    writable: true,
  });
  let ready: Promise<CoreModule>;
  try {
    ready = (createFFmpegCore as unknown as (m: object) => Promise<CoreModule>)({
      instantiateWasm(
        imports: WebAssembly.Imports,
        receive: (inst: WebAssembly.Instance, m: WebAssembly.Module) => void,
      ) {
        WebAssembly.instantiate(mod, imports).then((inst) => receive(inst, mod));
        return {};
      },
    });
  } finally {
    if (saved) Object.defineProperty(globalThis, "location", saved);
    else delete g.location;
  }
  return new FFmpegJob(await ready);
}

/** Log lines FFmpeg prints (even on exit code 0) when the input ends early. */
export const TRUNCATED = /File ended prematurely|partial file|Truncating packet|truncated|Unexpected end/i;
/** Log lines for a packet cut short or damaged (a truncated MP4's last sample reads short like this). */
const CORRUPT = /Packet corrupt|corrupt input packet|Invalid NAL unit size|Error while decoding/i;

/** Whether a log that ended with exit code 0 still shows a damaged input, and how to say so. */
export function damage(lines: string[]): string | null {
  const text = lines.join("\n");
  if (TRUNCATED.test(text)) return "the file is truncated";
  if (CORRUPT.test(text)) return "the file is truncated or corrupt";
  return null;
}

const KNOWN: [RegExp, string][] = [
  [/moov atom not found/, "the file is truncated or incomplete (MP4 index 'moov' missing)"],
  [TRUNCATED, "the file is truncated"],
  [/Invalid data found when processing input/, "not a recognized video file (invalid data)"],
  [/Could not find codec parameters|unspecified pixel format|Cannot determine format/, "no decodable video data"],
  [/does not contain any stream|Output file #0 does not contain/, "no video stream"],
];

/** A readable reason from FFmpeg's log: a known cause if one matches, else the last meaningful line. */
export function describeLog(lines: string[]): string {
  const text = lines.join("\n");
  for (const [re, why] of KNOWN) if (re.test(text)) return why;
  const useful = lines.map((l) => l.trim()).filter((l) =>
    l && !/^Aborted\(|^Conversion failed|^frame=|^video:|^\s*Metadata|^Stream mapping/.test(l)
  );
  return useful.at(-1) ?? "unknown FFmpeg error";
}

/**
 * MEMFS path for an input file. Deliberately without the user's extension: FFmpeg would let it pick the demuxer
 * (".mp4" turns garbage into "moov atom not found", ".bin" selects the bintext demuxer), content probing is right.
 */
export const INPUT_PATH = "/input";
