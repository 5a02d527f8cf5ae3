// The streaming multipart/form-data parser (routes/app/multipart.ts): whatever the chunking, it gives the fields a
// browser's FormData encodes (as Deno's own encoder writes them) and the file byte for byte on disk; bad bodies are
// refused with the status and reason intake.ts answers.
import { assert, assertEquals, assertRejects, assertThrows } from "../fixtures/asserts.ts";
import { join } from "node:path";
import {
  boundaryOf,
  type FormFields,
  MultipartError,
  MultipartParser,
  type UploadedFile,
} from "../routes/app/multipart.ts";

/** Deterministic bytes (an LCG), never all zeros. */
function bytesOf(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}

/** A body as Deno's FormData encoder writes it, with its Content-Type. */
async function encode(form: FormData): Promise<{ body: Uint8Array; type: string }> {
  const r = new Response(form);
  return { body: new Uint8Array(await r.arrayBuffer()), type: r.headers.get("Content-Type")! };
}

let opened = 0;

/** Parses `body` pushed in the chunk sizes `sizes` cycles through; files land in `dir`. */
async function parse(
  body: Uint8Array,
  type: string,
  dir: string,
  sizes: number[] = [body.length],
  maxTextBytes = 64 * 1024,
): Promise<FormFields> {
  const p = new MultipartParser(boundaryOf(type), {
    files: ["video"],
    maxTextBytes,
    openFile: async (field) => {
      const path = join(dir, `${field}-${opened++}`);
      return { path, file: await Deno.open(path, { write: true, createNew: true }) };
    },
  });
  try {
    for (let off = 0, i = 0; off < body.length; i++) {
      const len = Math.max(1, sizes[i % sizes.length]);
      await p.push(body.slice(off, off + len));
      off += len;
    }
    return p.end();
  } finally {
    p.close();
  }
}

async function rejects(f: () => Promise<unknown>, status: number, re: RegExp): Promise<void> {
  const err = await assertRejects(f, MultipartError);
  assertEquals(err.status, status, err.message);
  assert(re.test(err.message), err.message);
}

Deno.test("multipart: fields and the file come out exactly, whatever the chunking", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-multipart-" });
  try {
    // A file that holds the boundary's prefix and CRLF-dashes, to tempt a naive search.
    const file = bytesOf(20_000, 5);
    const fake = new TextEncoder().encode("\r\n--\r\n------formdata-\r\n--");
    file.set(fake, 1000);
    file.set(fake, file.length - fake.length);
    const form = new FormData();
    form.set("mode", "canny");
    form.set("prompt", 'a dog — 🐕 in "quotes"\r\nsecond line');
    form.set("video", new File([file], 'my "clip" ñ.mp4', { type: "video/mp4" }));
    form.append("tag", "a");
    form.append("tag", "b");
    form.set("empty", "");
    const { body, type } = await encode(form);
    for (const sizes of [[body.length], [1], [7, 1, 64], [4096], [65536, 3], [37, 38, 39]]) {
      for (const f of Deno.readDirSync(dir)) Deno.removeSync(join(dir, f.name));
      const fields = await parse(body, type, dir, sizes);
      assertEquals(fields.mode, "canny");
      assertEquals(fields.prompt, form.get("prompt") as string);
      assertEquals(fields.tag, ["a", "b"]);
      assertEquals(fields.empty, "");
      const v = fields.video as UploadedFile;
      // FormData writes a quote in a file name as %22 (as browsers do); the name is kept as sent.
      assertEquals([v.field, v.name, v.type, v.size], ["video", "my %22clip%22 ñ.mp4", "video/mp4", file.length]);
      assertEquals(await Deno.readFile(v.path!), file, `chunks ${sizes}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("multipart: other file fields are counted, not kept; an empty file input is no file; one video kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-multipart-" });
  try {
    const form = new FormData();
    form.set("mode", "text2video");
    form.set("poster", new File([bytesOf(5000, 1)], "p.png"));
    form.append("video", new File([bytesOf(100, 2)], "a.mp4"));
    form.append("video", new File([bytesOf(200, 3)], "b.mp4"));
    const { body, type } = await encode(form);
    const fields = await parse(body, type, dir, [333]);
    const poster = fields.poster as UploadedFile;
    assertEquals([poster.size, poster.path], [5000, null]);
    const videos = fields.video as UploadedFile[];
    assertEquals(videos.map((v) => [v.name, v.size, v.path !== null]), [["a.mp4", 100, true], ["b.mp4", 200, false]]);
    assertEquals([...Deno.readDirSync(dir)].length, 1, "only the first video is written");

    // A browser's empty <input type=file>: filename="" and no content.
    const empty = new FormData();
    empty.set("mode", "text2video");
    empty.set("video", new File([], ""));
    const e = await encode(empty);
    assertEquals(Object.keys(await parse(e.body, e.type, dir)), ["mode"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("multipart: bad bodies are refused with a status and a reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-multipart-" });
  try {
    const form = new FormData();
    form.set("prompt", "x".repeat(70 * 1024));
    form.set("video", new File([bytesOf(1000, 9)], "v.mp4"));
    const { body, type } = await encode(form);
    await rejects(() => parse(body, type, dir, [4096], 64 * 1024), 413, /text fields are larger than 64 KiB/);
    const small = new FormData();
    small.set("prompt", "p");
    small.set("video", new File([bytesOf(1000, 9)], "v.mp4"));
    const ok = await encode(small);
    await rejects(() => parse(ok.body.slice(0, ok.body.length - 10), ok.type, dir), 400, /ended before its closing/);
    await rejects(() => parse(new TextEncoder().encode("no parts here"), ok.type, dir), 400, /holds no part/);
    const b = boundaryOf(ok.type);
    const noName = new TextEncoder().encode(`--${b}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--${b}--\r\n`);
    await rejects(() => parse(noName, ok.type, dir), 400, /no field name/);
    const longHead = new TextEncoder().encode(`--${b}\r\nX-Pad: ${"y".repeat(20_000)}`);
    await rejects(() => parse(longHead, ok.type, dir, [1000]), 400, /headers are longer/);
    assertEquals(assertThrows(() => boundaryOf("multipart/form-data"), MultipartError, "boundary").status, 400);
    // curl's way of quoting a file name: backslash escapes; and RFC 5987's filename*.
    const curl = new TextEncoder().encode(
      `preamble\r\n--${b}\r\nContent-Disposition: form-data; name="video"; filename="a\\"b.mp4"\r\n\r\nxyz` +
        `\r\n--${b}\r\ncontent-disposition: form-data; name=note; filename*=UTF-8''caf%C3%A9.txt\r\n\r\n\r\n--${b}--`,
    );
    const got = await parse(curl, ok.type, dir, [5]);
    assertEquals([(got.video as UploadedFile).name, (got.video as UploadedFile).size], ['a"b.mp4', 3]);
    assertEquals((got.note as UploadedFile).name, "café.txt");
    assertEquals(boundaryOf('multipart/form-data; boundary="a b"'), "a b");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
