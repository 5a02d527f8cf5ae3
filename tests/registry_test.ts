// The field registry (pipeline/job/fields.ts) is the one definition of a request: every field's bounds are derived
// from it here, and the CLI (main.ts's option parsing + validation), the API (the zod schema + validation that
// POST /v1/jobs runs, and real POSTs through the Hono app) and the page (the form description of GET /v1/fields)
// must accept and refuse the same values: just inside and just outside each bound, the special values, wrong types,
// and fields of other modes.
import { join } from "node:path";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { MEDIA_DIR } from "../fixtures/paths.ts";
import { parseCommandLine, UsageError } from "../main.ts";
import { RequestError } from "../pipeline/errors.ts";
import {
  appliesTo,
  boundsOf,
  FIELD_NAMES,
  type FieldLimits,
  type FieldName,
  FIELDS,
  type FieldSpec,
  type FormField,
  formFields,
  LORA_SCALE,
} from "../pipeline/job/fields.ts";
import { type Mode, MODES, VIDEO_MODES } from "../pipeline/job/modes.ts";
import type { JobRequest } from "../pipeline/job/types.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import { DEFAULT_LIMITS, JobSchema, type Limits } from "../routes/schema.ts";
import { openServer } from "../routes/server.ts";

const CLIP = join(MEDIA_DIR, "clip_testsrc_128x96_8fps.mp4");
const VIDEO = Deno.readFileSync(CLIP);
const TMP = await Deno.makeTempDir({ prefix: "zerovid-registry-" });
globalThis.addEventListener("unload", () => Deno.removeSync(TMP, { recursive: true }));

/** Limits as wide as the registry: the API's bounds are then exactly the registry's. */
const WIDE: Limits = { ...DEFAULT_LIMITS, maxFrames: 1024, maxResolution: 2048, maxSteps: 1000, maxPrompt: 10000 };

/** A valid request of each mode, with what the probed field needs around it (t0/t1 need room below steps). */
function base(mode: Mode, field: FieldName, limits?: Partial<FieldLimits>): Record<string, unknown> {
  const r: Record<string, unknown> = { mode, prompt: "a cat", model: "demo" };
  if (mode === "depth") r.depthModel = "depth.onnx";
  if (!appliesTo(FIELDS[field], mode)) return r;
  const steps = boundsOf("steps", mode, limits).max!;
  if (field === "t0" || field === "t1") r.steps = steps;
  if (field === "t0") r.t1 = steps - 1;
  if (field === "start") r.end = -1;
  if (field === "lowThreshold") r.highThreshold = 255;
  if (field === "highThreshold") r.lowThreshold = 0;
  if (field === "width") r.height = 64;
  if (field === "height") r.width = 64;
  if (field === "smoothStrength" || field === "saliencyModel") {
    Object.assign(r, { smoothBackground: true, saliencyModel: "s.onnx" });
  }
  if (field === "smoothBackground") r.saliencyModel = "s.onnx";
  if (field === "config" || field === "controlnet") r.model = "some/model";
  return r;
}

interface Probe {
  value: unknown;
  /** What the registry says: accepted or refused. */
  ok: boolean;
  why: string;
}

