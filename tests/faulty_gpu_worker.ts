// A GPU worker entry for tests of the worker's failure handling: the real worker loop (serveGpuWorker) and the real
// pipeline, except that some prompts make the job misbehave the way a broken driver or a bug would.
//   "exit"   the thread ends itself (self.close())       "crash"  an uncaught exception kills the thread
//   "freeze" the thread blocks in a busy loop             "stall"  the job never finishes (the thread stays alive)
import { runJob } from "../pipeline/job/run.ts";
import { serveGpuWorker } from "../routes/gpu_worker/worker.ts";

serveGpuWorker((env, req, hooks) => {
  switch (req.prompt) {
    case "exit":
      self.close();
      return new Promise(() => {});
    case "crash":
      setTimeout(() => {
        throw new Error("simulated driver crash");
      }, 10);
      return new Promise(() => {});
    case "freeze":
      // deno-lint-ignore no-empty
      for (;;) {}
    case "stall":
      return new Promise(() => {});
    default:
      return runJob(env, req, hooks);
  }
});
