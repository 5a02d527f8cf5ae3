// The one GPU handle: adapter choice, real limits, pipeline/uniform/bind-group caches, a buffer pool and the
// command encoder that every op records into. Nothing else in the project talks to navigator.gpu.
import { BufferPool } from "./pool.ts";
import { ensureRuntimeDir } from "./runtime_dir.ts";
import { probeSubgroups, subgroupsWanted } from "./subgroups.ts";
import { type Consts, shaderSource } from "./shaders.ts";

export type DType = "f32" | "f16";
export const BYTES: Record<DType, number> = { f32: 4, f16: 2 };

export interface DeviceOptions {
  /** Substring of the adapter description to require, or "low-power" / "high-performance". Env: ZEROVID_ADAPTER. */
  adapter?: string;
  /** Record GPU timestamps per dispatch (for the bench). */
  profile?: boolean;
  /** Subgroup operations in reductions: pipeline/gpu/subgroups.ts (default: $ZEROVID_SUBGROUPS, else requested). */
  subgroups?: boolean;
}

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
}

/** Uniform data for one dispatch: 4-byte words in the order the shader's `Params` struct declares them. */
export class Params {
  private words: number[] = [];
  private kinds: ("u" | "i" | "f")[] = [];
  u(...v: number[]): this {
    for (const x of v) this.words.push(x), this.kinds.push("u");
    return this;
  }
  i(...v: number[]): this {
    for (const x of v) this.words.push(x), this.kinds.push("i");
    return this;
  }
  f(...v: number[]): this {
    for (const x of v) this.words.push(x), this.kinds.push("f");
    return this;
  }
  bytes(): Uint8Array {
    // Uniform structs are 16-byte aligned in size.
    const n = Math.max(4, Math.ceil(this.words.length / 4) * 4);
    const dv = new DataView(new ArrayBuffer(n * 4));
    this.words.forEach((w, k) => {
      const kind = this.kinds[k];
      if (kind === "f") dv.setFloat32(k * 4, w, true);
      else if (kind === "i") dv.setInt32(k * 4, w, true);
      else dv.setUint32(k * 4, w >>> 0, true);
    });
    return new Uint8Array(dv.buffer);
  }
}

/** A storage binding: a buffer range. Tensors expose one through `binding()`. */
export interface Binding {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

export interface Kernel {
  name: string;
  pipeline: GPUComputePipeline;
  id: number;
}

interface ProfileRecord {
  name: string;
  index: number;
}

export class Device {
  readonly pool: BufferPool;
  readonly f16: boolean;
  readonly timestamps: boolean;
  /** Kernels use their subgroup variants (the feature is on and the probe passed: pipeline/gpu/subgroups.ts). */
  subgroups = false;
  /** Why subgroups are used or not, for reports. */
  subgroupNote = "";
  readonly align: number;
  /** The adapter's real limits; `maxBinding` / `maxBuffer` are what ops and the run planner see (maybe lowered). */
  readonly adapterLimits: { maxBinding: number; maxBuffer: number };
  private seen: { maxBinding: number; maxBuffer: number };
  private kernels = new Map<string, Kernel>();
  private uniforms = new Map<string, GPUBuffer>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private lostReason: string | null = null;
  private dry = false;
  private afterDry: (() => void)[] = [];
  private errors: string[] = [];
  // Profiling state (bench only).
  private querySet: GPUQuerySet | null = null;
  private queryCount = 0;
  private profileRecords: ProfileRecord[] = [];
  private readonly queryCapacity = 4096;
  /** Number of dispatches recorded since the device opened (for benchmarks and tests). */
  dispatches = 0;
  /** Pipelines compiled outside a precompile dry run since the last one ended (0 in a well-prepared loop). */
  lateCompiles = 0;
  /** Number of command buffers submitted (a denoising step should be one). */
  submits = 0;
  /** Open tensor scopes (innermost last): pooled tensors created while one is open are released when it closes. */
  readonly scopes: Set<{ release(): void }>[] = [];

