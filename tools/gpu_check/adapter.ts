// gpu-check, section 1: what the adapter is (name, vendor, driver, features, limits) and the machine around it.
export interface AdapterReport {
  name: string;
  vendor: string;
  architecture: string;
  device: string;
  fallback: boolean;
  /** WebGPU's adapter info has no driver field: read from the system where it can be (NVIDIA, Mesa). */
  driver: string;
  features: { "shader-f16": boolean; subgroups: boolean; "timestamp-query": boolean };
  subgroupSizes: [number, number] | null;
  /** Whether zerovid's reductions use subgroups on this adapter, and why (pipeline/gpu/subgroups.ts). */
  subgroupsUsed?: string;
  allFeatures: string[];
  limits: Record<string, number>;
}

export interface MachineReport {
  os: string;
  arch: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  deno: string;
  v8: string;
  /** 1-minute load average at the start: a busy CPU slows every number here, most of all on a software adapter. */
  loadAvg: number[];
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return null;
  }
}

async function nvidiaDriver(): Promise<string | null> {
  const proc = await readText("/proc/driver/nvidia/version");
  const m = proc?.match(/Kernel Module\s+(?:for \S+\s+)?([\d.]+)/);
  if (m) return `NVIDIA ${m[1]}`;
  try {
    const out = await new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=driver_version", "--format=csv,noheader"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const v = new TextDecoder().decode(out.stdout).trim().split("\n")[0];
    return out.code === 0 && v ? `NVIDIA ${v}` : null;
  } catch {
    return null;
  }
}

function driverFrom(description: string): string | null {
  // Mesa's software rasterizer names its LLVM in the description: "llvmpipe (LLVM 15.0.6, 256 bits)".
  const m = description.match(/llvmpipe \(LLVM ([\d.]+)/);
  return m ? `Mesa llvmpipe (Vulkan lavapipe), LLVM ${m[1]}` : null;
}

export async function adapterReport(want?: string): Promise<AdapterReport> {
  if (!navigator.gpu) throw new Error("WebGPU is not available in this runtime (deno run -A, Deno >= 2.7)");
  let adapter: GPUAdapter | null = null;
  for (const powerPreference of ["high-performance", "low-power"] as GPUPowerPreference[]) {
    const a = await navigator.gpu.requestAdapter({ powerPreference });
    if (!a) continue;
    if (want && !a.info.description.toLowerCase().includes(want.toLowerCase())) continue;
    if (!adapter || (adapter.info.isFallbackAdapter && !a.info.isFallbackAdapter)) adapter = a;
  }
  if (!adapter) throw new Error(want ? `no adapter matches "${want}"` : "no WebGPU adapter found");
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === "number") limits[k] = v;
  }
  const f = adapter.features;
  const sub = info as unknown as { subgroupMinSize?: number; subgroupMaxSize?: number };
  const name = info.description || info.vendor || "unknown adapter";
  return {
    name,
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    fallback: info.isFallbackAdapter,
    driver: driverFrom(name) ?? await nvidiaDriver() ?? "not exposed by WebGPU and not found on the system",
    features: {
      "shader-f16": f.has("shader-f16"),
      subgroups: f.has("subgroups"),
      "timestamp-query": f.has("timestamp-query"),
    },
    subgroupSizes: sub.subgroupMinSize ? [sub.subgroupMinSize, sub.subgroupMaxSize ?? sub.subgroupMinSize] : null,
    allFeatures: [...f].sort(),
    limits,
  };
}

export async function machineReport(): Promise<MachineReport> {
  const cpuinfo = await readText("/proc/cpuinfo");
  return {
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    arch: Deno.build.arch,
    cpus: navigator.hardwareConcurrency,
    cpuModel: cpuinfo?.match(/model name\s*:\s*(.+)/)?.[1]?.trim() ?? "unknown",
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    loadAvg: Deno.loadavg(),
  };
}
