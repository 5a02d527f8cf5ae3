// The HTTP request schema (zod) and the OpenAPI document that publishes it, both derived from the field registry
// (pipeline/job/fields.ts) and narrowed by the server's limits: one object per mode with that mode's fields, the
// registry's messages (field, what was expected, what came), and the typing of multipart form strings.
import { z } from "zod";
import { RequestError } from "../pipeline/errors.ts";
import {
  appliesTo,
  boundsOf,
  expected,
  FIELD_NAMES,
  type FieldLimits,
  type FieldName,
  FIELDS,
  type FieldSpec,
  fieldSpec,
  LORA_SCALE,
} from "../pipeline/job/fields.ts";
import { isMode, type Mode, MODE_HELP, MODES } from "../pipeline/job/modes.ts";
import { checkValue, shown } from "../pipeline/job/validate.ts";
import type { FormFields, UploadedFile } from "./app/multipart.ts";

/** The server's limits: the registry's field limits (frames, resolution, steps, prompt) and its own. */
export interface Limits extends FieldLimits {
  /** Largest upload (the whole request body), MiB. */
  maxUploadMb: number;
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

/** The JSON (and form) fields of POST /v1/jobs: the registry's, less the video file (multipart only). */
const JSON_FIELDS = FIELD_NAMES.filter((n) => !(FIELDS[n] as FieldSpec).notJson);

/** A registry field as a zod type for one mode, narrowed by the server's limits. */
function zodField(name: FieldName, mode: Mode, l: Limits): z.ZodType {
  const s: FieldSpec = FIELDS[name];
  const b = boundsOf(name, mode, l);
  let t: z.ZodType;
  switch (s.kind) {
    case "enum":
      t = z.enum(s.values as unknown as [string, ...string[]]);
      break;
    case "bool":
      t = z.boolean();
      break;
    case "string":
      t = z.string().min(b.min ?? 0).max(b.max!);
      break;
    case "int":
    case "number": {
      let n = s.kind === "int" ? z.number().int() : z.number();
      n = n.min(b.min!).max(b.max!);
      if (b.multipleOf) n = n.multipleOf(b.multipleOf);
      t = b.special !== undefined ? z.union([z.literal(b.special), n]) : n;
      break;
    }
    case "file":
      throw new Error(`schema: ${name} is a file, not a JSON field`);
    case "loras":
      t = z.array(
        z.strictObject({
          name: z.string().min(1).max(1024).describe("a LoRA file's name from GET /v1/models (kind lora)"),
          scale: z.number().min(LORA_SCALE.min).max(LORA_SCALE.max).optional().describe("strength (default 1)"),
        }),
      ).max(s.max!);
      break;
    case "names":
      t = z.array(z.string().min(1).max(1024)).max(s.max!);
      break;
  }
  const special = b.special !== undefined ? ` ${b.special}: ${s.special!.means}.` : "";
  t = t.describe(`${s.help[0].toUpperCase()}${s.help.slice(1)}.${special}`);
  return s.required ? t : t.optional();
}

export type JobBody = Record<string, string | number | boolean | undefined> & { mode: Mode; prompt: string };

export class JobSchema {
  /** The body of each mode: its fields only. */
  readonly byMode: Record<Mode, z.ZodType<JobBody>>;
  /** Any mode's body (a union on `mode`), for the OpenAPI document. */
  readonly zod: z.ZodType<JobBody>;

  constructor(readonly limits: Limits) {
    const objects = MODES.map((mode) => {
      const shape: Record<string, z.ZodType> = { mode: z.literal(mode).describe(MODE_HELP[mode]) };
      for (const n of JSON_FIELDS) if (appliesTo(FIELDS[n], mode)) shape[n] = zodField(n, mode, limits);
      return z.strictObject(shape).describe(`${mode}: ${MODE_HELP[mode]}`);
    });
    this.byMode = Object.fromEntries(MODES.map((m, i) => [m, objects[i]])) as unknown as Record<
      Mode,
      z.ZodType<JobBody>
    >;
    this.zod = z.discriminatedUnion(
      "mode",
      objects as unknown as [z.ZodObject, ...z.ZodObject[]],
    ) as unknown as z.ZodType<
      JobBody
    >;
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
    const mode = obj.mode;
    if (mode === undefined) throw new RequestError("mode", `is required: one of ${MODES.join(", ")}`);
    if (!isMode(mode)) throw new RequestError("mode", `expected one of ${MODES.join(", ")}, got ${shown(mode)}`);
    const r = this.byMode[mode].safeParse(obj);
    if (r.success) return r.data;
    const issue = r.error.issues[0];
    const field = issue.code === "unrecognized_keys" ? issue.keys[0] : String(issue.path[0] ?? "body");
    if (obj[field] === undefined && fieldSpec(field)) {
      throw new RequestError(field, `is required: ${expected(field as FieldName, mode, this.limits)}`);
    }
    checkValue(field, obj[field], mode, this.limits); // throws the registry's message for this field
    throw new RequestError(field, issue.message); // unreachable while the schema follows the registry
  }

  /**
   * Multipart/urlencoded form values -> typed values (numbers and booleans from their text, lists from JSON text;
   * empty fields are omitted, as a form sends every input). Files other than `video`, and repeated fields, are
   * refused.
   */
  fromForm(form: FormFields): { body: Record<string, unknown>; video: UploadedFile | null } {
    const body: Record<string, unknown> = {};
    let video: UploadedFile | null = null;
    for (const [k, v] of Object.entries(form)) {
      if (Array.isArray(v)) throw new RequestError(k, "given more than once");
      if (k === "video") {
        if (typeof v === "string") {
          if (v === "") continue;
          throw new RequestError("video", "expected a file upload (multipart/form-data), got text");
        }
        video = v;
        continue;
      }
      if (typeof v !== "string") throw new RequestError(k, "expected a text field, got a file");
      const d = fieldSpec(k);
      if (!d) {
        body[k] = v; // parse() names it as unknown (or it is `mode`)
        continue;
      }
      const s = v.trim();
      if (s === "" && !(d.kind === "string" && d.required)) continue;
      if (d.kind === "int" || d.kind === "number") {
        const n = Number(s);
        body[k] = Number.isFinite(n) ? n : v;
      } else if (d.kind === "bool") {
        body[k] = /^(true|1|on|yes)$/i.test(s) ? true : /^(false|0|off|no)$/i.test(s) ? false : v;
      } else if (d.kind === "loras" || d.kind === "names") {
        // A list travels in a form as one JSON text field (the page sends it so).
        try {
          body[k] = JSON.parse(s);
        } catch {
          throw new RequestError(k, `expected a JSON list in the form field, got ${shown(s)}`);
        }
      } else {
        body[k] = v;
      }
    }
    return { body, video };
  }

  /** JSON schema of the JSON body (for the OpenAPI document): one alternative per mode. */
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
      "/v1/fields": {
        get: {
          summary: "The request fields of each mode, as the page builds its forms",
          description: "From the same registry as this schema: label, help, range narrowed by the server's limits, " +
            "step, special value (-1), default with a real model and with the built-in demo model.",
          responses: {
            "200": { description: "{modes, fields: {<mode>: [field, ...]}, prompt: {<mode>: max length}}" },
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
