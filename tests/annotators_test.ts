// ONNX annotators (depth, saliency, pose) on tiny models written with fixtures/onnx_writer.ts, run through
// onnxruntime-web, against a float64 TypeScript evaluation of the same graph plus the documented
// post-processing. Also the error paths of loadOnnx and the pose decoder/renderer on designed maps.
import { assert, assertEquals, assertRejects } from "../fixtures/asserts.ts";
import { attr, type NodeSpec, onnxModel, type TensorInit } from "../fixtures/onnx_writer.ts";
import { loadOnnx, OnnxError, onnxProblem } from "../pipeline/annotators/onnx.ts";
import { depthVideo } from "../pipeline/annotators/depth.ts";
import { IMAGENET_MEAN, IMAGENET_STD, saliencyMasks } from "../pipeline/annotators/saliency.ts";
import {
  bodyInput,
  COLORS,
  decodeBody,
  drawBodyPose,
  gaussianFilter,
  LIMB_SEQ,
  MAP_IDX,
  outputToFrame,
  poseVideo,
} from "../pipeline/annotators/pose.ts";
import { type Frames, resizeRGB } from "../pipeline/media/frames.ts";
import { decodeVideo } from "../pipeline/media/decode.ts";
import { assertClose, randn, rng } from "./util.ts";
import { MEDIA_DIR } from "../fixtures/paths.ts";

const MEDIA = MEDIA_DIR + "/";
const dir = await Deno.makeTempDir({ prefix: "zerovid_onnx_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const clip = await decodeVideo(await Deno.readFile(`${MEDIA}clip_testsrc_128x96_8fps.mp4`), {}, "testsrc");
/** The first `n` frames of the clip. */
function clipFrames(n: number): Frames {
  return { ...clip, count: n, data: clip.data.subarray(0, n * clip.width * clip.height * 3) };
}

async function writeModel(name: string, bytes: Uint8Array): Promise<string> {
  const path = `${dir}/${name}.onnx`;
  await Deno.writeFile(path, bytes);
  return path;
}

function test(name: string, fn: () => Promise<void> | void) {
  // onnxruntime-web keeps wasm state (and maybe worker threads) between tests.
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });
}

// ---- float64 references of the graph ops ---------------------------------------------------------------------

interface T4 {
  data: Float64Array;
  c: number;
  h: number;
  w: number;
}

function conv(
  x: T4,
  wt: Float32Array,
  bias: Float32Array | null,
  cout: number,
  k: number,
  stride: number,
  pad: number,
): T4 {
  const ho = Math.floor((x.h + 2 * pad - k) / stride) + 1, wo = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const out = new Float64Array(cout * ho * wo);
  for (let o = 0; o < cout; o++) {
    for (let y = 0; y < ho; y++) {
      for (let xx = 0; xx < wo; xx++) {
        let acc = bias ? bias[o] : 0;
        for (let c = 0; c < x.c; c++) {
          for (let ky = 0; ky < k; ky++) {
            const iy = y * stride - pad + ky;
            if (iy < 0 || iy >= x.h) continue;
            for (let kx = 0; kx < k; kx++) {
              const ix = xx * stride - pad + kx;
              if (ix < 0 || ix >= x.w) continue;
              acc += wt[((o * x.c + c) * k + ky) * k + kx] * x.data[(c * x.h + iy) * x.w + ix];
            }
          }
        }
        out[(o * ho + y) * wo + xx] = acc;
      }
    }
  }
  return { data: out, c: cout, h: ho, w: wo };
}
const relu = (t: T4): T4 => ({ ...t, data: t.data.map((v) => Math.max(v, 0)) });
const sigmoid = (t: T4): T4 => ({ ...t, data: t.data.map((v) => 1 / (1 + Math.exp(-v))) });

/** ONNX Resize, mode linear, half_pixel, integer upscale factor (source coordinates clamped to the image). */
function resizeLinear(t: T4, f: number): T4 {
  const h = t.h * f, w = t.w * f;
  const out = new Float64Array(t.c * h * w);
  const src = (i: number, n: number) => {
    const s = Math.min(Math.max((i + 0.5) / f - 0.5, 0), n - 1);
    const a = Math.floor(s);
    return [a, Math.min(a + 1, n - 1), s - a];
  };
  for (let c = 0; c < t.c; c++) {
    for (let y = 0; y < h; y++) {
      const [y0, y1, ty] = src(y, t.h);
      for (let x = 0; x < w; x++) {
        const [x0, x1, tx] = src(x, t.w);
        const g = (yy: number, xx: number) => t.data[(c * t.h + yy) * t.w + xx];
        out[(c * h + y) * w + x] = (g(y0, x0) * (1 - tx) + g(y0, x1) * tx) * (1 - ty) +
          (g(y1, x0) * (1 - tx) + g(y1, x1) * tx) * ty;
      }
    }
  }
  return { data: out, c: t.c, h, w };
}

