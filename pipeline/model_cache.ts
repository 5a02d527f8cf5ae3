// Loaded models shared between modes and jobs: each (model, dtype) is loaded once, lent out to jobs, and evicted
// least-recently-used when the GPU bytes of the idle ones exceed a budget. Concurrent requests for the same model
// share one load. A model lent to a job is never disposed under it. A job may ask for the model with an adapter
// (LoRA): jobs wanting the same adapter (or none) share the model at once, a job wanting another one waits until
// they are done; the adapter is undone when its last job hands the model back, leaving the base weights as loaded.
import { resolve } from "node:path";
import type { Device, DType } from "./gpu/device.ts";
import type { ControlNet } from "./models/controlnet.ts";
import { loadControlNet, StableDiffusion } from "./models/sd.ts";
import { loadDemoControlNet, loadDemoSD } from "./models/demo.ts";

/** Where a Stable Diffusion checkpoint comes from (after hub resolution). */
export type SDSpec =
  | { kind: "demo"; variant: "sd" | "pix2pix" }
  | { kind: "diffusers"; dir: string; variant?: string }
  | { kind: "single_file"; path: string; configDir?: string; variant?: string };

/** Where a ControlNet comes from: a folder with config.json + weights, or the demo one. */
export type ControlNetSpec = { kind: "demo" } | { kind: "dir"; dir: string };

export interface Lease<T> {
  readonly model: T;
  /** Hands the model back (idempotent); it stays cached until evicted. */
  release(): void;
}

/** A per-job change to a loaded model (LoRA weights swapped in). */
export interface SDAdapter {
  /** Jobs asking for equal keys can share the adapted model. */
  key: string;
  /** Checks the adapter against the model (throwing before any GPU work when it does not fit), applies it and
   * returns its undo. */
  apply(sd: StableDiffusion): () => void;
}

export interface ModelCacheOptions {
  /** GPU bytes the cache may keep; idle models beyond this are disposed, oldest use first. Default: no limit. */
  maxBytes?: number;
}

export interface CacheEntryInfo {
  key: string;
  bytes: number;
  inUse: number;
}

type Model = StableDiffusion | ControlNet;

interface Entry {
  key: string;
  load: Promise<Model>;
  model: Model | null;
  bytes: number;
  refs: number;
  lastUse: number;
  /** The adapter applied now ("" = none), the leases using the model in that state, and how to undo it. */
  adapter: string;
  users: number;
  undo: (() => void) | null;
  /** Leases waiting for the model to return to the base state. */
  waiting: (() => void)[];
}

function bytesOf(m: Model): number {
  return m instanceof StableDiffusion ? m.bytes : m.params.bytes;
}

export function sdKey(spec: SDSpec, dtype: DType): string {
  switch (spec.kind) {
    case "demo":
      return `demo:${spec.variant}|${dtype}`;
    case "diffusers":
      return `diffusers:${resolve(spec.dir)}|${spec.variant ?? ""}|${dtype}`;
    case "single_file":
      return `single_file:${resolve(spec.path)}|${spec.configDir ? resolve(spec.configDir) : ""}|${
        spec.variant ?? ""
      }|${dtype}`;
  }
}

export function controlNetKey(spec: ControlNetSpec, dtype: DType): string {
  return spec.kind === "demo" ? `controlnet:demo|${dtype}` : `controlnet:${resolve(spec.dir)}|${dtype}`;
}

export class ModelCache {
  private entries = new Map<string, Entry>();
  private clock = 0;
  private disposed = false;
  maxBytes: number;
  /** Loads started (for tests and logs). */
  loads = 0;

  constructor(readonly dev: Device, opts: ModelCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? Infinity;
  }

