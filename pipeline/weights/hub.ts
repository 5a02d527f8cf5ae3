// Hugging Face hub downloads into the standard cache layout, so models are shared with Python tools:
//   $HF_HUB_CACHE (default $HF_HOME/hub, HF_HOME default ~/.cache/huggingface)/models--org--name/
//     blobs/<etag>                 file contents (etag = sha256 for LFS files, git blob sha1 otherwise)
//     snapshots/<commit>/<path>    relative symlinks into blobs/
//     refs/<revision>              the commit a branch or tag pointed to
// Only the files the pipeline reads are fetched (model_index.json, configs, safetensors weights, tokenizer files).
// Downloads resume from blobs/<etag>.incomplete with Range requests; a complete cached snapshot needs no network.
// Plain fetch: @huggingface/hub has no resumable downloads and targets Node's fs.
import { createHash } from "node:crypto";
import { dirname, join, relative } from "node:path";
import { pickWeightFiles, unsupportedWeightFiles } from "./diffusers.ts";
import { RequestError } from "../errors.ts";

export class HubError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "HubError";
  }
}

/** The hub could not be reached (network down, DNS): not the user's request at fault. */
export class HubNetworkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HubNetworkError";
  }
}

export interface HubProgress {
  file: string;
  loaded: number;
  total: number | null;
}

export interface HubOptions {
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** Default $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default $HF_TOKEN, else the token file of `huggingface-cli login` ($HF_HOME/token); null: none. */
  token?: string | null;
  /** Default $HF_HUB_CACHE, else $HF_HOME/hub. */
  cacheDir?: string;
  /** Prefer this weight variant ("fp16"); components without it get the plain weights. */
  variant?: string;
  /** Never use the network (default: $HF_HUB_OFFLINE). */
  offline?: boolean;
  /** Ask the hub even when the cached snapshot has every file (to follow a moved branch). */
  refresh?: boolean;
  /** Pipeline components to fetch; default those this project runs. */
  components?: string[];
  /** Configs and tokenizer only, no weights (the --config of a single-file checkpoint). */
  configOnly?: boolean;
  /** Exact repository files instead of the pipeline selection (e.g. one single-file checkpoint). */
  files?: string[];
  /** Attempts per file (each resumes where the last stopped); default 4. */
  attempts?: number;
  onProgress?: (p: HubProgress) => void;
}

export interface Snapshot {
  repoId: string;
  commit: string;
  /** snapshots/<commit>: use it as a local diffusers folder. */
  dir: string;
  /** Repository paths the selection needs (all present under dir). */
  files: string[];
  /** Those fetched by this call (empty when everything was cached). */
  downloaded: string[];
}

export const PIPELINE_COMPONENTS = ["unet", "vae", "text_encoder", "tokenizer", "scheduler", "controlnet"];
const TOKENIZER_FILES = [
  "vocab.json",
  "merges.txt",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
];
const COMMIT = /^[0-9a-f]{40}$/;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: defaults
  }
}

export function hfHome(): string {
  const xdg = env("XDG_CACHE_HOME");
  const home = env("HOME") ?? env("USERPROFILE") ?? ".";
  return env("HF_HOME") ?? join(xdg ?? join(home, ".cache"), "huggingface");
}

export function hubCacheDir(): string {
  return env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE") ?? join(hfHome(), "hub");
}

/** "org/name" or "org/name@revision". */
export function parseRepoId(spec: string): { repoId: string; revision?: string } {
  const [repoId, revision] = spec.split("@", 2);
  if (!/^[\w.-]+\/[\w.-]+$/.test(repoId) || repoId.includes("..")) {
    throw new HubError(`"${spec}" is not a hub id (expected org/name or org/name@revision)`);
  }
  return revision ? { repoId, revision } : { repoId };
}

