// Whether kernels may use subgroup operations on this device. The reductions that use them (GroupNorm, LayerNorm,
// the LayerNorm prologue of the GEMM, attention's per-row dot sums) assume what every driver seen does but WGSL does
// not promise: a 1-D workgroup's invocations fill subgroups in order (lane = local index % subgroup size) and a
// subgroup has at least 4 lanes, a power of two. A probe kernel checks both once per device; kernels then take their
// `_sg` variants (shaders/*_sg.wgsl), else the workgroup-memory ones, with the same results up to float rounding.
//
// Deno's WebGPU lists `subgroups` on no adapter seen (NVIDIA H200 with driver 580, Mesa llvmpipe), yet accepts the
// feature and runs subgroup operations on both (gpu-check on the H200, 2026-12-04: op table and golden set pass with
// them, 32 lanes). So by default they are requested everywhere, and the probe decides; an adapter that refuses the
// feature gets a device without it.
// $ZEROVID_SUBGROUPS (or DeviceOptions.subgroups): "off" never uses them (A/B timing, a misbehaving driver); "on" or
// "auto" (the default) requests them and uses them when the probe passes.

import { envSwitch } from "./switch.ts";

/** Whether to request subgroups: the option, else $ZEROVID_SUBGROUPS (on/1/true/auto: yes, off/0/false: no), else yes. */
export function subgroupsWanted(opt?: boolean): boolean {
  return opt ?? envSwitch("ZEROVID_SUBGROUPS") ?? true;
}

/** Lanes the `_sg` kernels may rely on (the probe requires at least this many). */
const MIN_SUBGROUP = 4;

/** Whether groups of `n` consecutive threads (a row of attention or of the GEMM's LayerNorm prologue) can sum on
 *  subgroups on `dev`: each group then lies in one subgroup (n a power of two, at most MIN_SUBGROUP). */
export function rowsOnSubgroups(dev: { subgroups: boolean }, n: number): boolean {
  return dev.subgroups && n <= MIN_SUBGROUP && (n & (n - 1)) === 0;
}

const PROBE_WG = 256;
const PROBE = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(${PROBE_WG})
fn main(@builtin(local_invocation_index) t: u32) {
  let size = subgroupAdd(1u);
  let lane = subgroupExclusiveAdd(1u);
  let pow2 = (size & (size - 1u)) == 0u;
  o[t] = select(0u, size, pow2 && size >= ${MIN_SUBGROUP}u && lane == t % size);
}`;

/** Checks the layout the `_sg` kernels assume: the subgroup size when it holds, else why not. */
export async function probeSubgroups(gpu: GPUDevice): Promise<{ size: number } | { error: string }> {
  gpu.pushErrorScope("validation");
  const module = gpu.createShaderModule({ code: PROBE, label: "subgroup probe" });
  const pipeline = gpu.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const bytes = PROBE_WG * 4;
  const out = gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const enc = gpu.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      gpu.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: out } }],
      }),
    );
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, bytes);
    gpu.queue.submit([enc.finish()]);
    const err = await gpu.popErrorScope();
    if (err) return { error: `the probe kernel did not compile: ${err.message}` };
    await read.mapAsync(GPUMapMode.READ);
    const lanes = new Uint32Array(read.getMappedRange().slice(0));
    read.unmap();
    const size = lanes[0];
    if (!lanes.every((v) => v === size && v > 0)) {
      return { error: "subgroups are not filled in invocation order with >= 4 lanes (a power of two)" };
    }
    return { size };
  } finally {
    out.destroy();
    read.destroy();
  }
}
