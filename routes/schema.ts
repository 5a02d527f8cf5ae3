// The HTTP request schema (zod), built from the server's limits, and the OpenAPI document that publishes it.
// One table describes every JobRequest field the API accepts; it yields the zod schema, the error messages (field,
// what was expected, what came), the coercion of multipart form strings, and the OpenAPI/JSON schema.
import { z } from "zod";
import { MODES, RequestError } from "../pipeline/job_types.ts";

export interface Limits {
  /** Largest upload (the whole request body), MiB. */
  maxUploadMb: number;
  /** Most output frames (videoLength; input videos are cut to this many). */
  maxFrames: number;
  /** Largest width, height or resolution (pixels). */
  maxResolution: number;
  /** Longest prompt / negative prompt (characters). */
  maxPrompt: number;
  /** Most denoising steps. */
  maxSteps: number;
  /** Most jobs waiting. */
  queueSize: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxUploadMb: 64,
  maxFrames: 64,
  maxResolution: 1024,
  maxPrompt: 1000,
  maxSteps: 150,
  queueSize: 20,
};

type FieldType = "string" | "int" | "number" | "bool" | "enum";

export interface FieldDef {
  type: FieldType;
  min?: number;
  max?: number;
  /** Integers only: must be a multiple of this. */
  multipleOf?: number;
  values?: readonly string[];
  required?: boolean;
  description: string;
}

/** Every JSON / form field of POST /v1/jobs except the `video` file. */
export function fieldTable(l: Limits): Record<string, FieldDef> {
  const name = (description: string): FieldDef => ({ type: "string", min: 1, max: 512, description });
  return {
    mode: { type: "enum", values: MODES, required: true, description: "What to make (one tab of the page)." },
    prompt: {
      type: "string",
      min: 1,
      max: l.maxPrompt,
      required: true,
      description: "The text to generate from (pix2pix: the edit instruction).",
    },
    negativePrompt: { type: "string", min: 0, max: l.maxPrompt, description: "What to avoid." },
    model: name("Base model name from GET /v1/models (default: the first one serving the mode)."),
    config: name("For a single-file model: a diffusers folder name whose configs and tokenizer describe it."),
    controlnet: name("ControlNet name for pose/canny/depth (default: one whose name mentions the mode)."),
    poseModel: name("Pose mode: an ONNX pose model name, to run on a raw video (default: the video is a skeleton)."),
    depthModel: name("Depth mode: an ONNX MiDaS/DPT model name (default: the first *depth*/*midas*/*dpt* .onnx)."),
    saliencyModel: name("Text-to-video background smoothing: a salient-object ONNX model name."),
    videoName: { type: "string", min: 1, max: 255, description: "Name of the input video (for messages)." },
    videoLength: {
      type: "int",
      min: 1,
      max: l.maxFrames,
      description: "Frames to make (text2video) or to keep from the input video.",
    },
    width: { type: "int", min: 64, max: l.maxResolution, multipleOf: 8, description: "Frame width (multiple of 8)." },
    height: {
      type: "int",
      min: 64,
      max: l.maxResolution,
      multipleOf: 8,
      description: "Frame height (multiple of 8).",
    },
    resolution: {
      type: "int",
      min: 64,
      max: l.maxResolution,
      description: "Video modes: longer side of the frames, rounded to multiples of 64.",
    },
    steps: { type: "int", min: 1, max: l.maxSteps, description: "Denoising steps." },
    guidanceScale: { type: "number", min: 0, max: 30, description: "Classifier-free guidance scale." },
    imageGuidanceScale: { type: "number", min: 0, max: 10, description: "pix2pix: how closely to follow the video." },
    controlScale: { type: "number", min: 0, max: 5, description: "ControlNet conditioning scale." },
    seed: { type: "int", min: 0, max: 4294967295, description: "Random seed (default: random, reported back)." },
    t0: { type: "int", min: 0, max: 999, description: "text2video: DDIM step index t0 (< t1 < steps)." },
    t1: { type: "int", min: 0, max: 999, description: "text2video: DDIM step index t1." },
    motionX: { type: "number", min: -100, max: 100, description: "text2video: global motion, x (δx)." },
    motionY: { type: "number", min: -100, max: 100, description: "text2video: global motion, y (δy)." },
    chunkSize: {
      type: "int",
      min: 2,
      max: Math.max(2, l.maxFrames),
      description: "Frames per model call (bounds GPU memory).",
    },
    fps: {
      type: "number",
      min: 0.1,
      max: 60,
      description: "Output fps (text2video) or the input video's sampling fps (other modes).",
    },
    start: { type: "number", min: 0, max: 86400, description: "Video modes: first second of the input used." },
    end: { type: "number", min: -1, max: 86400, description: "Video modes: last second used (-1: to the end)." },
    precision: { type: "enum", values: ["f32", "f16"], description: "Storage precision (default: f16 if supported)." },
    format: { type: "enum", values: ["mp4", "gif", "webm"], description: "Output file format." },
    lowThreshold: { type: "number", min: 0, max: 255, description: "canny: low threshold." },
    highThreshold: { type: "number", min: 0, max: 255, description: "canny: high threshold." },
    smoothBackground: { type: "bool", description: "text2video: background smoothing (needs saliencyModel)." },
    smoothStrength: { type: "number", min: 0, max: 1, description: "text2video: background smoothing strength." },
  };
}

