// On a software adapter (Mesa's llvmpipe) a job's GPU work is CPU work: the Vulkan driver's threads would compete
// with the thread that serves HTTP. The GPU worker lowers its own thread's CPU priority before it opens the device,
// and the driver threads it starts inherit it (Linux: nice is per thread and inherited), so health checks and
// event streams are scheduled first. A real GPU loses nothing: its work is not on the CPU.
/** Sets the calling thread's nice value (Linux, via libc); returns false where that is not possible. */
export function lowerThreadPriority(nice: number): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    const libc = Deno.dlopen("libc.so.6", {
      gettid: { parameters: [], result: "i32" },
      setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
    });
    try {
      const PRIO_PROCESS = 0; // with a thread id: that thread only
      return libc.symbols.setpriority(PRIO_PROCESS, libc.symbols.gettid(), nice) === 0;
    } finally {
      libc.close();
    }
  } catch {
    return false; // no FFI permission, or no glibc: the job runs at normal priority
  }
}