  /** GPU bytes of the loaded models. */
  get bytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.bytes;
    return n;
  }

  info(): CacheEntryInfo[] {
    return [...this.entries.values()].filter((e) => e.model).map((e) => ({
      key: e.key,
      bytes: e.bytes,
      inUse: e.refs,
    }));
  }

  has(key: string): boolean {
    return this.entries.get(key)?.model != null;
  }

  /** The model, with `adapter` applied for as long as the lease is held (see SDAdapter). */
  stableDiffusion(spec: SDSpec, dtype: DType, adapter?: SDAdapter): Promise<Lease<StableDiffusion>> {
    return this.acquire(sdKey(spec, dtype), adapter, () => {
      switch (spec.kind) {
        case "demo":
          return loadDemoSD(this.dev, spec.variant, dtype);
        case "diffusers":
          return StableDiffusion.load(this.dev, spec.dir, { dtype, variant: spec.variant });
        case "single_file":
          return StableDiffusion.load(this.dev, spec.path, {
            dtype,
            configDir: spec.configDir,
            variant: spec.variant,
          });
      }
    }) as Promise<Lease<StableDiffusion>>;
  }

  controlNet(spec: ControlNetSpec, dtype: DType): Promise<Lease<ControlNet>> {
    return this.acquire(
      controlNetKey(spec, dtype),
      undefined,
      () => spec.kind === "demo" ? loadDemoControlNet(this.dev, dtype) : loadControlNet(this.dev, spec.dir, dtype),
    ) as Promise<Lease<ControlNet>>;
  }

  private async acquire(
    key: string,
    adapter: SDAdapter | undefined,
    load: () => Promise<Model>,
  ): Promise<Lease<Model>> {
    if (this.disposed) throw new Error("ModelCache: used after dispose()");
    let e = this.entries.get(key);
    if (!e) {
      this.loads++;
      const entry: Entry = {
        key,
        load: load(),
        model: null,
        bytes: 0,
        refs: 0,
        lastUse: 0,
        adapter: "",
        users: 0,
        undo: null,
        waiting: [],
      };
      e = entry;
      this.entries.set(key, entry);
      entry.load.then((m) => {
        entry.model = m;
        entry.bytes = bytesOf(m);
      }, () => {
        // A failed load is forgotten, so the next request tries again.
        if (this.entries.get(key) === entry) this.entries.delete(key);
      });
    }
    e.refs++;
    let model: Model;
    try {
      model = await e.load;
    } catch (err) {
      e.refs--;
      throw err;
    }
    e.model ??= model;
    const entry = e;
    try {
      await this.enter(entry, model, adapter);
    } catch (err) {
      entry.refs--;
      throw err;
    }
    e.bytes = bytesOf(model);
    e.lastUse = ++this.clock;
    let released = false;
    this.evict();
    return {
      model,
      release: () => {
        if (released) return;
        released = true;
        this.leave(entry);
        entry.refs--;
        entry.lastUse = ++this.clock;
        if (this.disposed && entry.refs === 0) model.dispose();
        else this.evict();
      },
    };
  }

  /** Waits until the model is in the adapter's state or unused, then brings it there. */
  private async enter(e: Entry, model: Model, adapter: SDAdapter | undefined): Promise<void> {
    const want = adapter?.key ?? "";
    while (e.adapter !== want && e.users > 0) await new Promise<void>((r) => e.waiting.push(r));
    if (e.adapter !== want) {
      this.reset(e);
      e.undo = adapter!.apply(model as StableDiffusion);
      e.adapter = want;
    }
    e.users++;
  }

  /** The last user of an adapted model undoes the adapter and wakes the leases waiting for another state. */
  private leave(e: Entry): void {
    if (--e.users > 0) return;
    this.reset(e);
    for (const wake of e.waiting.splice(0)) wake();
  }

  private reset(e: Entry): void {
    const undo = e.undo;
    e.undo = null;
    e.adapter = "";
    undo?.();
  }

  /** Disposes idle models, least recently used first, until the cache fits maxBytes (or only lent ones remain). */
  evict(): void {
    let total = this.bytes;
    if (total <= this.maxBytes) return;
    const idle = [...this.entries.values()].filter((e) => e.model && e.refs === 0).sort((a, b) =>
      a.lastUse - b.lastUse
    );
    for (const e of idle) {
      if (total <= this.maxBytes) break;
      this.entries.delete(e.key);
      total -= e.bytes;
      e.model!.dispose();
    }
  }

  /** Disposes every idle model now, and lent ones when they are released. */
  dispose(): void {
    this.disposed = true;
    for (const e of this.entries.values()) {
      if (e.model && e.refs === 0) e.model.dispose();
    }
    this.entries.clear();
  }
}