function weights(name: string, dims: number[], seed: number, scale: number): TensorInit {
  const n = dims.reduce((a, b) => a * b, 1);
  return { name, dims, data: randn(n, seed, scale) };
}

/** NCHW planes of an RGB24 image with a per-channel affine map. */
function planes(rgb: Uint8Array, w: number, h: number, fn: (v: number, c: number) => number): T4 {
  const n = w * h, data = new Float64Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) data[c * n + i] = fn(rgb[3 * i + c], c);
  return { data, c: 3, h, w };
}

// ---- depth ---------------------------------------------------------------------------------------------------

/** MiDaS-shaped: [1,3,h,w] -> conv3x3(6)+relu -> conv3x3 stride 2 (1) -> Resize x2 linear -> Squeeze -> [1,h,w]. */
function depthGraph(fixed: [number, number] | null) {
  const w1 = weights("w1", [6, 3, 3, 3], 11, 0.4), b1 = weights("b1", [6], 12, 0.1);
  const w2 = weights("w2", [1, 6, 3, 3], 13, 0.4), b2 = weights("b2", [1], 14, 0.1);
  const nodes: NodeSpec[] = [
    { op: "Conv", inputs: ["x", "w1", "b1"], outputs: ["c1"], attrs: { pads: attr.ints([1, 1, 1, 1]) } },
    { op: "Relu", inputs: ["c1"], outputs: ["r1"] },
    {
      op: "Conv",
      inputs: ["r1", "w2", "b2"],
      outputs: ["c2"],
      attrs: { pads: attr.ints([1, 1, 1, 1]), strides: attr.ints([2, 2]) },
    },
    {
      op: "Resize",
      inputs: ["c2", "", "scales"],
      outputs: ["up"],
      attrs: { mode: attr.str("linear"), coordinate_transformation_mode: attr.str("half_pixel") },
    },
    { op: "Squeeze", inputs: ["up", "axis1"], outputs: ["depth"] },
  ];
  const [h, w] = fixed ?? ["height", "width"];
  const bytes = onnxModel({
    nodes,
    initializers: [w1, b1, w2, b2, { name: "scales", dims: [4], data: new Float32Array([1, 1, 2, 2]) }, {
      name: "axis1",
      dims: [1],
      data: [1],
      type: "int64",
    }],
    inputs: [{ name: "x", shape: [1, 3, h, w] }],
    outputs: [{ name: "depth", shape: [1, h, w] }],
  });
  const ref = (x: T4): T4 => {
    const c2 = conv(
      relu(conv(x, w1.data as Float32Array, b1.data as Float32Array, 6, 3, 1, 1)),
      w2.data as Float32Array,
      b2.data as Float32Array,
      1,
      3,
      2,
      1,
    );
    return resizeLinear(c2, 2);
  };
  return { bytes, ref };
}

/** Expected depth control image of one frame: ref graph, min-max, optional uint8 truncation, nearest resize. */
function depthExpect(d: T4, H: number, W: number, quantize: boolean): Float64Array {
  let lo = Infinity, hi = -Infinity;
  for (const v of d.data) lo = Math.min(lo, v), hi = Math.max(hi, v);
  const out = new Float64Array(3 * H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const sy = Math.min(Math.floor(y * d.h / H), d.h - 1), sx = Math.min(Math.floor(x * d.w / W), d.w - 1);
      let v = (d.data[sy * d.w + sx] - lo) / (hi - lo);
      if (quantize) v = Math.floor(v * 255) / 255;
      for (let c = 0; c < 3; c++) out[(c * H + y) * W + x] = v;
    }
  }
  return out;
}

