// multipart/form-data (RFC 7578) parsed as it arrives, so that an upload never sits in memory whole: the parts
// named by `files` go straight to a file on disk, every other part is a text field kept in memory up to a small
// limit. Hono's parseBody (like Request.formData) needs the whole body in memory first, then copies the file part
// again; with 60 MB uploads that cost ~3x their size in resident memory per request.
//
// The body is one stream of bytes: a preamble, then parts each introduced by CRLF "--" boundary, each with
// headers, a blank line and its content, and the last boundary followed by "--". The parser keeps at most one
// boundary's length of content back (it may be the start of a delimiter) and hands the rest on at once.

/** A file part: where its bytes went (`path`, null when they were not kept), its name and size. */
export interface UploadedFile {
  field: string;
  /** The file name the client gave (may be ""). */
  name: string;
  /** The part's Content-Type, or "". */
  type: string;
  size: number;
  path: string | null;
}

export type FormValue = string | UploadedFile;
/** Field name -> value; a name given more than once holds all its values in order. */
export type FormFields = Record<string, FormValue | FormValue[]>;

export class MultipartError extends Error {
  constructor(readonly status: 400 | 413, message: string) {
    super(message);
  }
}

export interface MultipartOptions {
  /** Fields whose file parts are kept, each in a new file from `openFile`; other file parts are read and dropped. */
  files: string[];
  /** Opens the file for a kept part (called once per such part, when its first header is complete). */
  openFile: (field: string) => Promise<{ path: string; file: Deno.FsFile }>;
  /** Largest total of the text fields' bytes (413 past it). */
  maxTextBytes: number;
}

/** The boundary of a multipart/form-data Content-Type; throws MultipartError when missing or malformed. */
export function boundaryOf(contentType: string): string {
  const m = /;\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType);
  if (!m) throw new MultipartError(400, "multipart/form-data without a valid boundary parameter in its Content-Type");
  return m[1] ?? m[2];
}

const CRLF = new Uint8Array([13, 10]);
const HEADER_END = new Uint8Array([13, 10, 13, 10]);
const MAX_HEADER_BYTES = 16 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: false });

