// GET /v1/jobs/:id/result: the finished video (or zip of PNG frames), read from the queue's store by byte range
// (HTTP Range), inline or as an attachment (?download). GET /v1/jobs/:id/poster: a small PNG of its middle frame
// (for job lists), made from the result on first request and kept in memory.
import { Hono } from "hono";
import type { Context } from "hono";
import { FILE_EXTENSIONS } from "../../pipeline/job/types.ts";
import { posterOf } from "../../pipeline/media/poster.ts";
import type { ResultHandle } from "../queue/types.ts";
import { errorJson, type SubAppDeps, unknownJob } from "./context.ts";

/** Posters kept in memory (oldest dropped first): a few KB each. */
const POSTERS_KEPT = 256;

export function resultsApp({ queue }: SubAppDeps): Hono {
  const app = new Hono();
  const posters = new Map<string, Uint8Array<ArrayBuffer>>();

  /** The job's result, or the response that says why there is none. */
  async function open(c: Context, id: string): Promise<ResultHandle | Response> {
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
    return r;
  }

  app.get("/:id/poster", async (c) => {
    const id = c.req.param("id");
    let png = posters.get(id);
    if (!png) {
      const r = await open(c, id);
      if (r instanceof Response) return r;
      const bytes = await r.read(0, r.size).catch(() => null);
      if (!bytes) return errorJson(c, 410, "the result is gone", "id");
      png = await posterOf(bytes, r.info.format) as Uint8Array<ArrayBuffer>;
      posters.set(id, png);
      if (posters.size > POSTERS_KEPT) posters.delete(posters.keys().next().value!);
    }
    return c.body(png, 200, { "Content-Type": "image/png", "Cache-Control": "private, max-age=86400" });
  });

  app.get("/:id/result", async (c) => {
    const id = c.req.param("id");
    const r = await open(c, id);
    if (r instanceof Response) return r;
    const name = `zerovid-${id.slice(0, 8)}.${FILE_EXTENSIONS[r.info.format]}`;
    const headers: Record<string, string> = {
      "Content-Type": r.info.contentType,
      "Accept-Ranges": "bytes",
      "Cache-Control": "private, max-age=86400",
      "Content-Disposition": `${c.req.query("download") !== undefined ? "attachment" : "inline"}; filename="${name}"`,
    };
    const size = r.size;
    const head = c.req.method === "HEAD";
    /** Bytes [start, end) as a stream read 1 MiB at a time (a result is never held whole in memory); null when the
     * result went away (checked with the first piece, before any header is sent). */
    const body = async (start: number, end: number): Promise<ReadableStream<Uint8Array> | null> => {
      const CHUNK = 1 << 20;
      let pos = start;
      const next = () => r.read(pos, Math.min(end, pos + CHUNK)).then((b) => (pos += b.length, b));
      let first: Uint8Array;
      try {
        first = start < end ? await next() : new Uint8Array();
      } catch {
        return null;
      }
      let sent = false;
      return new ReadableStream({
        async pull(ctl) {
          if (!sent) {
            sent = true;
            if (first.length) return ctl.enqueue(first);
          }
          if (pos >= end) return ctl.close();
          ctl.enqueue(await next());
        },
      });
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(c.req.header("Range") ?? "");
    let [start, end, status] = [0, size - 1, 200];
    if (range && (range[1] || range[2])) {
      start = range[1] ? Number(range[1]) : size - Number(range[2]);
      end = range[1] && range[2] ? Number(range[2]) : size - 1;
      start = Math.max(0, start), end = Math.min(size - 1, end);
      if (start > end || start >= size) {
        return c.body(null, 416, { ...headers, "Content-Range": `bytes */${size}` });
      }
      headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
      status = 206;
    }
    // HEAD gets the headers GET would send, the real length included, without reading the file.
    headers["Content-Length"] = String(end + 1 - start);
    if (head) return c.body(null, status as 200, headers);
    const stream = await body(start, end + 1);
    if (!stream) return errorJson(c, 410, "the result is gone", "id");
    return c.body(stream, status as 200, headers);
  });

  return app;
}
