// How POST /v1/jobs takes its body, so that no request can make the server hold more memory than it allows:
// - A full queue is refused (429) before a byte of the body is read.
// - Uploads (multipart) take one of a few slots; with none free the request gets 429 at once, unread.
// - The body is read as it arrives and counted: past its limit (JSON/urlencoded: 256 KiB, uploads: --max-upload-mb
//   plus room for the form's text fields) reading stops and the answer is 413; a Content-Length over the limit is
//   refused before reading.
// - An upload is parsed as it arrives (multipart.ts): the video goes straight to a temporary file, never into
//   memory; the route finds the form's fields, the video as a path, in `c.var.form` (urlencoded forms too).
// - A body that stops arriving for `idleMs` gets 408 (a slow client, or one that sends a length and then nothing).
// Hono's bodyLimit buffers a chunked body in memory up to the limit, and its form parsing needs the whole body in
// memory, which is why this does its own counting and parsing.
import type { Context, MiddlewareHandler } from "hono";
import { join } from "node:path";
import type { JobQueue } from "../queue/types.ts";
import { errorJson } from "./context.ts";
import { boundaryOf, type FormFields, MultipartError, MultipartParser } from "./multipart.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** A form submission's fields (multipart or urlencoded); a file field's value is where its bytes are. */
    form: FormFields;
  }
}

/** The file fields of an upload that are kept (any other file part is read and dropped). */
const FILE_FIELDS = ["video"];

export interface IntakeOptions {
  queue: JobQueue;
  /** Largest upload in bytes (the file; the form's text fields get 64 KiB more). */
  maxUploadBytes: number;
  /** Uploads read at the same time; more get 429. Default 2. */
  uploadSlots?: number;
  /** Longest wait for the next piece of a body before 408. Default 30 s. */
  idleMs?: number;
  /** Largest JSON / urlencoded body. Default 256 KiB (no field needs more; the prompt limit is far below). */
  maxFormBytes?: number;
}

const FORM_ROOM = 64 * 1024;

class BodyError extends Error {
  constructor(readonly status: 400 | 408 | 413, message: string) {
    super(message);
  }
}

/**
 * Reads `body` chunk by chunk into `sink`, at most `limit` bytes, each chunk within `idleMs`; stops reading (and
 * cancels the stream) at the first violation.
 */
async function pump(
  body: ReadableStream<Uint8Array>,
  limit: number,
  idleMs: number,
  sink: (chunk: Uint8Array) => Promise<void> | void,
  what: string,
): Promise<number> {
  const reader = body.getReader();
  let size = 0;
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const next = await Promise.race([
        reader.read().catch(() => {
          throw new BodyError(400, `the request body was cut off after ${size} bytes`);
        }),
        new Promise<"idle">((r) => timer = setTimeout(() => r("idle"), idleMs)),
      ]).finally(() => clearTimeout(timer));
      if (next === "idle") {
        throw new BodyError(
          408,
          `the request body stopped arriving (nothing for ${idleMs / 1000} s after ${size} bytes)`,
        );
      }
      if (next.done) return size;
      size += next.value.length;
      if (size > limit) throw new BodyError(413, `${what} (at ${size} bytes, still coming)`);
      await sink(next.value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  } finally {
    reader.releaseLock();
  }
}

function mediaType(c: Context): string {
  return (c.req.header("Content-Type") ?? "").split(";")[0].trim().toLowerCase();
}

/** The middleware: queue room, upload slot, counted and timed body read; the route then parses the body as usual. */
export function bodyIntake(o: IntakeOptions): MiddlewareHandler {
  const slots = o.uploadSlots ?? 2;
  const idleMs = o.idleMs ?? 30_000;
  const formLimit = o.maxFormBytes ?? 256 * 1024;
  const uploadLimit = o.maxUploadBytes + FORM_ROOM;
  const mb = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
  let busy = 0;

  return async (c, next) => {
    const counts = await o.queue.counts();
    if (counts.queued >= counts.max) {
      return errorJson(c, 429, `the queue is full (${counts.queued} jobs waiting); try again later`, null, {
        "Retry-After": "30",
      });
    }
    const raw = c.req.raw;
    if (!raw.body) return await next();
    const upload = mediaType(c) === "multipart/form-data";
    const limit = upload ? uploadLimit : formLimit;
    const tooBig = upload
      ? `the request is larger than the upload limit of ${mb(o.maxUploadBytes)}`
      : `the request body is larger than ${formLimit / 1024} KiB (send a video as multipart/form-data)`;
    const field = upload ? "video" : "body";
    const declared = Number(raw.headers.get("Content-Length") ?? NaN);
    if (declared > limit) return errorJson(c, 413, tooBig, field, { Connection: "close" });

    if (!upload) {
      const parts: Uint8Array[] = [];
      let bytes: Uint8Array;
      try {
        const n = await pump(raw.body, limit, idleMs, (ch) => void parts.push(ch), tooBig);
        bytes = new Uint8Array(n);
        let off = 0;
        for (const p of parts) bytes.set(p, (off += p.length) - p.length);
      } catch (e) {
        if (e instanceof BodyError) return errorJson(c, e.status, e.message, field, { Connection: "close" });
        throw e;
      }
      if (mediaType(c) === "application/x-www-form-urlencoded") {
        const fields: FormFields = Object.create(null);
        for (const [k, v] of new URLSearchParams(new TextDecoder().decode(bytes))) {
          fields[k] = k in fields ? [fields[k], v].flat() : v;
        }
        c.set("form", fields);
      } else {
        c.req.raw = new Request(raw, { body: bytes as Uint8Array<ArrayBuffer> });
      }
      return await next();
    }

    if (busy >= slots) {
      return errorJson(c, 429, `${slots} uploads are being received; try again in a few seconds`, null, {
        "Retry-After": "5",
        Connection: "close",
      });
    }
    busy++;
    let dir: string | null = null;
    let parser: MultipartParser | null = null;
    try {
      try {
        const boundary = boundaryOf(c.req.header("Content-Type") ?? "");
        const tmp = dir = await Deno.makeTempDir({ prefix: "zerovid-upload-" });
        const form = parser = new MultipartParser(boundary, {
          files: FILE_FIELDS,
          maxTextBytes: FORM_ROOM,
          openFile: async (name) => {
            const path = join(tmp, name);
            return { path, file: await Deno.open(path, { write: true, createNew: true }) };
          },
        });
        await pump(raw.body, limit, idleMs, (ch) => form.push(ch), tooBig);
        c.set("form", form.end());
      } catch (e) {
        parser?.close();
        if (e instanceof BodyError) return errorJson(c, e.status, e.message, field, { Connection: "close" });
        if (e instanceof MultipartError) return errorJson(c, e.status, e.message, "body", { Connection: "close" });
        throw e;
      }
      await next();
    } finally {
      busy--;
      if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  };
}