  private constructor(
    readonly gpu: GPUDevice,
    readonly adapterName: string,
    readonly isFallback: boolean,
    private profileOn: boolean,
  ) {
    this.f16 = gpu.features.has("shader-f16");
    this.timestamps = gpu.features.has("timestamp-query");
    this.adapterLimits = { maxBinding: gpu.limits.maxStorageBufferBindingSize, maxBuffer: gpu.limits.maxBufferSize };
    this.seen = { ...this.adapterLimits };
    this.align = gpu.limits.minStorageBufferOffsetAlignment;
    this.pool = new BufferPool(gpu, () => this.bindGroups.clear());
    gpu.lost.then((info) => {
      this.lostReason = `GPU device lost (${info.reason}): ${info.message || "no message"}`;
    });
    gpu.addEventListener("uncapturederror", (ev) => {
      this.errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
  }

  static async open(opts: DeviceOptions = {}): Promise<Device> {
    if (!("gpu" in navigator) || !navigator.gpu) {
      throw new GpuError("WebGPU is not available in this runtime: use Deno >= 2.7 (`deno run -A ...`).");
    }
    ensureRuntimeDir(); // before the driver loads: it complains about an unset XDG_RUNTIME_DIR
    const want = opts.adapter ?? Deno.env.get("ZEROVID_ADAPTER") ?? "";
    const prefs: GPUPowerPreference[] = want === "low-power" ? ["low-power"] : ["high-performance", "low-power"];
    let adapter: GPUAdapter | null = null;
    for (const powerPreference of prefs) {
      const a = await navigator.gpu.requestAdapter({ powerPreference });
      if (!a) continue;
      if (want && want !== "low-power" && want !== "high-performance") {
        if (!a.info.description.toLowerCase().includes(want.toLowerCase())) continue;
      }
      // Prefer a real GPU over a software one when both exist.
      if (!adapter || (adapter.info.isFallbackAdapter && !a.info.isFallbackAdapter)) adapter = a;
    }
    if (!adapter) {
      const hint = want ? `no adapter matches ZEROVID_ADAPTER/--adapter "${want}"` : "no WebGPU adapter found";
      throw new GpuError(
        `${hint}. Install a Vulkan driver for your GPU, or Mesa's software Vulkan for CPU-only use ` +
          "(Debian/Ubuntu: apt-get install -y mesa-vulkan-drivers).",
      );
    }
    const features: GPUFeatureName[] = [];
    for (const f of ["shader-f16", "timestamp-query"] as GPUFeatureName[]) {
      if (adapter.features.has(f)) features.push(f);
    }
    const sgWanted = subgroupsWanted(opts.subgroups);
    const sgListed = adapter.features.has("subgroups" as GPUFeatureName);
    if (sgWanted) features.push("subgroups" as GPUFeatureName);
    const L = adapter.limits;
    const request = (requiredFeatures: GPUFeatureName[]) =>
      adapter.requestDevice({
        requiredFeatures,
        requiredLimits: {
          maxBufferSize: L.maxBufferSize,
          maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
          maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
          maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
          maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
          maxComputeWorkgroupSizeY: L.maxComputeWorkgroupSizeY,
          maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
          maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
        },
      });
    let gpu: GPUDevice, refused = "";
    try {
      gpu = await request(features);
    } catch (e) {
      // Subgroups asked for where the adapter does not list them may be refused: run without them.
      if (!features.includes("subgroups" as GPUFeatureName) || sgListed) throw e;
      refused = `refused by the adapter (${e instanceof Error ? e.message : e})`;
      gpu = await request(features.filter((f) => f !== "subgroups"));
    }
    const name = adapter.info.description || adapter.info.vendor || "unknown adapter";
    const dev = new Device(
      gpu,
      name,
      adapter.info.isFallbackAdapter,
      !!opts.profile && features.includes("timestamp-query"),
    );
    if (!gpu.features.has("subgroups" as GPUFeatureName)) {
      dev.subgroupNote = !sgWanted ? "turned off" : refused || "the adapter has no subgroups";
    } else {
      const probe = await probeSubgroups(gpu);
      dev.subgroups = "size" in probe;
      const why = sgListed ? "" : ", not listed by the adapter";
      dev.subgroupNote = "size" in probe ? `in use (${probe.size} lanes${why})` : `not used: ${probe.error}`;
    }
    return dev;
  }

  /** Largest storage binding an op may record (bytes): ops split their work to stay under it. */
  get maxBinding(): number {
    return this.seen.maxBinding;
  }

  /** Largest buffer a tensor may have (bytes). */
  get maxBuffer(): number {
    return this.seen.maxBuffer;
  }

  /**
   * Make ops and the planner see smaller limits than the adapter's (never larger): tests force the split paths on
   * small tensors this way, as a GPU with smaller limits would. Returns a function that restores the previous ones.
   */
  lowerLimits(l: { maxBinding?: number; maxBuffer?: number }): () => void {
    const before = { ...this.seen };
    for (const k of ["maxBinding", "maxBuffer"] as const) {
      const v = l[k];
      if (v === undefined) continue;
      if (!Number.isInteger(v) || v < 256) throw new GpuError(`lowerLimits: ${k} must be an integer >= 256, got ${v}`);
      this.seen[k] = Math.min(v, this.adapterLimits[k]);
    }
    return () => this.seen = before;
  }

  /** True while `precompile` records a throw-away dry run: nothing recorded now will ever execute, so nothing
   *  computed now may be cached. */
  get dryRun(): boolean {
    return this.dry;
  }

  /** Record `fn` now, or, inside a dry run, right after it ends (before anything recorded later): work whose result
   *  is cached across calls (a weight's Winograd transform) must really run once. */
  recordOutsideDryRun(fn: () => void): void {
    if (this.dry) this.afterDry.push(fn);
    else fn();
  }

  /** Storage dtype for activations/weights at a requested precision (f16 needs `shader-f16`). */
  dtypeFor(precision: DType): DType {
    if (precision === "f16" && !this.f16) {
      throw new GpuError(`precision f16 needs the 'shader-f16' feature, which adapter "${this.adapterName}" lacks`);
    }
    return precision;
  }

  /** True once the device is lost (driver reset, destroy): it must be reopened. */
  get isLost(): boolean {
    return this.lostReason !== null;
  }

  checkAlive(): void {
    if (this.lostReason) throw new GpuError(this.lostReason);
  }

  /** Compile (once) a kernel from its WGSL source, specialised by dtype and `consts` (emitted as WGSL `const`s). */
  kernel(name: string, source: string, consts: Consts = {}, dtype: DType = "f32"): Kernel {
    const key = `${name}|${dtype}|${JSON.stringify(consts)}`;
    let k = this.kernels.get(key);
    if (k) return k;
    const code = shaderSource(source, consts, dtype);
    const module = this.gpu.createShaderModule({ code, label: name });
    const pipeline = this.gpu.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label: key,
    });
    k = { name, pipeline, id: this.nextId++ };
    this.kernels.set(key, k);
    if (!this.dry) this.lateCompiles++;
    return k;
  }