test("depth: dynamic-size MiDaS-shaped model on real frames == TS graph + min-max + 8-bit + HWC3", async () => {
  const { bytes, ref } = depthGraph(null);
  const path = await writeModel("depth_dyn", bytes);
  const frames = clipFrames(3);
  const { width: W, height: H } = frames;
  const t0 = performance.now();
  const got = await depthVideo(frames, path);
  const ms = performance.now() - t0;
  const raw = await depthVideo(frames, path, { quantize: false });
  assertEquals(got.length, 3 * 3 * H * W);
  let flips = 0;
  for (let f = 0; f < 3; f++) {
    const rgb = frames.data.subarray(f * H * W * 3, (f + 1) * H * W * 3);
    const d = ref(planes(rgb, W, H, (v) => v / 127.5 - 1));
    assertEquals([d.h, d.w], [H, W]);
    const wantRaw = depthExpect(d, H, W, false), want = depthExpect(d, H, W, true);
    const sl = (a: Float32Array) => a.subarray(f * 3 * H * W, (f + 1) * 3 * H * W);
    assertClose(sl(raw), wantRaw, { maxAbs: 2e-5 }, `depth raw frame ${f}`);
    // 8-bit levels: float32 vs float64 can only move a value that sits on a level boundary, by one level.
    assertClose(sl(got), want, { maxAbs: 1 / 255 + 1e-6 }, `depth frame ${f}`);
    for (let i = 0; i < want.length; i++) if (Math.abs(sl(got)[i] - want[i]) > 1e-6) flips++;
    for (const v of sl(got)) assert(Math.abs(v * 255 - Math.round(v * 255)) < 1e-4, "depth not on 8-bit levels");
  }
  assert(flips <= 3 * 3 * H * W * 0.002, `${flips} values moved a level`);
  assert(got.some((v) => v === 1) && got.some((v) => v === 0), "min-max normalisation should reach 0 and 1");
  console.log(`depthVideo 3 frames 128x96: ${ms.toFixed(0)} ms (incl. session), ${flips} level flips`);
});

test("depth: fixed-input model gets the frame resized, output nearest-resized back", async () => {
  const { bytes, ref } = depthGraph([32, 48]);
  const path = await writeModel("depth_fixed", bytes);
  const frames = clipFrames(2);
  const { width: W, height: H } = frames;
  const got = await depthVideo(frames, path, { quantize: false });
  for (let f = 0; f < 2; f++) {
    const small = resizeRGB(frames.data.subarray(f * H * W * 3, (f + 1) * H * W * 3), H, W, 32, 48);
    const d = ref(planes(small, 48, 32, (v) => v / 127.5 - 1));
    const want = depthExpect(d, H, W, false);
    assertClose(got.subarray(f * 3 * H * W, (f + 1) * 3 * H * W), want, { maxAbs: 2e-5 }, `depth fixed frame ${f}`);
  }
});

// ---- saliency ------------------------------------------------------------------------------------------------

function saliencyGraph(size: number | null, logitsFirst: boolean) {
  const w1 = weights("w1", [4, 3, 3, 3], 21, 0.5), b1 = weights("b1", [4], 22, 0.1);
  const w2 = weights("w2", [1, 4, 1, 1], 23, 0.8), b2 = weights("b2", [1], 24, 0.2);
  const s = size ?? "S";
  const bytes = onnxModel({
    nodes: [
      { op: "Conv", inputs: ["input", "w1", "b1"], outputs: ["c1"], attrs: { pads: attr.ints([1, 1, 1, 1]) } },
      { op: "Relu", inputs: ["c1"], outputs: ["r1"] },
      { op: "Conv", inputs: ["r1", "w2", "b2"], outputs: ["logits"] },
      { op: "Sigmoid", inputs: ["logits"], outputs: ["d0"] },
    ],
    initializers: [w1, b1, w2, b2],
    inputs: [{ name: "input", shape: [1, 3, s, s] }],
    // U^2-Net lists d0 (the fused map) first and side outputs after.
    outputs: logitsFirst
      ? [{ name: "logits", shape: [1, 1, s, s] }, { name: "d0", shape: [1, 1, s, s] }]
      : [{ name: "d0", shape: [1, 1, s, s] }, { name: "logits", shape: [1, 1, s, s] }],
  });
  const ref = (x: T4) =>
    sigmoid(
      conv(
        relu(conv(x, w1.data as Float32Array, b1.data as Float32Array, 4, 3, 1, 1)),
        w2.data as Float32Array,
        b2.data as Float32Array,
        1,
        1,
        1,
        0,
      ),
    );
  return { bytes, ref };
}