function expected(d: FieldDef): string {
  switch (d.type) {
    case "enum":
      return `one of ${d.values!.join(", ")}`;
    case "bool":
      return "true or false";
    case "string":
      return d.min ? `a non-empty string of at most ${d.max} characters` : `a string of at most ${d.max} characters`;
    default: {
      const what = d.type === "int"
        ? (d.multipleOf ? `an integer multiple of ${d.multipleOf}` : "an integer")
        : "a number";
      return `${what} in [${d.min}, ${d.max}]`;
    }
  }
}

function shown(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (typeof v === "number" || typeof v === "boolean" || v === null) return String(v);
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "an object" : typeof v;
}

function zodField(d: FieldDef): z.ZodType {
  let t: z.ZodType;
  switch (d.type) {
    case "enum":
      t = z.enum(d.values as [string, ...string[]]);
      break;
    case "bool":
      t = z.boolean();
      break;
    case "string":
      t = z.string().min(d.min ?? 0).max(d.max ?? 100000);
      break;
    case "int": {
      let n = z.number().int().min(d.min!).max(d.max!);
      if (d.multipleOf) n = n.multipleOf(d.multipleOf);
      t = n;
      break;
    }
    case "number":
      t = z.number().min(d.min!).max(d.max!);
      break;
  }
  t = t.describe(d.description);
  return d.required ? t : t.optional();
}

export type JobBody = Record<string, string | number | boolean | undefined> & { mode: string; prompt: string };

export class JobSchema {
  readonly fields: Record<string, FieldDef>;
  readonly zod: z.ZodType<JobBody>;

  constructor(readonly limits: Limits) {
    this.fields = fieldTable(limits);
    const shape: Record<string, z.ZodType> = {};
    for (const [k, d] of Object.entries(this.fields)) shape[k] = zodField(d);
    this.zod = z.strictObject(shape) as unknown as z.ZodType<JobBody>;
  }

