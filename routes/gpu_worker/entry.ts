// The GPU worker's entry module: runs jobs with the real pipeline (runJob).
import { runJob } from "../../pipeline/job/run.ts";
import { serveGpuWorker } from "./worker.ts";

serveGpuWorker(runJob);