/** Bilinear (half-pixel, clamped) resize of one map to H x W: the TS reference of the mask upsampling. */
function bilinear(m: Float64Array, sh: number, sw: number, H: number, W: number): Float64Array {
  const out = new Float64Array(H * W);
  const src = (i: number, n: number, N: number) => {
    const s = Math.max((i + 0.5) * (n / N) - 0.5, 0);
    const a = Math.min(Math.floor(s), n - 1);
    return [a, Math.min(a + 1, n - 1), s - a];
  };
  for (let y = 0; y < H; y++) {
    const [y0, y1, ty] = src(y, sh, H);
    for (let x = 0; x < W; x++) {
      const [x0, x1, tx] = src(x, sw, W);
      out[y * W + x] = (m[y0 * sw + x0] * (1 - tx) + m[y0 * sw + x1] * tx) * (1 - ty) +
        (m[y1 * sw + x0] * (1 - tx) + m[y1 * sw + x1] * tx) * ty;
    }
  }
  return out;
}

for (
  const [label, size, logitsFirst] of [["fixed 40", 40, false], ["dynamic (size 56)", null, false], [
    "logits first",
    40,
    true,
  ]] as const
) {
  test(`saliency: ${label} U2-Net-shaped model on real frames == TS graph + ImageNet norm + bilinear`, async () => {
    const { bytes, ref } = saliencyGraph(size, logitsFirst);
    const path = await writeModel(`sal_${size}_${logitsFirst}`, bytes);
    const frames = clipFrames(2);
    const { width: W, height: H } = frames;
    const S = size ?? 56;
    const t0 = performance.now();
    const got = await saliencyMasks(frames, path, { size: 56 });
    const ms = performance.now() - t0;
    assertEquals(got.length, 2 * H * W);
    for (let f = 0; f < 2; f++) {
      const small = resizeRGB(frames.data.subarray(f * H * W * 3, (f + 1) * H * W * 3), H, W, S, S);
      const p = ref(planes(small, S, S, (v, c) => (v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]));
      const want = bilinear(p.data, S, S, H, W);
      const d = assertClose(
        got.subarray(f * H * W, (f + 1) * H * W),
        want,
        { maxAbs: 1e-5 },
        `saliency ${label} f${f}`,
      );
      assert(d.relL2 < 1e-5);
    }
    // A real mask: not constant.
    let lo = 1, hi = 0;
    for (const v of got) lo = Math.min(lo, v), hi = Math.max(hi, v);
    assert(hi - lo > 0.2, `saliency mask range ${lo}..${hi}`);
    console.log(`saliencyMasks ${label}, 2 frames: ${ms.toFixed(0)} ms`);
  });
}

test("saliency: the webgpu backend gives the wasm backend's masks", async () => {
  const { bytes } = saliencyGraph(40, false);
  const path = await writeModel("sal_webgpu", bytes);
  const frames = clipFrames(2);
  const a = await saliencyMasks(frames, path, { backend: "wasm" });
  const b = await saliencyMasks(frames, path, { backend: "webgpu" });
  assertClose(b, a, { maxAbs: 1e-4 }, "webgpu vs wasm");
});

// ---- errors --------------------------------------------------------------------------------------------------