  /** The keys ("name|dtype|consts") of the kernels compiled on this device so far (tests: which variant ran). */
  kernelKeys(): string[] {
    return [...this.kernels.keys()];
  }

  private idOf(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, id = this.nextId++);
    return id;
  }

  private uniform(p: Params): GPUBuffer {
    const bytes = p.bytes();
    let key = "";
    for (let i = 0; i < bytes.length; i += 4) {
      key += String.fromCharCode(bytes[i] | (bytes[i + 1] << 8), bytes[i + 2] | (bytes[i + 3] << 8));
    }
    let buf = this.uniforms.get(key);
    if (!buf) {
      buf = this.gpu.createBuffer({ size: bytes.length, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      new Uint8Array(buf.getMappedRange()).set(bytes);
      buf.unmap();
      this.uniforms.set(key, buf);
    }
    return buf;
  }

  private currentEncoder(): GPUCommandEncoder {
    this.checkAlive();
    if (!this.encoder) this.encoder = this.gpu.createCommandEncoder();
    return this.encoder;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Record one compute dispatch. Binding 0 is the uniform `Params`, storage buffers follow in order. */
  dispatch(k: Kernel, params: Params, bindings: Binding[], groups: [number, number?, number?]): void {
    const [gx, gy = 1, gz = 1] = groups;
    if (gx === 0 || gy === 0 || gz === 0) return;
    const maxG = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    if (gx > maxG || gy > maxG || gz > maxG) {
      throw new GpuError(`${k.name}: dispatch [${gx},${gy},${gz}] exceeds ${maxG} workgroups per dimension`);
    }
    for (const b of bindings) {
      if (b.size > this.maxBinding) {
        throw new GpuError(
          `${k.name}: a ${b.size}-byte binding exceeds this GPU's maxStorageBufferBindingSize (${this.maxBinding})`,
        );
      }
    }
    const u = this.uniform(params);
    let key = `${k.id}:${this.idOf(u)}`;
    for (const b of bindings) key += `:${this.idOf(b.buffer)}@${b.offset}+${b.size}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      bg = this.gpu.createBindGroup({
        layout: k.pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: u } },
          ...bindings.map((b, i) => ({
            binding: i + 1,
            resource: { buffer: b.buffer, offset: b.offset, size: b.size },
          })),
        ],
      });
      this.bindGroups.set(key, bg);
    }
    const enc = this.currentEncoder();
    let pass: GPUComputePassEncoder;
    if (this.profileOn && this.queryCount + 2 <= this.queryCapacity) {
      this.endPass();
      if (!this.querySet) {
        this.querySet = this.gpu.createQuerySet({ type: "timestamp", count: this.queryCapacity });
      }
      const index = this.queryCount;
      this.queryCount += 2;
      this.profileRecords.push({ name: k.name, index });
      pass = enc.beginComputePass({
        timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: index, endOfPassWriteIndex: index + 1 },
      });
      pass.setPipeline(k.pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(gx, gy, gz);
      pass.end();
    } else {
      if (!this.pass) this.pass = enc.beginComputePass();
      pass = this.pass;
      pass.setPipeline(k.pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(gx, gy, gz);
    }
    this.dispatches++;
  }

  /** Forget cached bind groups (after destroying buffers they name, e.g. a job's LoRA-merged weights). */
  dropBindGroups(): void {
    this.bindGroups.clear();
  }

  /** Record a buffer-to-buffer copy (ends the open compute pass). */
  copy(src: Binding, dst: Binding, size = src.size): void {
    const enc = this.currentEncoder();
    this.endPass();
    enc.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, size);
  }

  /**
   * Record `fn` and throw the recording away: every pipeline and bind group it needs is created now (at load) rather
   * than inside the denoising loop. Pooled tensors it leaves are released; a queue write or readback inside is an
   * error (it would submit the dry run).
   */
  precompile(fn: () => void): void {
    this.flush();
    const scope = new Set<{ release(): void }>();
    this.scopes.push(scope);
    this.dry = true;
    try {
      fn();
    } finally {
      this.dry = false;
      this.scopes.splice(this.scopes.lastIndexOf(scope), 1);
      for (const t of scope) t.release();
      this.endPass();
      this.encoder = null; // recorded, never submitted
      this.lateCompiles = 0;
      for (const f of this.afterDry.splice(0)) f();
    }
  }

  /** Submit everything recorded so far as one command buffer. */
  flush(): void {
    if (this.dry) throw new GpuError("a queue write or readback inside a precompile dry run");
    this.endPass();
    if (!this.encoder) return;
    const cb = this.encoder.finish();
    this.encoder = null;
    this.gpu.queue.submit([cb]);
    this.submits++;
  }

  /**
   * Write host data into a buffer. Pending recorded work is submitted first: a queue write runs before any
   * not-yet-submitted commands, so writing a pooled buffer that recorded commands still use would corrupt them.
   */
  write(dst: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.flush();
    this.checkAlive();
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    // writeBuffer needs a 4-byte multiple.
    if (bytes.byteLength % 4 === 0) this.gpu.queue.writeBuffer(dst, offset, bytes);
    else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.gpu.queue.writeBuffer(dst, offset, padded);
    }
  }

  /** Submit pending work and copy a buffer range back to the host. Never call inside a denoising loop. */
  async read(src: Binding): Promise<ArrayBuffer> {
    const size = Math.ceil(src.size / 4) * 4;
    const staging = this.gpu.createBuffer({ size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    this.currentEncoder();
    this.copy(src, { buffer: staging, offset: 0, size }, size);
    this.flush();
    await this.sync();
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, src.size);
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Wait until the GPU has finished all submitted work; surfaces device loss and validation errors. */
  async sync(): Promise<void> {
    await this.submitted();
    this.checkErrors();
  }

  /** Submit pending work; resolves when the GPU has finished everything submitted, or at once if the device is lost. */
  submitted(): Promise<void> {
    this.flush();
    return Promise.race([this.gpu.queue.onSubmittedWorkDone(), this.gpu.lost.then(() => undefined)]);
  }

  /**
   * The error to report for a failure during GPU work: after a device loss, WebGPU calls fail with opaque messages
   * ("Buffer ... is invalid") before the lost promise settles, so give it a moment and report the loss instead.
   */
  async explain(e: unknown): Promise<unknown> {
    if (!this.lostReason && !(e instanceof GpuError)) {
      await Promise.race([this.gpu.lost, new Promise((r) => setTimeout(r, 100))]);
    }
    return this.lostReason ? new GpuError(this.lostReason) : e;
  }

  /** Throw device loss and validation/out-of-memory errors collected so far. */
  checkErrors(): void {
    this.checkAlive();
    if (this.errors.length) {
      const e = this.errors.splice(0);
      throw new GpuError(`GPU error: ${e[0]}${e.length > 1 ? ` (+${e.length - 1} more)` : ""}`);
    }
  }

  /** Run `fn` and turn GPU out-of-memory into a clear error. */
  async guardOOM<R>(what: string, fn: () => Promise<R>): Promise<R> {
    this.gpu.pushErrorScope("out-of-memory");
    let result: R | undefined, failure: unknown = null;
    try {
      result = await fn();
    } catch (e) {
      failure = e;
    }
    const err = await this.gpu.popErrorScope();
    if (err) throw new GpuError(`out of GPU memory during ${what}: ${err.message}`);
    if (failure) throw failure;
    return result as R;
  }

  /** Whether dispatches record GPU timestamps (bench only: each dispatch then gets its own compute pass). */
  get profile(): boolean {
    return this.profileOn;
  }

  /** Turn per-dispatch timestamps on or off; returns false when the adapter has no timestamp queries. */
  setProfiling(on: boolean): boolean {
    if (on && !this.timestamps) return false;
    this.endPass();
    this.profileOn = on;
    return true;
  }

  /** Per-kernel GPU time (ms) since the last call; needs `profile: true`. */
  async takeProfile(): Promise<{ name: string; ms: number }[]> {
    if (!this.querySet || this.queryCount === 0) return [];
    const n = this.queryCount;
    const resolve = this.gpu.createBuffer({
      size: n * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const enc = this.currentEncoder();
    this.endPass();
    enc.resolveQuerySet(this.querySet, 0, n, resolve, 0);
    const raw = new BigUint64Array(await this.read({ buffer: resolve, offset: 0, size: n * 8 }));
    resolve.destroy();
    const out = this.profileRecords.map((r) => ({
      name: r.name,
      ms: Number(raw[r.index + 1] - raw[r.index]) / 1e6,
    }));
    this.profileRecords = [];
    this.queryCount = 0;
    return out;
  }

  destroy(): void {
    this.flush();
    this.pool.destroy();
    for (const b of this.uniforms.values()) b.destroy();
    this.uniforms.clear();
    this.bindGroups.clear();
    this.gpu.destroy();
  }
}
