// GET /v1/jobs/:id/result: the finished video, read from the queue's store by byte range (HTTP Range), inline or as
// an attachment (?download).
import { Hono } from "hono";
import { errorJson, type SubAppDeps, unknownJob } from "./context.ts";

export function resultsApp({ queue }: SubAppDeps): Hono {
  const app = new Hono();
  app.get("/:id/result", async (c) => {
    const id = c.req.param("id");
    const r = await queue.openResult(id);
    if ("missing" in r) {
      if (r.missing === "unknown") return unknownJob(c);
      if (r.missing === "expired") return errorJson(c, 410, "the result was deleted (older than the retention)", "id");
      const job = await queue.get(id);
      if (!job) return unknownJob(c);
      const why = job.status === "failed"
        ? `the job failed: ${job.error}`
        : job.status === "cancelled"
        ? "the job was cancelled"
        : `the job is ${job.status}; its result is not ready`;
      return errorJson(c, 409, why, "id");
    }
    const name = `zerovid-${id.slice(0, 8)}.${r.info.format}`;
    const headers: Record<string, string> = {
      "Content-Type": r.info.contentType,
      "Accept-Ranges": "bytes",
      "Cache-Control": "private, max-age=86400",
      "Content-Disposition": `${c.req.query("download") !== undefined ? "attachment" : "inline"}; filename="${name}"`,
    };
    const size = r.size;
    const read = async (start: number, end: number) => {
      try {
        return await r.read(start, end);
      } catch {
        return null;
      }
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(c.req.header("Range") ?? "");
    if (range && (range[1] || range[2])) {
      let start = range[1] ? Number(range[1]) : size - Number(range[2]);
      let end = range[1] && range[2] ? Number(range[2]) : size - 1;
      start = Math.max(0, start), end = Math.min(size - 1, end);
      if (start > end || start >= size) {
        return c.body(null, 416, { ...headers, "Content-Range": `bytes */${size}` });
      }
      const part = await read(start, end + 1);
      if (!part) return errorJson(c, 410, "the result is gone", "id");
      return c.body(part, 206, { ...headers, "Content-Range": `bytes ${start}-${end}/${size}` });
    }
    const bytes = await read(0, size);
    if (!bytes) return errorJson(c, 410, "the result is gone", "id");
    return c.body(bytes, 200, headers);
  });

  return app;
}