test("onnx: clear errors for a missing file, a non-ONNX file, a truncated model, wrong inputs", async () => {
  const e1 = await assertRejects(() => loadOnnx(`${dir}/nope.onnx`), OnnxError);
  assert(e1.message.includes("not found") && e1.message.includes("nope.onnx"), e1.message);
  const e1b = await assertRejects(() => depthVideo(clipFrames(1), `${dir}/nope.onnx`), OnnxError);
  assert(e1b.message.includes("not found"), e1b.message);

  const mp4 = `${MEDIA}clip_testsrc_128x96_8fps.mp4`;
  const e2 = await assertRejects(() => loadOnnx(mp4), OnnxError);
  assert(e2.message.includes("is not an ONNX model"), e2.message);
  const text = await writeModel("text", new TextEncoder().encode("this is not a model\n"));
  const e3 = await assertRejects(() => saliencyMasks(clipFrames(1), text), OnnxError);
  assert(e3.message.includes("is not an ONNX model"), e3.message);
  const empty = await writeModel("empty", new Uint8Array(0));
  assert((await assertRejects(() => loadOnnx(empty), OnnxError)).message.includes("empty"));

  const { bytes } = saliencyGraph(40, false);
  assertEquals(onnxProblem(bytes), null);
  const cut = await writeModel("cut", bytes.subarray(0, bytes.length - 100));
  const e4 = await assertRejects(() => loadOnnx(cut), OnnxError);
  assert(e4.message.includes("truncated"), e4.message);

  // Valid protobuf, invalid graph (unknown operator): onnxruntime's message, with the path.
  const bad = await writeModel(
    "badop",
    onnxModel({
      nodes: [{ op: "NoSuchOp", inputs: ["x"], outputs: ["y"] }],
      inputs: [{ name: "x", shape: [1, 3, 8, 8] }],
      outputs: [{ name: "y", shape: [1, 3, 8, 8] }],
    }),
  );
  const e5 = await assertRejects(() => loadOnnx(bad), OnnxError);
  assert(e5.message.includes("cannot load ONNX model") && e5.message.includes("badop.onnx"), e5.message);

  const model = await loadOnnx(await writeModel("sal_ok", bytes));
  try {
    assertEquals(model.inputs, [{ name: "input", shape: [1, 3, 40, 40], type: "float32" }]);
    const x = { data: new Float32Array(3 * 40 * 40).fill(0.5), dims: [1, 3, 40, 40] };
    const e6 = await assertRejects(() => model.run({ image: x }), OnnxError);
    assert(e6.message.includes("unknown input(s) image") && e6.message.includes("input [1, 3, 40, 40]"), e6.message);
    const e7 = await assertRejects(
      () => model.run({ input: { data: new Float32Array(3 * 32 * 32), dims: [1, 3, 32, 32] } }),
      OnnxError,
    );
    assert(e7.message.includes("shape [1, 3, 32, 32]") && e7.message.includes("expects [1, 3, 40, 40]"), e7.message);
    const e8 = await assertRejects(
      () => model.run({ input: { data: new Float32Array(5), dims: [1, 3, 40, 40] } }),
      OnnxError,
    );
    assert(e8.message.includes("5 values"), e8.message);
    const ok = await model.run({ input: x });
    assertEquals(Object.keys(ok).sort(), ["d0", "logits"]);
    assertEquals(ok.d0.dims, [1, 1, 40, 40]);
  } finally {
    await model.release();
  }
  // A model whose input is not an image.
  const vec = await writeModel(
    "vec",
    onnxModel({
      nodes: [{ op: "Relu", inputs: ["x"], outputs: ["y"] }],
      inputs: [{ name: "x", shape: [1, 10] }],
      outputs: [{ name: "y", shape: [1, 10] }],
    }),
  );
  const e9 = await assertRejects(() => depthVideo(clipFrames(1), vec), OnnxError);
  assert(e9.message.includes("expected an image [N, C, H, W]"), e9.message);
});

// ---- pose ----------------------------------------------------------------------------------------------------

/** A standing person on a 16x16 grid of network cells (x, y), COCO-18 order. */
const BODY: [number, number][] = [
  [8, 2],
  [8, 4],
  [6, 4],
  [5, 6],
  [4, 8],
  [10, 4],
  [11, 6],
  [12, 8],
  [7, 9],
  [7, 11],
  [7, 13],
  [9, 9],
  [9, 11],
  [9, 13],
  [7, 1],
  [9, 1],
  [6, 2],
  [10, 2],
];

/** Designed network outputs at g x g: one asymmetric heat bump per keypoint, unit PAF vectors along each limb. */
function designedMaps(g: number): { heat: Float32Array; paf: Float32Array } {
  const heat = new Float32Array(19 * g * g), paf = new Float32Array(38 * g * g);
  BODY.forEach(([x, y], k) => {
    heat[(k * g + y) * g + x] = 1;
    heat[(k * g + y) * g + x + 1] = 0.6;
    heat[(k * g + y + 1) * g + x] = 0.3;
  });
  for (let i = 0; i < g * g; i++) heat[18 * g * g + i] = 0.5; // background channel, unused
  LIMB_SEQ.forEach(([a, b], k) => {
    const [ax, ay] = BODY[a - 1], [bx, by] = BODY[b - 1];
    const len = Math.hypot(bx - ax, by - ay), ux = (bx - ax) / len, uy = (by - ay) / len;
    for (let t = 0; t <= 1; t += 0.02) {
      const x = Math.round(ax + (bx - ax) * t), y = Math.round(ay + (by - ay) * t);
      paf[((MAP_IDX[k][0] - 19) * g + y) * g + x] = ux;
      paf[((MAP_IDX[k][1] - 19) * g + y) * g + x] = uy;
    }
  });
  return { heat, paf };
}

