// onnxruntime-web sessions for the annotator models (depth, pose, saliency). The wasm backend by default (the node
// build of onnxruntime-web, which is what Deno resolves), the WebGPU backend (`onnxruntime-web/webgpu`) on request.
// Errors name the file and what is wrong: missing file, not an ONNX model, unknown/missing inputs, wrong shapes.
import type * as Ort from "onnxruntime-web";
import { RequestError } from "../errors.ts";

export type OnnxBackend = "wasm" | "webgpu";

export interface OnnxOptions {
  /** Default "wasm"; env ZEROVID_ONNX_BACKEND. */
  backend?: OnnxBackend;
  /**
   * wasm threads; default navigator.hardwareConcurrency capped at 4. Only the first session per backend sets it.
   * The webgpu entry always uses 1: its threaded glue loads a worker from a blob: URL, which Deno's npm module
   * loader rejects (and the GPU does the work anyway).
   */
  numThreads?: number;
}

/** A float32 tensor: data and dims. */
export interface OnnxTensor {
  data: Float32Array;
  dims: number[];
}

/** Name and declared shape of a model input or output (numbers fixed, strings symbolic; [] = unknown). */
export interface OnnxValueInfo {
  name: string;
  shape: (number | string)[];
  type: string;
}

export interface OnnxModel {
  path: string;
  backend: OnnxBackend;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  /** Runs the model; every input must be given with a shape that fits its declared one. Outputs by name. */
  run(feeds: Record<string, OnnxTensor>): Promise<Record<string, OnnxTensor>>;
  release(): Promise<void>;
}

export class OnnxError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "OnnxError";
  }
}

// onnxruntime-web keeps its settings (env.wasm) per module instance: load each entry once.
const modules = new Map<OnnxBackend, Promise<typeof Ort>>();
function ortFor(backend: OnnxBackend, numThreads: number): Promise<typeof Ort> {
  let m = modules.get(backend);
  if (!m) {
    m = (backend === "webgpu" ? import("onnxruntime-web/webgpu") : import("onnxruntime-web")).then((ort) => {
      const o = ort as typeof Ort;
      o.env.wasm.numThreads = backend === "webgpu" ? 1 : numThreads;
      o.env.logLevel = "error";
      return o;
    });
    modules.set(backend, m);
  }
  return m;
}

/**
 * Cheap structural check that `bytes` is a serialized ONNX ModelProto: a well-formed protobuf message whose
 * top-level fields have ONNX's wire types and that contains a graph (field 7). Returns a reason or null.
 */
export function onnxProblem(bytes: Uint8Array): string | null {
  if (bytes.length === 0) return "the file is empty";
  // Wire types of ModelProto fields (onnx.proto): 1 ir_version varint, 2-4,6 strings, 5 model_version varint,
  // 7 graph, 8 opset_import, 14 metadata_props, 20 training_info, 25 functions, 26/27 configuration (messages).
  const wire: Record<number, number> = { 1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2 };
  let i = 0, graph = false;
  const varint = (): number => {
    let v = 0, mul = 1;
    for (let k = 0; k < 10; k++) {
      if (i >= bytes.length) throw new Error("truncated varint");
      const b = bytes[i++];
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return v;
    }
    throw new Error("varint too long");
  };
  try {
    while (i < bytes.length) {
      const tag = varint();
      const field = Math.floor(tag / 8), type = tag % 8;
      if (field === 0) return "field number 0 at the start of a protobuf field";
      if (field in wire && wire[field] !== type) {
        return `field ${field} has wire type ${type}, not ONNX's ${wire[field]}`;
      }
      if (type === 0) varint();
      else if (type === 2) {
        const n = varint();
        if (i + n > bytes.length) return `field ${field} runs past the end of the file (truncated?)`;
        i += n;
      } else if (type === 1) i += 8;
      else if (type === 5) i += 4;
      else return `unsupported protobuf wire type ${type}`;
      if (field === 7) graph = true;
    }
  } catch (e) {
    return (e as Error).message;
  }
  if (i !== bytes.length) return "the last field runs past the end of the file (truncated?)";
  if (!graph) return "it has no graph";
  return null;
}

function toInfo(meta: readonly Ort.InferenceSession.ValueMetadata[], names: readonly string[]): OnnxValueInfo[] {
  return names.map((name) => {
    const m = meta.find((v) => v.name === name);
    if (m && m.isTensor) return { name, shape: [...m.shape], type: m.type };
    return { name, shape: [], type: m ? "non-tensor" : "unknown" };
  });
}

const showShape = (s: readonly (number | string)[]) => `[${s.join(", ")}]`;