/** Values just inside and just outside a field's bounds in a mode, its special value, and wrong types. */
function probes(name: FieldName, mode: Mode, limits?: Partial<FieldLimits>): Probe[] {
  const s: FieldSpec = FIELDS[name];
  const b = boundsOf(name, mode, limits);
  const out: Probe[] = [];
  switch (s.kind) {
    case "int":
    case "number": {
      const d = s.kind === "int" ? (b.multipleOf ?? 1) : 0.01;
      out.push({ value: b.min!, ok: true, why: "min" }, { value: b.max!, ok: true, why: "max" });
      out.push({ value: b.min! - d, ok: b.min! - d === b.special, why: "below min" });
      out.push({ value: b.max! + d, ok: false, why: "above max" });
      if (s.kind === "int") out.push({ value: b.min! + 0.5, ok: false, why: "not an integer" });
      if (b.multipleOf) out.push({ value: b.min! + 1, ok: false, why: `not a multiple of ${b.multipleOf}` });
      if (s.special) out.push({ value: s.special.value, ok: b.special !== undefined, why: "special value" });
      out.push({ value: "abc", ok: false, why: "text" });
      break;
    }
    case "string":
      if (b.min) out.push({ value: "", ok: false, why: "empty" });
      out.push({ value: "x".repeat(b.max!), ok: true, why: "longest" });
      out.push({ value: "x".repeat(b.max! + 1), ok: false, why: "too long" });
      out.push({ value: 5, ok: false, why: "a number" });
      break;
    case "enum":
      for (const v of s.values!) out.push({ value: v, ok: true, why: v });
      out.push({ value: "bogus", ok: false, why: "not a value" });
      break;
    case "bool":
      out.push({ value: true, ok: true, why: "true" }, { value: "yes", ok: false, why: "text" });
      break;
    case "file":
      break;
    case "loras": {
      const lora = (i: number) => ({ name: `l${i}.safetensors` });
      out.push({ value: [{ name: "a.safetensors", scale: LORA_SCALE.min }], ok: true, why: "one, lowest scale" });
      out.push({ value: Array.from({ length: s.max! }, (_, i) => lora(i)), ok: true, why: "most" });
      out.push({ value: Array.from({ length: s.max! + 1 }, (_, i) => lora(i)), ok: false, why: "too many" });
      out.push({ value: [{ name: "a.safetensors", scale: LORA_SCALE.max + 0.01 }], ok: false, why: "scale" });
      out.push({ value: [{ name: "" }], ok: false, why: "empty name" });
      out.push({ value: "a.safetensors", ok: false, why: "not a list" });
      break;
    }
    case "names": {
      const names = (n: number) => Array.from({ length: n }, (_, i) => `e${i}.safetensors`);
      out.push({ value: names(1), ok: true, why: "one" }, { value: names(s.max!), ok: true, why: "most" });
      out.push({ value: names(s.max! + 1), ok: false, why: "too many" });
      out.push({ value: [""], ok: false, why: "empty name" });
      out.push({ value: "e.safetensors", ok: false, why: "not a list" });
      break;
    }
  }
  return out;
}

/** Every JSON field of every mode: the ones of the mode are probed, the others must be refused. */
function* cases(limits?: Partial<FieldLimits>): Generator<{ mode: Mode; name: FieldName; p: Probe }> {
  for (const mode of MODES) {
    for (const name of FIELD_NAMES) {
      const s: FieldSpec = FIELDS[name];
      if (s.kind === "file") continue;
      if (!appliesTo(s, mode)) {
        const [any] = probes(name, VIDEO_MODES.includes(mode) ? "text2video" : "canny");
        yield { mode, name, p: { value: any?.value ?? "x", ok: false, why: `not a field of ${mode}` } };
        continue;
      }
      for (const p of probes(name, mode, limits)) yield { mode, name, p };
    }
  }
}

/** A refusal must be a RequestError naming the field (or a usage error naming the option). */
function refusal(e: unknown, name: FieldName, what: string): string {
  if (e instanceof UsageError) {
    const opt = "--" + ((FIELDS[name] as FieldSpec)?.flag ?? name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()));
    assert(e.message.includes(opt), `${what}: "${e.message}" should name ${opt}`);
    return e.message;
  }
  if (e instanceof RequestError) {
    assertEquals(e.field, name, `${what}: refused for another field: ${e.message}`);
    return e.message;
  }
  throw e;
}