/** Pixel position of a designed keypoint after the x8 upsampling (cell centre; the bump leans right/down). */
const cellCentre = (c: number) => c * 8 + 3.5;

test("pose: designed heatmaps/PAFs decode to one 18-part person, drawn as draw_bodypose", () => {
  const g = 16, W = 128, H = 128;
  const { heat, paf } = designedMaps(g);
  const inp = { data: new Float32Array(0), dims: [1, 3, 128, 128] as [1, 3, number, number], imgH: 128, imgW: 128 };
  const hm = outputToFrame({ data: heat, dims: [1, 19, g, g] }, inp, W, H);
  const pm = outputToFrame({ data: paf, dims: [1, 38, g, g] }, inp, W, H);
  const pose = decodeBody(hm, pm, W, H);
  assertEquals(pose.candidate.length, 18, `peaks: ${JSON.stringify(pose.candidate)}`);
  assertEquals(pose.subset.length, 1);
  const person = pose.subset[0];
  assertEquals(person[19], 18);
  for (let k = 0; k < 18; k++) {
    const [x, y] = pose.candidate[person[k]];
    const [cx, cy] = BODY[k];
    assert(
      x >= cellCentre(cx) && x <= cellCentre(cx) + 6 && y >= cellCentre(cy) && y <= cellCentre(cy) + 5,
      `part ${k} at (${x}, ${y}), designed cell (${cx}, ${cy})`,
    );
  }
  const canvas = new Uint8Array(W * H * 3);
  drawBodyPose(canvas, W, H, pose);
  const at = (x: number, y: number) => Array.from(canvas.subarray((y * W + x) * 3, (y * W + x) * 3 + 3));
  // Keypoint dots: the full colour (drawn before the limbs; the limbs blend 0.4 old + 0.6 new over them).
  // Limb midpoints away from other limbs and dots: 0.6 * colour over black.
  for (const i of [3, 5, 8, 11]) {
    const [a, b] = LIMB_SEQ[i];
    const pa = pose.candidate[person[a - 1]], pb = pose.candidate[person[b - 1]];
    const mx = Math.trunc((pa[0] + pb[0]) / 2), my = Math.trunc((pa[1] + pb[1]) / 2);
    assertEquals(at(mx, my), COLORS[i].map((c) => Math.round(c * 0.6)), `limb ${i} midpoint`);
  }
  // The ear-eye limbs (17, 18) are not drawn (draw_bodypose draws 17 limbs), but their dots are.
  assertEquals(at(0, 0), [0, 0, 0]);
  assertEquals(at(W - 1, H - 1), [0, 0, 0]);
  let lit = 0;
  for (let i = 0; i < W * H; i++) if (canvas[3 * i] || canvas[3 * i + 1] || canvas[3 * i + 2]) lit++;
  assert(lit > 600 && lit < 3000, `${lit} lit pixels`);
  // Without PAF support nobody is assembled: the PAF step really gates the limbs.
  assertEquals(decodeBody(hm, new Float32Array(pm.length), W, H).subset.length, 0);
});

test("pose: gaussianFilter == scipy.ndimage.gaussian_filter(sigma=3, mode='reflect') as a direct 2-D sum", () => {
  const r = 12, k = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-0.5 * (i - r) ** 2 / 9));
  const sum = k.reduce((a, b) => a + b);
  // scipy's reflect: mirror about the edge, the edge sample repeated (d c b a | a b c d), again past the far edge.
  const refl = (i: number, n: number) => {
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
  };
  for (const [w, h] of [[5, 7], [31, 20], [1, 3]]) {
    const a = randn(w * h, w * 100 + h);
    const want = new Float64Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let acc = 0;
        for (let i = -r; i <= r; i++) {
          for (let j = -r; j <= r; j++) acc += k[i + r] * k[j + r] * a[refl(y + i, h) * w + refl(x + j, w)];
        }
        want[y * w + x] = acc / (sum * sum);
      }
    }
    assertClose(gaussianFilter(a, w, h), want, { maxAbs: 1e-12 }, `gaussian ${w}x${h}`);
  }
});