/** Loads an ONNX model file. */
export async function loadOnnx(path: string, opts: OnnxOptions = {}): Promise<OnnxModel> {
  const envBackend = Deno.env.get("ZEROVID_ONNX_BACKEND");
  const backend = opts.backend ?? (envBackend === "webgpu" || envBackend === "wasm" ? envBackend : "wasm");
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new OnnxError(`ONNX model file not found: ${path}`);
    if (e instanceof Deno.errors.IsADirectory) throw new OnnxError(`ONNX model path is a directory: ${path}`);
    throw new OnnxError(`cannot read ONNX model ${path}: ${(e as Error).message}`);
  }
  const problem = onnxProblem(bytes);
  if (problem) throw new OnnxError(`${path} is not an ONNX model: ${problem}`);
  const threads = opts.numThreads ?? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
  const ort = await ortFor(backend, threads);
  let session: Ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      executionProviders: [backend],
      graphOptimizationLevel: "all",
    });
  } catch (e) {
    throw new OnnxError(`cannot load ONNX model ${path} (${backend}): ${(e as Error).message ?? e}`);
  }
  const inputs = toInfo(session.inputMetadata, session.inputNames);
  const outputs = toInfo(session.outputMetadata, session.outputNames);
  return {
    path,
    backend,
    inputs,
    outputs,
    async run(feeds) {
      const given = Object.keys(feeds);
      const unknown = given.filter((n) => !inputs.some((v) => v.name === n));
      const missing = inputs.filter((v) => !(v.name in feeds)).map((v) => v.name);
      if (unknown.length || missing.length) {
        throw new OnnxError(
          `${path}: ${unknown.length ? `unknown input(s) ${unknown.join(", ")}` : ""}${
            unknown.length && missing.length ? "; " : ""
          }${missing.length ? `missing input(s) ${missing.join(", ")}` : ""}; the model takes ${
            inputs.map((v) => `${v.name} ${showShape(v.shape)}`).join(", ")
          }`,
        );
      }
      const ortFeeds: Record<string, Ort.Tensor> = {};
      for (const v of inputs) {
        const t = feeds[v.name];
        const n = t.dims.reduce((a, b) => a * b, 1);
        if (t.data.length !== n) {
          throw new OnnxError(`${path}: input ${v.name} has ${t.data.length} values for dims ${showShape(t.dims)}`);
        }
        const fits = v.shape.length === 0 ||
          (v.shape.length === t.dims.length &&
            v.shape.every((d, k) => typeof d !== "number" || d < 0 || d === t.dims[k]));
        if (!fits) {
          throw new OnnxError(
            `${path}: input ${v.name} has shape ${showShape(t.dims)}, the model expects ${showShape(v.shape)}`,
          );
        }
        ortFeeds[v.name] = new ort.Tensor("float32", t.data, t.dims);
      }
      let res: Ort.InferenceSession.ReturnType;
      try {
        res = await session.run(ortFeeds);
      } catch (e) {
        throw new OnnxError(`${path}: inference failed: ${(e as Error).message ?? e}`);
      }
      const out: Record<string, OnnxTensor> = {};
      for (const [name, t] of Object.entries(res)) {
        if (t.type !== "float32") throw new OnnxError(`${path}: output ${name} is ${t.type}, expected float32`);
        const data = t.location === "cpu" ? t.data as Float32Array : await t.getData(true) as Float32Array;
        out[name] = { data, dims: [...t.dims] };
        t.dispose();
      }
      return out;
    },
    release: () => session.release(),
  };
}

/**
 * The spatial size of an NCHW image input: fixed { h, w } when the model declares both as numbers, else null
 * (the caller chooses). Throws unless the input is 4-D with `channels` channels (when declared).
 */
export function imageInputSize(model: OnnxModel, channels = 3): { h: number; w: number } | null {
  const inp = model.inputs[0];
  const s = inp.shape;
  if (s.length === 0) return null;
  if (s.length !== 4) {
    throw new OnnxError(`${model.path}: input ${inp.name} has shape ${showShape(s)}, expected an image [N, C, H, W]`);
  }
  if (typeof s[1] === "number" && s[1] !== channels) {
    throw new OnnxError(`${model.path}: input ${inp.name} has ${s[1]} channels, expected ${channels}`);
  }
  if (typeof s[0] === "number" && s[0] !== 1 && s[0] > 0) {
    throw new OnnxError(`${model.path}: input ${inp.name} has a fixed batch of ${s[0]}, expected 1`);
  }
  const [h, w] = [s[2], s[3]];
  return typeof h === "number" && typeof w === "number" && h > 0 && w > 0 ? { h, w } : null;
}

/** Bilinear resize of a [C, h, w] float image (align_corners=False, edge-clamped, no antialias). */
export function resizeBilinear(
  src: Float32Array,
  c: number,
  sh: number,
  sw: number,
  dh: number,
  dw: number,
): Float32Array {
  if (sh === dh && sw === dw) return src.slice(0, c * sh * sw);
  const out = new Float32Array(c * dh * dw);
  const axis = (n: number, sn: number) => {
    const i0 = new Int32Array(n), i1 = new Int32Array(n), t = new Float32Array(n);
    const scale = sn / n;
    for (let i = 0; i < n; i++) {
      const s = Math.max((i + 0.5) * scale - 0.5, 0);
      const a = Math.min(Math.floor(s), sn - 1);
      i0[i] = a, i1[i] = Math.min(a + 1, sn - 1), t[i] = s - a;
    }
    return { i0, i1, t };
  };
  const ay = axis(dh, sh), ax = axis(dw, sw);
  for (let k = 0; k < c; k++) {
    const base = k * sh * sw;
    for (let y = 0; y < dh; y++) {
      const r0 = base + ay.i0[y] * sw, r1 = base + ay.i1[y] * sw, ty = ay.t[y];
      for (let x = 0; x < dw; x++) {
        const tx = ax.t[x];
        const top = src[r0 + ax.i0[x]] * (1 - tx) + src[r0 + ax.i1[x]] * tx;
        const bot = src[r1 + ax.i0[x]] * (1 - tx) + src[r1 + ax.i1[x]] * tx;
        out[(k * dh + y) * dw + x] = top * (1 - ty) + bot * ty;
      }
    }
  }
  return out;
}

/** The (h, w) of a single-image map output: dims [h, w], [1, h, w] or [1, 1, h, w]. */
export function mapDims(model: OnnxModel, name: string, dims: number[]): { h: number; w: number } {
  const lead = dims.slice(0, -2);
  if (dims.length < 2 || dims.length > 4 || lead.some((d) => d !== 1)) {
    throw new OnnxError(`${model.path}: output ${name} has dims ${showShape(dims)}, expected one map [1, (1,) H, W]`);
  }
  return { h: dims[dims.length - 2], w: dims[dims.length - 1] };
}