  /** Validates a decoded body; throws RequestError naming the first bad field. */
  parse(value: unknown): JobBody {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new RequestError("body", `expected a JSON object with the job's fields, got ${shown(value)}`);
    }
    const obj: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) obj[k] = v;
    if ("video" in obj) {
      throw new RequestError("video", "send the video as a file in a multipart/form-data request (field video)");
    }
    const r = this.zod.safeParse(obj);
    if (r.success) return r.data;
    const issue = r.error.issues[0];
    if (issue.code === "unrecognized_keys") {
      const key = issue.keys[0];
      throw new RequestError(key, `unknown field (the fields are: ${Object.keys(this.fields).join(", ")})`);
    }
    const field = String(issue.path[0] ?? "body");
    const def = this.fields[field];
    if (!def) throw new RequestError(field, issue.message);
    if (obj[field] === undefined) throw new RequestError(field, `is required: ${expected(def)}`);
    throw new RequestError(field, `expected ${expected(def)}, got ${shown(obj[field])}`);
  }

  /**
   * Multipart/urlencoded form values -> typed values (numbers and booleans from their text; empty fields are
   * omitted, as a form sends every input). Files other than `video`, and repeated fields, are refused.
   */
  fromForm(form: Record<string, unknown>): { body: Record<string, unknown>; video: File | null } {
    const body: Record<string, unknown> = {};
    let video: File | null = null;
    for (const [k, v] of Object.entries(form)) {
      if (Array.isArray(v)) throw new RequestError(k, "given more than once");
      if (k === "video") {
        if (typeof v === "string") {
          if (v === "") continue;
          throw new RequestError("video", "expected a file upload (multipart/form-data), got text");
        }
        video = v as File;
        continue;
      }
      if (typeof v !== "string") throw new RequestError(k, "expected a text field, got a file");
      const d = this.fields[k];
      if (!d) {
        body[k] = v; // parse() names it as unknown
        continue;
      }
      const s = v.trim();
      if (s === "" && d.type !== "string") continue;
      if (s === "" && !d.required && d.min) continue;
      if (d.type === "int" || d.type === "number") {
        const n = Number(s);
        body[k] = Number.isFinite(n) ? n : v;
      } else if (d.type === "bool") {
        body[k] = /^(true|1|on|yes)$/i.test(s) ? true : /^(false|0|off|no)$/i.test(s) ? false : v;
      } else {
        body[k] = v;
      }
    }
    return { body, video };
  }

  /** JSON schema of the JSON body (for the OpenAPI document). */
  jsonSchema(): Record<string, unknown> {
    const s = z.toJSONSchema(this.zod) as Record<string, unknown>;
    delete s.$schema;
    return s;
  }
}