/** [1,3,128,128] -> designed maps + conv8x8/8(x) with small weights (~0.01 out): heatmaps listed first, PAFs second. */
function poseGraph() {
  const g = 16;
  const { heat, paf } = designedMaps(g);
  const wh = weights("wh", [19, 3, 8, 8], 31, 0.002), wp = weights("wp", [38, 3, 8, 8], 32, 0.002);
  const bytes = onnxModel({
    nodes: [
      { op: "Conv", inputs: ["image", "wh"], outputs: ["ch"], attrs: { strides: attr.ints([8, 8]) } },
      { op: "Conv", inputs: ["image", "wp"], outputs: ["cp"], attrs: { strides: attr.ints([8, 8]) } },
      { op: "Add", inputs: ["ch", "heat0"], outputs: ["heatmaps"] },
      { op: "Add", inputs: ["cp", "paf0"], outputs: ["pafs"] },
    ],
    initializers: [wh, wp, { name: "heat0", dims: [1, 19, g, g], data: heat }, {
      name: "paf0",
      dims: [1, 38, g, g],
      data: paf,
    }],
    inputs: [{ name: "image", shape: [1, 3, 128, 128] }],
    outputs: [{ name: "heatmaps", shape: [1, 19, g, g] }, { name: "pafs", shape: [1, 38, g, g] }],
  });
  return { bytes, wh, wp, heat, paf };
}

test("pose: fixed-input OpenPose-shaped model on real frames == TS graph + decode + draw", async () => {
  const { bytes, wh, wp, heat, paf } = poseGraph();
  const path = await writeModel("pose_fixed", bytes);
  const frames = clipFrames(2);
  const { width: W, height: H } = frames;
  const t0 = performance.now();
  const got = await poseVideo(frames, path);
  const ms = performance.now() - t0;
  assertEquals(got.length, 2 * 3 * H * W);
  for (let f = 0; f < 2; f++) {
    const rgb = frames.data.subarray(f * H * W * 3, (f + 1) * H * W * 3);
    const inp = bodyInput(rgb, W, H, { h: 128, w: 128 });
    // The network input is BGR / 256 - 0.5 of the bicubic-resized frame: check the channel order on a pixel.
    const x: T4 = { data: Float64Array.from(inp.data), c: 3, h: 128, w: 128 };
    const add = (t: T4, c0: Float32Array) => ({ ...t, data: t.data.map((v, i) => v + c0[i]) });
    const hT = add(conv(x, wh.data as Float32Array, null, 19, 8, 8, 0), heat);
    const pT = add(conv(x, wp.data as Float32Array, null, 38, 8, 8, 0), paf);
    const hm = outputToFrame({ data: Float32Array.from(hT.data), dims: [1, 19, 16, 16] }, inp, W, H);
    const pm = outputToFrame({ data: Float32Array.from(pT.data), dims: [1, 38, 16, 16] }, inp, W, H);
    const pose = decodeBody(hm, pm, W, H);
    assertEquals(pose.subset.length, 1, "the designed person should be found through the model");
    const canvas = new Uint8Array(W * H * 3);
    drawBodyPose(canvas, W, H, pose);
    for (let i = 0; i < W * H; i++) {
      for (let c = 0; c < 3; c++) {
        if (got[(f * 3 + c) * H * W + i] !== Math.fround(canvas[3 * i + c] / 255)) {
          throw new Error(`pose frame ${f}: pixel ${i} channel ${c} differs`);
        }
      }
    }
  }
  console.log(`poseVideo 2 frames 128x96 (fixed 128x128 model): ${ms.toFixed(0)} ms`);
});