export function repoCacheDir(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.replace("/", "--")}`);
}

async function defaultToken(): Promise<string | null> {
  const t = env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  if (t) return t;
  try {
    return (await Deno.readTextFile(env("HF_TOKEN_PATH") ?? join(hfHome(), "token"))).trim() || null;
  } catch {
    return null;
  }
}

/** Repository paths and revisions become cache paths: no absolute paths or ".." segments. */
function safePath(p: string, what: string): string {
  if (!p || p.startsWith("/") || p.includes("\\") || p.split("/").some((s) => s === ".." || s === "." || s === "")) {
    throw new HubError(`unsafe ${what} "${p}"`);
  }
  return p;
}

/** Download (or find in the cache) what a pipeline needs from a hub repository. */
export async function snapshotDownload(repoId: string, opts: HubOptions = {}): Promise<Snapshot> {
  parseRepoId(repoId);
  const revision = safePath(opts.revision ?? "main", "revision");
  const repoDir = repoCacheDir(opts.cacheDir ?? hubCacheDir(), repoId);
  const offline = opts.offline ?? /^(1|true|yes|on)$/i.test(env("HF_HUB_OFFLINE") ?? "");

  const cachedCommit = COMMIT.test(revision) ? revision : await readText(join(repoDir, "refs", revision));
  if (cachedCommit && !opts.refresh) {
    const dir = join(repoDir, "snapshots", cachedCommit);
    const local = new Set(await listTree(dir));
    const files = await plan(local, (p) => Promise.resolve(join(dir, p)), opts).catch(() => null);
    if (files && files.every((f) => local.has(f))) return { repoId, commit: cachedCommit, dir, files, downloaded: [] };
  }
  if (offline) {
    throw new HubError(
      `${repoId}@${revision} is not fully cached in ${repoDir} and offline mode is on (HF_HUB_OFFLINE); ` +
        `run once online or give a local folder`,
    );
  }

  const client = new HubClient(opts, await (opts.token === undefined ? defaultToken() : opts.token));
  const info = await client.repoInfo(repoId, revision);
  const commit = info.sha;
  const dir = join(repoDir, "snapshots", commit);
  if (!COMMIT.test(revision)) {
    await Deno.mkdir(join(repoDir, "refs", dirname(revision)), { recursive: true });
    await Deno.writeTextFile(join(repoDir, "refs", revision), commit);
  }
  const downloaded: string[] = [];
  const get = async (path: string) => {
    if (await client.ensureFile(repoDir, repoId, commit, path)) downloaded.push(path);
    return join(dir, path);
  };
  let files: string[];
  try {
    files = await plan(new Set(info.files), get, opts);
  } catch (e) {
    throw e instanceof HubError && !e.message.startsWith(repoId) ? new HubError(`${repoId}: ${e.message}`) : e;
  }
  for (const f of files) await get(f);
  return { repoId, commit, dir, files, downloaded: [...new Set(downloaded)] };
}

/**
 * The repository files to fetch, from a listing. `get` makes a file local (downloading it) and returns its path:
 * model_index.json and shard indexes are read to know what else is needed.
 */
async function plan(listing: Set<string>, get: (path: string) => Promise<string>, opts: HubOptions): Promise<string[]> {
  if (opts.files) {
    const missing = opts.files.filter((f) => !listing.has(f));
    if (missing.length) throw new HubError(`not in the repository: ${missing.join(", ")}`);
    return [...opts.files];
  }
  const out: string[] = [];
  const weights = async (prefix: string) => {
    if (opts.configOnly) return;
    const picked = pickWeightFiles(listing, prefix, opts.variant);
    if (!picked) {
      const bad = unsupportedWeightFiles(
        [...listing].filter((f) => f.startsWith(prefix) && !f.slice(prefix.length).includes("/")),
      );
      throw new HubError(
        bad.length
          ? `${prefix || "the repository"} has only ${bad.join(", ")}: pickle (.bin) weights are not supported, ` +
            `use a repository with safetensors weights`
          : `${prefix || "the repository"} has no safetensors weights`,
      );
    }
    if (picked.kind === "single") return out.push(picked.file);
    out.push(picked.index);
    const index = JSON.parse(await Deno.readTextFile(await get(picked.index)));
    for (const shard of new Set(Object.values(index.weight_map ?? {}) as string[])) {
      out.push(safePath(prefix + shard, "shard name"));
    }
  };
  if (listing.has("model_index.json")) {
    out.push("model_index.json");
    const index = JSON.parse(await Deno.readTextFile(await get("model_index.json")));
    const wanted = opts.components ?? PIPELINE_COMPONENTS;
    for (const [name, v] of Object.entries(index)) {
      if (name.startsWith("_") || !Array.isArray(v) || v[0] === null || !wanted.includes(name)) continue;
      if (name === "tokenizer" || listing.has(`${name}/vocab.json`) || listing.has(`${name}/tokenizer.json`)) {
        const has = (f: string) => listing.has(`${name}/${f}`);
        if (!has("tokenizer.json") && !(has("vocab.json") && has("merges.txt"))) {
          throw new HubError(`${name}/ has neither tokenizer.json nor vocab.json + merges.txt`);
        }
        out.push(...TOKENIZER_FILES.filter(has).map((f) => `${name}/${f}`));
      } else if (listing.has(`${name}/scheduler_config.json`)) {
        out.push(`${name}/scheduler_config.json`);
      } else {
        if (!listing.has(`${name}/config.json`)) throw new HubError(`${name}/config.json is missing`);
        out.push(`${name}/config.json`);
        await weights(`${name}/`);
      }
    }
  } else if (listing.has("config.json")) {
    out.push("config.json"); // a bare model repository (e.g. a ControlNet)
    await weights("");
  } else {
    throw new HubError("neither model_index.json nor config.json: not a diffusers repository (give files explicitly)");
  }
  return [...new Set(out)];
}

/** A failure worth another attempt (connection lost, short read, server busy). */
class Retryable extends Error {}

interface FileMeta {
  etag: string;
  size: number | null;
  /** Where the content is (a CDN for LFS files). */
  location: string;
}

class HubClient {
  readonly endpoint: string;
  private origin: string;

  constructor(private opts: HubOptions, private token: string | null) {
    this.endpoint = (opts.endpoint ?? env("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
    this.origin = new URL(this.endpoint).origin;
  }

  private headers(url: string, extra: Record<string, string> = {}): Headers {
    const h = new Headers({ "user-agent": "zerovid", ...extra });
    // The token goes to the hub only, never to the CDN a download redirects to.
    if (this.token && new URL(url).origin === this.origin) h.set("authorization", `Bearer ${this.token}`);
    return h;
  }

  private async request(url: string, init: RequestInit, what: string): Promise<Response> {
    try {
      return await fetch(url, init);
    } catch (e) {
      throw new HubNetworkError(`cannot reach ${this.endpoint} for ${what}: ${(e as Error).message}`);
    }
  }

  private async fail(res: Response, repoId: string, what: string): Promise<never> {
    await res.body?.cancel();
    const code = res.headers.get("x-error-code") ?? "";
    const hint = this.token ? "the token (HF_TOKEN) has no access" : "set HF_TOKEN to a token with access";
    if (code === "GatedRepo") {
      throw new HubError(`${repoId} is gated: accept its conditions on the hub, and ${hint} (${what})`);
    }
    if (code === "RevisionNotFound") throw new HubError(`${repoId}: revision not found (${what})`);
    if (code === "EntryNotFound") throw new HubError(`${repoId}: file not found (${what})`);
    if (res.status === 401 || res.status === 403) {
      throw new HubError(`${repoId}: not found or private (HTTP ${res.status}); ${hint} (${what})`);
    }
    if (res.status === 404) throw new HubError(`${repoId}: repository not found on ${this.endpoint} (${what})`);
    throw new HubError(`${repoId}: HTTP ${res.status} ${res.statusText} (${what})`);
  }

  async repoInfo(repoId: string, revision: string): Promise<{ sha: string; files: string[] }> {
    const url = `${this.endpoint}/api/models/${repoId}/revision/${encodeURIComponent(revision)}`;
    const res = await this.request(url, { headers: this.headers(url) }, `revision ${revision}`);
    if (!res.ok) return this.fail(res, repoId, `revision ${revision}`);
    const info = await res.json() as { sha?: string; siblings?: { rfilename: string }[] };
    if (!info.sha || !COMMIT.test(info.sha) || !Array.isArray(info.siblings)) {
      throw new HubError(`${repoId}: unexpected answer from ${url}`);
    }
    return { sha: info.sha, files: info.siblings.map((s) => s.rfilename) };
  }

  private async meta(repoId: string, commit: string, path: string): Promise<FileMeta> {
    let url = `${this.endpoint}/${repoId}/resolve/${commit}/${path.split("/").map(encodeURIComponent).join("/")}`;
    for (let hop = 0; hop < 5; hop++) {
      const res = await this.request(url, {
        method: "HEAD",
        redirect: "manual",
        headers: this.headers(url, { "accept-encoding": "identity" }),
      }, path);
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location) {
        const next = new URL(location, url);
        if (next.origin === new URL(url).origin && !res.headers.get("x-linked-etag")) {
          url = next.href; // a renamed repository: follow on the hub
          continue;
        }
      } else if (!res.ok) return this.fail(res, repoId, path);
      const etag = (res.headers.get("x-linked-etag") ?? res.headers.get("etag") ?? "").replace(/^W\//, "")
        .replace(/"/g, "");
      if (!etag || /[\/\\]|\.\./.test(etag)) throw new HubError(`${repoId}: no usable ETag for ${path}`);
      const size = res.headers.get("x-linked-size") ?? res.headers.get("content-length");
      return {
        etag,
        size: size === null ? null : Number(size),
        location: location ? new URL(location, url).href : url,
      };
    }
    throw new HubError(`${repoId}: too many redirects for ${path}`);
  }

  /** Makes snapshots/<commit>/<path> exist; true when something was downloaded. */
  async ensureFile(repoDir: string, repoId: string, commit: string, path: string): Promise<boolean> {
    safePath(path, "file name");
    const target = join(repoDir, "snapshots", commit, path);
    if (await exists(target)) return false;
    const m = await this.meta(repoId, commit, path);
    const blob = join(repoDir, "blobs", m.etag);
    await Deno.mkdir(dirname(blob), { recursive: true });
    let fetched = false;
    if (!(await exists(blob))) {
      await this.download(m, blob, path);
      fetched = true;
    }
    await Deno.mkdir(dirname(target), { recursive: true });
    try {
      await Deno.symlink(relative(dirname(target), blob), target);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return fetched;
      await Deno.copyFile(blob, target); // no symlinks (Windows without developer mode)
    }
    return fetched;
  }

  private async download(m: FileMeta, blob: string, path: string): Promise<void> {
    const part = `${blob}.incomplete`;
    const attempts = this.opts.attempts ?? 4;
    let restarted = false;
    for (let attempt = 1;; attempt++) {
      try {
        await this.fetchInto(m, part, path);
        const got = (await Deno.stat(part)).size;
        if (m.size !== null && got !== m.size) throw new Retryable(`got ${got} bytes of ${m.size}`);
        if (/^[0-9a-f]{64}$/.test(m.etag) && (await sha256File(part)) !== m.etag) {
          await Deno.remove(part);
          // A stale or foreign .incomplete is the likely cause: start over once.
          if (!restarted) {
            restarted = true;
            continue;
          }
          throw new HubError(`${path}: sha256 does not match the hub's (${m.etag})`);
        }
        await Deno.rename(part, blob);
        return;
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        if (attempt >= attempts) {
          throw new HubNetworkError(`${path}: download failed after ${attempt} attempts: ${(e as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
      }
    }
  }

  /** Appends the rest of the file to `part` (Range from its current size). */
  private async fetchInto(m: FileMeta, part: string, path: string): Promise<void> {
    let have = (await Deno.stat(part).catch(() => null))?.size ?? 0;
    if (m.size !== null && have > m.size) {
      await Deno.truncate(part, 0);
      have = 0;
    }
    if (m.size !== null && have === m.size) return;
    const extra: Record<string, string> = { "accept-encoding": "identity" };
    if (have > 0) extra.range = `bytes=${have}-`;
    let res: Response;
    try {
      res = await fetch(m.location, { headers: this.headers(m.location, extra) });
    } catch (e) {
      throw new Retryable((e as Error).message);
    }
    if (res.status === 200 && have > 0) have = 0; // the server ignored the range: start over
    else if (res.status !== 206 && res.status !== 200) {
      await res.body?.cancel();
      const msg = `${path}: HTTP ${res.status} from ${new URL(m.location).host}`;
      throw res.status >= 500 || res.status === 429 ? new Retryable(msg) : new HubError(msg);
    }
    const file = await Deno.open(part, { create: true, write: true, truncate: have === 0, append: have > 0 });
    try {
      let loaded = have;
      const total = m.size;
      for await (const chunk of res.body!) {
        for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
        loaded += chunk.length;
        this.opts.onProgress?.({ file: path, loaded, total });
      }
    } catch (e) {
      throw new Retryable((e as Error).message);
    } finally {
      file.close();
    }
  }
}

/** Where a user's model argument points: a local folder, a local single file, or a hub id (downloaded). */
export type ModelLocation =
  | { kind: "diffusers"; dir: string }
  | { kind: "model"; dir: string }
  | { kind: "single_file"; path: string };

export async function resolveModel(spec: string, opts: HubOptions = {}): Promise<ModelLocation> {
  const st = await Deno.stat(spec).catch(() => null);
  if (st?.isFile) return { kind: "single_file", path: spec };
  if (st?.isDirectory) {
    if (await exists(join(spec, "model_index.json"))) return { kind: "diffusers", dir: spec };
    if (await exists(join(spec, "config.json"))) return { kind: "model", dir: spec };
    throw new HubError(`${spec}: a folder without model_index.json or config.json`);
  }
  let id: { repoId: string; revision?: string };
  try {
    id = parseRepoId(spec);
  } catch {
    throw new HubError(`${spec}: no such file or folder, and not a hub id (org/name)`);
  }
  const snap = await snapshotDownload(id.repoId, { ...opts, revision: opts.revision ?? id.revision });
  if (snap.files.length === 1 && snap.files[0].endsWith(".safetensors")) {
    return { kind: "single_file", path: join(snap.dir, snap.files[0]) };
  }
  return { kind: snap.files.includes("model_index.json") ? "diffusers" : "model", dir: snap.dir };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const f = await Deno.open(path);
  try {
    for await (const chunk of f.readable) hash.update(chunk);
  } catch (e) {
    throw new HubError(`${path}: ${(e as Error).message}`);
  }
  return hash.digest("hex");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path); // follows symlinks: a dangling link is missing
    return true;
  } catch {
    return false;
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return null;
  }
}

/** Relative paths of the files under dir (symlinks included). */
async function listTree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(join(dir, prefix))) {
      const p = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory) out.push(...await listTree(dir, p));
      else if (await exists(join(dir, p))) out.push(p);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}