async function cliAccepts(mode: Mode, req: Record<string, unknown>, name: FieldName, what: string) {
  const args: string[] = [];
  let out = "out.mp4";
  for (const [k, v] of Object.entries(req)) {
    if (k === "mode") continue;
    if (k === "format") { // the CLI's format is --out's extension (png: a folder of frames)
      out = v === "png" ? "frames/" : `out.${v}`;
      continue;
    }
    const f = FIELDS[k as FieldName] as FieldSpec | undefined;
    const opt = "--" + (f?.flag ?? k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()));
    if (f?.kind === "bool") args.push(v === true ? opt : `${opt}=${v}`);
    else if (f?.kind === "loras" || f?.kind === "names") {
      // One option per entry: --lora NAME[:SCALE], --embedding NAME.
      for (const e of v as (string | { name: string; scale?: number })[]) {
        const text = typeof e === "string" ? e : e.scale === undefined ? e.name : `${e.name}:${e.scale}`;
        args.push(opt, text);
      }
    } else args.push(opt, String(v));
  }
  if (VIDEO_MODES.includes(mode)) args.push("--video", CLIP);
  args.push("--out", join(TMP, out));
  try {
    validateRequest((await parseCommandLine(mode, args)).req);
    return true;
  } catch (e) {
    refusal(e, name === "format" ? "out" as FieldName : name, `CLI ${what}`);
    return false;
  }
}

function apiAccepts(schema: JobSchema, mode: Mode, req: Record<string, unknown>, name: FieldName, what: string) {
  try {
    const body = schema.parse(req);
    const video = VIDEO_MODES.includes(mode) ? { video: VIDEO } : {};
    validateRequest({ ...body, ...video } as JobRequest, undefined, schema.limits);
    return true;
  } catch (e) {
    refusal(e, name, `API ${what}`);
    return false;
  }
}

/** The page's input: an HTML number input's constraints (min, max, step from min), or one of a select's values. */
function pageAccepts(form: FormField[], name: FieldName, v: unknown): boolean {
  const f = form.find((x) => x.name === name);
  if (!f) return false;
  if (f.kind === "enum") return f.values!.includes(v as string);
  if (f.kind === "bool") return typeof v === "boolean";
  if (f.kind === "string") return typeof v === "string" && v.length >= (f.min ?? 0) && v.length <= f.max!;
  if (f.kind === "loras" || f.kind === "names") {
    // Pickers of listed files (non-empty names), at most maxItems; a LoRA's scale input has min and max.
    if (!Array.isArray(v) || v.length > f.maxItems!) return false;
    return v.every((e) => {
      const name = f.kind === "loras" ? e?.name : e;
      if (typeof name !== "string" || name === "") return false;
      return f.kind === "names" || e.scale === undefined || (e.scale >= f.min! && e.scale <= f.max!);
    });
  }
  if (typeof v !== "number") return false; // a number input holds numbers only
  if (v === f.special) return true;
  if (v < f.min! || v > f.max!) return false;
  return f.step === "any" || Number.isInteger((v - f.min!) / (f.step as number));
}

Deno.test("registry: the CLI and the API accept and refuse the same values, as the registry says", async () => {
  const schema = new JobSchema(WIDE);
  let n = 0;
  for (const { mode, name, p } of cases()) {
    const what = `${mode} ${name}=${JSON.stringify(p.value)?.slice(0, 20)} (${p.why})`;
    const req = { ...base(mode, name), [name]: p.value };
    assertEquals(apiAccepts(schema, mode, req, name, what), p.ok, `API: ${what}`);
    n++;
    if (name === "videoName") continue; // the CLI takes the name of the --video file
    // A list field's option gives one entry each: the CLI cannot write a value that is not a list.
    const list = FIELDS[name].kind === "loras" || FIELDS[name].kind === "names";
    if (list && !Array.isArray(p.value)) continue;
    // The CLI passes every value as text: a number for a string field is just text there.
    const cliWant = FIELDS[name].kind === "string" && typeof p.value === "number" && appliesTo(FIELDS[name], mode)
      ? true
      : p.ok;
    assertEquals(await cliAccepts(mode, req, name, what), cliWant, `CLI: ${what}`);
  }
  assert(n > 300, `only ${n} probes`);
});