test("pose: dynamic-size model follows ControlNet's preprocessing (scale 184/H, pad 128, BGR)", async () => {
  // A frame with distinct, flat colour planes (R 200, B 30) and a pattern in G: 128x96 like the clip.
  const W = 128, H = 96;
  const rgb = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) rgb.set([200, 60 + ((i * 7) % 120), 30], 3 * i);
  const frames: Frames = { width: W, height: H, fps: 1, count: 1, data: rgb };
  const inp = bodyInput(rgb, W, H, null);
  // 96 rows -> 184 rows (scale 1.9167), 128 columns -> round(245.33) = 245, padded to 184 x 248.
  assertEquals(inp.dims, [1, 3, 184, 248]);
  assertEquals([inp.imgH, inp.imgW], [184, 245]);
  const plane = 184 * 248;
  for (let y = 0; y < 184; y++) {
    for (let x = 0; x < 248; x++) {
      const pad = x >= 245;
      // Channel 0 is blue, 2 is red (BGR); the padding is 128/256 - 0.5 = 0.
      assertEquals(inp.data[y * 248 + x], pad ? 0 : 30 / 256 - 0.5, `B at ${x},${y}`);
      assertEquals(inp.data[2 * plane + y * 248 + x], pad ? 0 : 200 / 256 - 0.5, `R at ${x},${y}`);
    }
  }
  let gMin = 255, gMax = 0;
  for (let i = 0; i < 184 * 245; i++) {
    const v = (inp.data[plane + Math.floor(i / 245) * 248 + (i % 245)] + 0.5) * 256;
    gMin = Math.min(gMin, v), gMax = Math.max(gMax, v);
  }
  assert(gMin >= 0 && gMax <= 255 && gMax - gMin > 50, `G range ${gMin}..${gMax}`);

  // A fully convolutional model at that size: outputs [1, 38|19, 23, 31]; the run must go through.
  const wp = weights("wp", [38, 3, 8, 8], 41, 0.05), wh = weights("wh", [19, 3, 8, 8], 42, 0.05);
  const path = await writeModel(
    "pose_dyn",
    onnxModel({
      nodes: [
        { op: "Conv", inputs: ["x", "wp"], outputs: ["paf"], attrs: { strides: attr.ints([8, 8]) } },
        { op: "Conv", inputs: ["x", "wh"], outputs: ["hc"], attrs: { strides: attr.ints([8, 8]) } },
        { op: "Sigmoid", inputs: ["hc"], outputs: ["heat"] },
      ],
      initializers: [wp, wh],
      inputs: [{ name: "x", shape: [1, 3, "h", "w"] }],
      outputs: [{ name: "paf", shape: [1, 38, "h8", "w8"] }, { name: "heat", shape: [1, 19, "h8", "w8"] }],
    }),
  );
  const got = await poseVideo(frames, path);
  assertEquals(got.length, 3 * W * H);
  for (const v of got) assert(v >= 0 && v <= 1);
  // Wrong model: a single output.
  const one = await writeModel(
    "pose_one",
    onnxModel({
      nodes: [{ op: "Conv", inputs: ["x", "wh"], outputs: ["heat"], attrs: { strides: attr.ints([8, 8]) } }],
      initializers: [wh],
      inputs: [{ name: "x", shape: [1, 3, "h", "w"] }],
      outputs: [{ name: "heat", shape: [1, 19, "h8", "w8"] }],
    }),
  );
  const e = await assertRejects(() => poseVideo(frames, one), OnnxError);
  assert(e.message.includes("[1, 38, h, w]"), e.message);
});

test("pose: random frames of noise find nobody (no false skeletons from a designed-free model)", async () => {
  // Heat from a sigmoid of small random weights hovers near 0.5 everywhere: peaks exist but no PAF support.
  const r = rng(5);
  const data = Uint8Array.from({ length: 64 * 48 * 3 }, () => Math.floor(r() * 256));
  const wp = weights("wp", [38, 3, 8, 8], 51, 0.001), wh = weights("wh", [19, 3, 8, 8], 52, 0.001);
  const path = await writeModel(
    "pose_noise",
    onnxModel({
      nodes: [
        { op: "Conv", inputs: ["x", "wp"], outputs: ["paf"], attrs: { strides: attr.ints([8, 8]) } },
        { op: "Conv", inputs: ["x", "wh"], outputs: ["hc"], attrs: { strides: attr.ints([8, 8]) } },
        { op: "Sigmoid", inputs: ["hc"], outputs: ["heat"] },
      ],
      initializers: [wp, wh],
      inputs: [{ name: "x", shape: [1, 3, "h", "w"] }],
      outputs: [{ name: "paf", shape: [1, 38, "h8", "w8"] }, { name: "heat", shape: [1, 19, "h8", "w8"] }],
    }),
  );
  const got = await poseVideo({ width: 64, height: 48, fps: 1, count: 1, data }, path);
  assert(got.every((v) => v === 0), "a black canvas");
});
