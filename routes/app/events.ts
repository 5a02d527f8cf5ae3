// GET /v1/jobs/:id/events: a job's server-sent events (queued, started, progress and preview, then done | failed |
// cancelled), from wherever the job runs; the stream ends with the job. A preview is {step, total, frames, width,
// height, image}: the frames as they stand, side by side, as a PNG data: URL.
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { JobEvent } from "../queue/types.ts";
import { jobView, type SubAppDeps, unknownJob } from "./context.ts";

export function eventsApp({ queue }: SubAppDeps): Hono {
  const app = new Hono();
  app.get("/:id/events", async (c) => {
    const id = c.req.param("id");
    if (!await queue.get(id)) return unknownJob(c);
    return streamSSE(c, async (stream) => {
      // Subscribe before reading the state, so no event falls between the two.
      const pending: JobEvent[] = [];
      let wake: (() => void) | null = null;
      let closed = false;
      const unsubscribe = await queue.subscribe(id, (ev) => {
        // Every step is sent; only a client that falls far behind gets progress coalesced (latest step wins).
        const last = pending[pending.length - 1];
        if (ev.type === "progress" && last?.type === "progress" && pending.length > 32) {
          pending[pending.length - 1] = ev;
        } else pending.push(ev);
        wake?.();
      });
      stream.onAbort(() => {
        closed = true;
        wake?.();
      });
      const ping = setInterval(() => {
        stream.write(": ping\n\n").catch(() => {});
      }, 15_000);
      let n = 0;
      const send = (event: string, data: unknown) =>
        stream.writeSSE({ event, data: JSON.stringify(data), id: String(++n) });
      try {
        const job = await queue.get(id);
        if (!job) return;
        if (job.status === "queued") await send("queued", { position: await queue.position(id) });
        if (job.status === "running") {
          await send("started", { attempt: job.attempts });
          if (job.progress) await send("progress", job.progress);
        }
        if (job.status === "succeeded" || job.status === "failed" || job.status === "cancelled") {
          const ev = job.status === "succeeded" ? "done" : job.status;
          await send(ev, await jobView(job, queue));
          return;
        }
        while (!closed) {
          if (pending.length === 0) {
            await new Promise<void>((r) => wake = r);
            wake = null;
            continue;
          }
          const ev = pending.shift()!;
          switch (ev.type) {
            case "queued":
              await send("queued", { position: ev.position });
              break;
            case "started":
              await send("started", { attempt: ev.attempt });
              break;
            case "progress":
              if (ev.progress.preview) {
                const { step, total, preview } = ev.progress;
                await send("preview", { step, total, ...preview });
              } else await send("progress", ev.progress);
              break;
            case "closed":
              return; // shutdown: the client reconnects (EventSource does) once the server is back
            default:
              await send(ev.type, await jobView(ev.job, queue));
              return;
          }
        }
      } finally {
        clearInterval(ping);
        unsubscribe();
      }
    });
  });

  return app;
}