/** First index of `needle` in `hay` at or after `from`, or -1. */
function indexOf(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0], last = hay.length - needle.length;
  for (let i = hay.indexOf(first, from); i !== -1 && i <= last; i = hay.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** Content-Disposition parameters (name, filename, filename*), unquoted. */
function dispositionParams(value: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of value.matchAll(/;\s*([\w*.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g)) {
    const key = m[1].toLowerCase();
    let v = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3].trim();
    if (key === "filename*") {
      // RFC 5987: charset'language'percent-encoded
      const ext = /^[\w-]*'[\w-]*'(.*)$/.exec(v);
      try {
        v = decodeURIComponent(ext ? ext[1] : v);
      } catch { /* keep it as sent */ }
    }
    out.set(key, v);
  }
  return out;
}

interface Part {
  field: string;
  file: UploadedFile | null;
  sink: Deno.FsFile | null;
  text: Uint8Array[];
}

/** Push the body's chunks in order, then `end()` for the fields. `close()` releases an open file after an error. */
export class MultipartParser {
  private delimiter: Uint8Array;
  /** Bytes received but not yet consumed. The body is read as if it began with CRLF, so the first boundary is
   *  found by the same search as the others. */
  private buf: Uint8Array = CRLF;
  private state: "preamble" | "after-boundary" | "headers" | "body" | "done" = "preamble";
  private part: Part | null = null;
  private textBytes = 0;
  private readonly fields: FormFields = Object.create(null);

  constructor(boundary: string, private o: MultipartOptions) {
    this.delimiter = new TextEncoder().encode(`\r\n--${boundary}`);
  }

  async push(chunk: Uint8Array): Promise<void> {
    if (this.state === "done") return; // the epilogue is ignored
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf);
    joined.set(chunk, this.buf.length);
    this.buf = joined;
    await this.consume();
  }

  /** The fields, once the closing boundary has been seen; a body that stopped before it is a 400. */
  end(): FormFields {
    if (this.state !== "done") {
      this.close();
      throw new MultipartError(
        400,
        this.state === "preamble"
          ? "the multipart body holds no part (its boundary never appears)"
          : "the multipart body ended before its closing boundary (cut off?)",
      );
    }
    return this.fields;
  }

  /** Closes a file still being written (after an error; end() closes each file when its part ends). */
  close(): void {
    try {
      this.part?.sink?.close();
    } catch { /* closed */ }
    if (this.part) this.part.sink = null;
  }

  private async consume(): Promise<void> {
    for (;;) {
      const buf = this.buf;
      if (this.state === "preamble" || this.state === "body") {
        const at = indexOf(buf, this.delimiter);
        // Without a delimiter, all but its length - 1 last bytes are content for sure.
        const safe = at >= 0 ? at : Math.max(0, buf.length - this.delimiter.length + 1);
        if (this.state === "body" && safe > 0) await this.content(buf.subarray(0, safe));
        if (at < 0) {
          this.buf = buf.slice(safe);
          return;
        }
        if (this.state === "body") this.endPart();
        this.buf = buf.subarray(at + this.delimiter.length);
        this.state = "after-boundary";
      } else if (this.state === "after-boundary") {
        // "--" ends the body; otherwise optional whitespace, then CRLF and the next part's headers.
        if (buf.length < 2) return;
        if (buf[0] === 45 && buf[1] === 45) {
          this.state = "done";
          this.buf = new Uint8Array(0);
          return;
        }
        let i = 0;
        while (i < buf.length && (buf[i] === 32 || buf[i] === 9)) i++;
        if (buf.length < i + 2) return;
        if (buf[i] !== 13 || buf[i + 1] !== 10) {
          throw new MultipartError(400, "malformed multipart body: a boundary is not followed by a line break");
        }
        this.buf = buf.subarray(i + 2);
        this.state = "headers";
      } else if (this.state === "headers") {
        // A part without headers starts with the blank line at once.
        const blank = buf[0] === 13 && buf[1] === 10 ? -2 : indexOf(buf, HEADER_END);
        if (blank === -1) {
          if (buf.length > MAX_HEADER_BYTES) {
            throw new MultipartError(400, `a multipart part's headers are longer than ${MAX_HEADER_BYTES} bytes`);
          }
          return;
        }
        await this.startPart(blank < 0 ? "" : utf8.decode(buf.subarray(0, blank)));
        this.buf = buf.subarray(blank < 0 ? 2 : blank + 4);
        this.state = "body";
      } else {
        return;
      }
    }
  }

  private async startPart(head: string): Promise<void> {
    let disposition = "", type = "";
    for (const line of head.split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      const key = line.slice(0, colon).trim().toLowerCase(), value = line.slice(colon + 1).trim();
      if (key === "content-disposition") disposition = value;
      else if (key === "content-type") type = value;
    }
    if (!/^form-data\b/i.test(disposition)) {
      throw new MultipartError(400, "malformed multipart body: a part has no Content-Disposition: form-data");
    }
    const params = dispositionParams(disposition);
    const field = params.get("name");
    if (field === undefined) throw new MultipartError(400, "malformed multipart body: a part has no field name");
    const filename = params.get("filename*") ?? params.get("filename");
    if (filename === undefined) {
      this.part = { field, file: null, sink: null, text: [] };
      return;
    }
    const file: UploadedFile = { field, name: filename, type, size: 0, path: null };
    let sink: Deno.FsFile | null = null;
    if (this.o.files.includes(field) && !this.kept(field)) {
      const opened = await this.o.openFile(field);
      file.path = opened.path;
      sink = opened.file;
    }
    this.part = { field, file, sink, text: [] };
  }

  /** Whether a file for `field` was kept already (a second one is counted, not stored: the form is refused). */
  private kept(field: string): boolean {
    const v = this.fields[field];
    return [v].flat().some((x) => typeof x === "object" && x.path !== null);
  }

  private async content(bytes: Uint8Array): Promise<void> {
    const p = this.part!;
    if (p.file) {
      p.file.size += bytes.length;
      if (p.sink) { for (let off = 0; off < bytes.length;) off += await p.sink.write(bytes.subarray(off)); }
      return;
    }
    this.textBytes += bytes.length;
    if (this.textBytes > this.o.maxTextBytes) {
      throw new MultipartError(413, `the form's text fields are larger than ${this.o.maxTextBytes / 1024} KiB`);
    }
    p.text.push(bytes.slice());
  }

  private endPart(): void {
    const p = this.part!;
    this.close();
    this.part = null;
    let value: FormValue;
    if (p.file) {
      // An empty file input: browsers send filename="" with no content; it means no file.
      if (p.file.name === "" && p.file.size === 0) return;
      value = p.file;
    } else {
      const all = new Uint8Array(p.text.reduce((n, t) => n + t.length, 0));
      let off = 0;
      for (const t of p.text) all.set(t, (off += t.length) - t.length);
      value = utf8.decode(all);
    }
    const had = this.fields[p.field];
    this.fields[p.field] = had === undefined ? value : [had, value].flat();
  }
}