Deno.test("registry: the page's form fields accept what the API accepts, under the server's limits", () => {
  for (const limits of [WIDE, DEFAULT_LIMITS]) {
    const schema = new JobSchema(limits);
    const forms = formFields(limits);
    for (const mode of MODES) {
      const labelled = FIELD_NAMES.filter((n) => appliesTo(FIELDS[n], mode) && (FIELDS[n] as FieldSpec).label);
      assertEquals(forms[mode].map((f) => f.name), labelled, `${mode}: the form's fields`);
    }
    for (const { mode, name, p } of cases(limits)) {
      if (!(FIELDS[name] as FieldSpec).label || (FIELDS[name].kind === "string" && typeof p.value !== "string")) {
        continue; // not on the page's generic form (models, prompt: their own inputs)
      }
      const what = `${mode} ${name}=${JSON.stringify(p.value)?.slice(0, 20)} (${p.why})`;
      const req = { ...base(mode, name, limits), [name]: p.value };
      assertEquals(pageAccepts(forms[mode], name, p.value), p.ok, `page: ${what}`);
      assertEquals(apiAccepts(schema, mode, req, name, what), p.ok, `API: ${what}`);
    }
    // Defaults shown on the page are values the API accepts.
    for (const mode of MODES) {
      for (const f of forms[mode]) {
        for (const d of [f.default, f.demoDefault]) {
          if (d === undefined || d === "") continue;
          assert(pageAccepts(forms[mode], f.name, d), `${mode} ${f.name}: default ${d} outside the form's range`);
        }
      }
    }
  }
});

Deno.test("registry: POST /v1/jobs answers as the registry says (text2video, and the video modes' fps -1)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-registry-server-" });
  const srv = await openServer({
    runner: () => Promise.reject(new Error("no job runs in this test")),
    dataDir: dir,
    modelRoots: [],
    limits: { ...WIDE, queueSize: 100000 },
    validate: (r, limits, video) => validateRequest(r, { f16: false }, limits, video),
    autostart: false,
    log: () => {},
  });
  try {
    const post = async (body: Record<string, unknown>) => {
      const res = await srv.app.fetch(
        new Request("http://localhost/v1/jobs", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        }),
      );
      return { status: res.status, body: await res.json() as { field?: string; error?: string } };
    };
    for (const { mode, name, p } of cases()) {
      if (mode !== "text2video" || name === "config" || name === "controlnet" || name === "model") continue;
      // Smoothing needs a saliency model under the roots, which the demo server has not: the schema test covers it.
      if (name === "saliencyModel" || name === "smoothBackground" || name === "smoothStrength") continue;
      // LoRAs and embeddings are files under the roots too (tests/server_test.ts posts real ones).
      if ((name === "loras" || name === "embeddings") && p.ok) continue;
      const what = `${name}=${JSON.stringify(p.value)?.slice(0, 20)} (${p.why})`;
      const r = await post({ ...base(mode, name), [name]: p.value });
      assertEquals(r.status, p.ok ? 202 : 400, `${what}: ${JSON.stringify(r.body)}`);
      if (!p.ok) assertEquals(r.body.field, name, `${what}: ${r.body.error}`);
    }
    // The API takes the source's frame rate (-1) for the video modes, as the CLI does.
    const form = new FormData();
    for (const [k, v] of Object.entries({ mode: "pose", prompt: "a dancer", fps: "-1", videoLength: "2" })) {
      form.set(k, v);
    }
    form.set("video", new File([VIDEO], "clip.mp4", { type: "video/mp4" }));
    const res = await srv.app.fetch(new Request("http://localhost/v1/jobs", { method: "POST", body: form }));
    assertEquals(res.status, 202, await res.clone().text());
    const { id } = await res.json();
    assertEquals(((await srv.queue.get(id))!.request as JobRequest).fps, -1);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});