/** The OpenAPI 3.1 document of the API (GET /openapi.json). */
export function openApi(schema: JobSchema, opts: { auth: boolean }): Record<string, unknown> {
  const jobBody = schema.jsonSchema();
  const formBody = {
    ...jobBody,
    properties: {
      ...(jobBody.properties as Record<string, unknown>),
      video: {
        type: "string",
        format: "binary",
        description:
          `Input video (pix2pix, pose, canny, depth): mp4, webm, gif, mov, ...; at most ${schema.limits.maxUploadMb} MiB.`,
      },
    },
  };
  const error = {
    description: "Error",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  };
  const idParam = { name: "id", in: "path", required: true, schema: { type: "string" } };
  const jobResp = (description: string) => ({
    description,
    content: { "application/json": { schema: { $ref: "#/components/schemas/Job" } } },
  });
  const security = opts.auth ? [{ bearer: [] }] : [];
  return {
    openapi: "3.1.0",
    info: {
      title: "zerovid",
      version: "1",
      description: "Text2Video-Zero on WebGPU: text to video, video editing (Instruct-Pix2Pix), and pose / edge / " +
        "depth guided video. Jobs run one at a time on the GPU, in order. Every error is JSON {error, field}. " +
        (opts.auth ? "Send Authorization: Bearer <token> (or ?token=<token> where a header cannot be set). " : ""),
    },
    security,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        JobRequest: jobBody,
        JobRequestForm: formBody,
        Error: {
          type: "object",
          required: ["error", "field"],
          properties: {
            error: { type: "string", description: "What is wrong, in words." },
            field: { type: ["string", "null"], description: "The request field at fault, if one is." },
          },
        },
        Progress: {
          type: "object",
          properties: {
            stage: { type: "string" },
            step: { type: "integer" },
            total: { type: "integer" },
            frame: { type: "integer" },
            frames: { type: "integer" },
          },
        },
        Job: {
          type: "object",
          properties: {
            id: { type: "string" },
            status: { type: "string", enum: ["queued", "running", "succeeded", "failed", "cancelled"] },
            mode: { type: "string", enum: MODES },
            prompt: { type: "string" },
            position: { type: ["integer", "null"], description: "Place in the queue (1 = next) while queued." },
            progress: { oneOf: [{ $ref: "#/components/schemas/Progress" }, { type: "null" }] },
            cancelRequested: { type: "boolean" },
            createdAt: { type: "string", format: "date-time" },
            startedAt: { type: ["string", "null"], format: "date-time" },
            finishedAt: { type: ["string", "null"], format: "date-time" },
            attempts: { type: "integer" },
            params: { type: "object", description: "Every parameter as resolved (defaults and seed included)." },
            timings: { type: ["object", "null"], additionalProperties: { type: "number" } },
            error: { type: ["string", "null"] },
            field: { type: ["string", "null"] },
            result: {
              type: ["object", "null"],
              properties: {
                url: { type: "string" },
                format: { type: "string" },
                contentType: { type: "string" },
                bytes: { type: "integer" },
                frames: { type: "integer" },
                width: { type: "integer" },
                height: { type: "integer" },
                fps: { type: "number" },
                available: { type: "boolean" },
              },
            },
            notice: { type: "string" },
          },
        },
      },
    },
    paths: {
      "/v1/jobs": {
        post: {
          summary: "Submit a job",
          description: "JSON, or multipart/form-data with a `video` file for the video modes. Model fields are " +
            "names from GET /v1/models.",
          requestBody: {
            required: true,
            content: {
              "application/json": { schema: { $ref: "#/components/schemas/JobRequest" } },
              "multipart/form-data": { schema: { $ref: "#/components/schemas/JobRequestForm" } },
            },
          },
          responses: {
            "202": {
              description: "Queued",
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    properties: {
                      id: { type: "string" },
                      status: { type: "string", const: "queued" },
                      position: { type: "integer" },
                      notice: { type: "string" },
                    },
                  },
                },
              },
            },
            "400": error,
            "401": error,
            "413": error,
            "415": error,
            "429": { ...error, headers: { "Retry-After": { schema: { type: "integer" } } } },
          },
        },
        get: {
          summary: "Recent jobs, newest first",
          parameters: [{ name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 200 } }],
          responses: {
            "200": {
              description: "Jobs",
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    properties: { jobs: { type: "array", items: { $ref: "#/components/schemas/Job" } } },
                  },
                },
              },
            },
          },
        },
      },
      "/v1/jobs/{id}": {
        get: { summary: "A job", parameters: [idParam], responses: { "200": jobResp("The job"), "404": error } },
        delete: {
          summary: "Cancel a queued job, stop a running one, or delete a finished one",
          parameters: [idParam],
          responses: { "200": jobResp("Cancelled or deleted"), "202": jobResp("Stopping"), "404": error },
        },
      },
      "/v1/jobs/{id}/events": {
        get: {
          summary: "Server-sent events",
          description: "Events: queued {position}, started {attempt}, progress {stage, step, total, frame, frames}, " +
            "then one of done / failed / cancelled (the job), after which the stream ends.",
          parameters: [idParam],
          responses: { "200": { description: "text/event-stream" }, "404": error },
        },
      },
      "/v1/jobs/{id}/result": {
        get: {
          summary: "The finished video (mp4, webm or gif); supports Range",
          parameters: [idParam, { name: "download", in: "query", schema: { type: "string" } }],
          responses: {
            "200": { description: "The file", content: { "video/mp4": {}, "video/webm": {}, "image/gif": {} } },
            "206": { description: "Part of the file" },
            "404": error,
            "409": error,
            "410": error,
          },
        },
      },
      "/v1/models": {
        get: {
          summary: "Models under the model roots",
          responses: {
            "200": {
              description: "Models",
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    properties: {
                      demo: { type: "boolean" },
                      models: {
                        type: "array",
                        items: {
                          type: "object",
                          properties: {
                            name: { type: "string" },
                            kind: {
                              type: "string",
                              enum: ["sd", "pix2pix", "controlnet", "single-file", "onnx", "demo"],
                            },
                            modes: { type: "array", items: { type: "string", enum: MODES } },
                            role: { type: ["string", "null"] },
                            bytes: { type: "integer" },
                          },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
      "/healthz": {
        get: {
          summary: "Health: GPU adapter, queue length",
          security: [],
          responses: { "200": { description: "OK" } },
        },
      },
      "/openapi.json": {
        get: { summary: "This document", security: [], responses: { "200": { description: "OpenAPI 3.1" } } },
      },
    },
  };
}
