// The command line end to end: every mode as a subprocess (`deno run -A main.ts <mode> ...`) on the tiny golden
// models, small sizes and few steps; the written file is probed for frame count, size and fps. Bad options and
// inputs exit with 2 and one line naming the option; a GPU failure exits with 1.
import { join } from "node:path";
import { probeVideo } from "../pipeline/media/probe.ts";
import { DEMO_NOTICE } from "../pipeline/models/demo.ts";
import { attr, onnxModel } from "../fixtures/onnx_writer.ts";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { GOLDEN_MODELS, MEDIA_DIR } from "../fixtures/paths.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MODELS = GOLDEN_MODELS + "/";
const MEDIA = MEDIA_DIR + "/";
const SD = join(MODELS, "tiny-sd"), P2P = join(MODELS, "tiny-pix2pix"), CN = join(MODELS, "tiny-controlnet");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs `fns` at most `n` at a time (lavapipe uses the CPU: two processes overlap well on two cores). */
async function pool<T>(n: number, fns: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array(fns.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, fns.length) }, async () => {
    while (next < fns.length) {
      const i = next++;
      out[i] = await fns[i]();
    }
  }));
  return out;
}

const tmp = await Deno.makeTempDir({ prefix: "zerovid-cli-" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

/** A tiny depth "model": the mean over RGB, [1, 3, h, w] -> [1, 1, h, w]. */
const depthOnnx = join(tmp, "depth.onnx");
Deno.writeFileSync(
  depthOnnx,
  onnxModel({
    nodes: [{
      op: "ReduceMean",
      inputs: ["x"],
      outputs: ["y"],
      attrs: { axes: attr.ints([1]), keepdims: attr.int(1) },
    }],
    inputs: [{ name: "x", shape: [1, 3, "h", "w"] }],
    outputs: [{ name: "y", shape: [1, 1, "h", "w"] }],
  }),
);

/** A tiny salient-object "model": sigmoid of the mean over RGB at a fixed 32x32 input. */
const saliencyOnnx = join(tmp, "saliency.onnx");
Deno.writeFileSync(
  saliencyOnnx,
  onnxModel({
    nodes: [
      { op: "ReduceMean", inputs: ["x"], outputs: ["m"], attrs: { axes: attr.ints([1]), keepdims: attr.int(1) } },
      { op: "Sigmoid", inputs: ["m"], outputs: ["y"] },
    ],
    inputs: [{ name: "x", shape: [1, 3, 32, 32] }],
    outputs: [{ name: "y", shape: [1, 1, 32, 32] }],
  }),
);

interface ModeCase {
  name: string;
  args: string[];
  env?: Record<string, string>;
  out: string;
  /** frames, width, height, fps */
  want: [number, number, number, number];
  stdout?: string[];
}

/** Small runs: these options unless a case gives its own (the ControlNet modes take 1 step, the demo 1 frame). */
const small = ["--steps", "2", "--video-length", "2", "--seed", "7"];
function withSmall(args: string[]): string[] {
  const given = new Set(args.filter((a) => a.startsWith("--")));
  const out = [...args];
  for (let i = 0; i < small.length; i += 2) if (!given.has(small[i])) out.push(small[i], small[i + 1]);
  return out;
}
const CASES: ModeCase[] = [
  {
    // Default precision (f16 where the GPU has it), chunks of 2 frames, mp4 at 5 fps.
    name: "text2video",
    args: ["--model", SD, "--prompt", "a panda playing guitar", "--width", "64", "--height", "64", "--fps", "5"],
    out: "t2v.mp4",
    want: [2, 64, 64, 5],
    stdout: ["seed 7", "wrote"],
  },
  {
    // 128x96 at resolution 64 -> 64x64; 1 s at 4 fps = 4 frames, the first 2 kept; webm.
    name: "pix2pix",
    args: ["--model", P2P, "--video", join(MEDIA, "clip_testsrc_128x96_8fps.mp4"), "--prompt", "make it snow"]
      .concat(["--resolution", "64", "--fps", "4", "--end", "1", "--precision", "f32"]),
    out: "p2p.webm",
    want: [2, 64, 64, 4],
  },
  {
    // A rendered skeleton video is the control itself; resampled to 4 fps by default; gif.
    name: "pose",
    args: ["--model", SD, "--controlnet", CN, "--video", join(MEDIA, "clip_mandelbrot_96_10fps.webm")]
      .concat(["--prompt", "a dancer", "--resolution", "64", "--precision", "f32", "--steps", "1"]),
    out: "pose.gif",
    want: [2, 64, 64, 4],
  },
  {
    // Every source frame at the source fps (6); an exact size.
    name: "canny",
    args: ["--model", SD, "--controlnet", CN, "--video", join(MEDIA, "clip_life_64_6fps.gif"), "--prompt", "a city"]
      .concat(["--width", "64", "--height", "64", "--low-threshold", "50", "--high-threshold", "150"])
      .concat(["--precision", "f32", "--steps", "1"]),
    out: "canny.mp4",
    want: [2, 64, 64, 6],
  },
  {
    // A clip with audio; 160x120 at resolution 64 -> 64x64; resampled to 10 fps.
    name: "depth",
    args: ["--model", SD, "--controlnet", CN, "--video", join(MEDIA, "clip_bars_audio_160x120_25fps.mp4")]
      .concat(["--depth-model", depthOnnx, "--prompt", "a room", "--resolution", "64", "--fps", "10"])
      .concat(["--precision", "f32", "--steps", "1"]),
    out: "depth.webm",
    want: [2, 64, 64, 10],
  },
  {
    // Background smoothing (METHOD §1.7): a second denoising pass after the saliency masks.
    name: "text2video (background smoothing)",
    args: ["--model", SD, "--prompt", "a car", "--width", "64", "--height", "64", "--precision", "f32"]
      .concat(["--smooth-background", "--saliency-model", saliencyOnnx]),
    out: "smooth.gif",
    want: [2, 64, 64, 4],
    stdout: ["saliency masks 1/1", "smoothing pass"],
  },
  {
    // Nothing configured: the built-in demo model, labelled as such.
    name: "text2video (built-in demo model)",
    args: ["--prompt", "a panda", "--width", "64", "--height", "64", "--precision", "f32", "--video-length", "1"],
    env: { ZEROVID_MODEL: "" },
    out: "demo.mp4",
    want: [1, 64, 64, 4],
    stdout: [DEMO_NOTICE],
  },
];

Deno.test("cli: every mode runs end to end and writes the video it was asked for", async (t) => {
  const runs = pool(
    2,
    CASES.map((c) => () => cli([c.name.split(" ")[0], ...withSmall(c.args), "--out", join(tmp, c.out)], c.env)),
  );
  await Promise.all(CASES.map((c, i) =>
    t.step({
      name: c.name,
      sanitizeOps: false,
      sanitizeResources: false,
      sanitizeExit: false,
      fn: async () => {
        const r = (await runs)[i];
        if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}\n${r.stdout}`);
        for (const s of c.stdout ?? []) assert(r.stdout.includes(s), `stdout should include "${s}":\n${r.stdout}`);
        assert(!r.stdout.includes(DEMO_NOTICE) || c.env?.ZEROVID_MODEL === "", "only the demo run uses the demo");
        const bytes = await Deno.readFile(join(tmp, c.out));
        const info = await probeVideo(bytes, c.out);
        // FFmpeg reports a GIF's timebase (100) as its rate: take frames / duration there.
        const fps = info.codec === "gif" ? Math.round(100 * info.frames / info.duration) / 100 : info.fps;
        assertEquals([info.frames, info.width, info.height, fps], c.want, `${c.out}: frames, width, height, fps`);
        const codec = { mp4: "h264", webm: "vp8", gif: "gif" }[c.out.split(".").pop()!];
        assertEquals(info.codec, codec);
      },
    })
  ));
});

Deno.test("cli: bad options and inputs exit 2 with one line naming the problem", async () => {
  const notVideo = join(tmp, "notes.txt");
  Deno.writeTextFileSync(notVideo, "this is not a video");
  const bad: [string[], string][] = [
    [["text2video", "--prompt", "x", "--width", "65"], "--width"],
    [["text2video", "--prompt", "x", "--stepz", "3"], "--stepz"],
    [["text2video", "--prompt", "x", "--seed", "abc"], "--seed"],
    [["text2video", "--prompt", "x", "--steps", "2.5"], "--steps"],
    [["text2video", "--prompt", "x", "--out", "video.avi"], "--out"],
    [["text2video", "--prompt", "x", "--out", "/no/such/folder/v.mp4"], "--out"],
    [["text2video", "--prompt", "x", "--fps", "-1"], "--fps"],
    [["text2video", "--prompt", "x", "--t0", "10", "--t1", "5"], "--t0"],
    [["text2video", "--prompt", "x", "--control-scale", "1"], "--control-scale"],
    [["text2video", "--prompt"], "--prompt"],
    [["text2video", "--video-length", "4"], "--prompt"],
    [["canny", "--prompt", "x"], "--video"],
    [["canny", "--prompt", "x", "--video", join(MEDIA, "clip_life_64_6fps.gif"), "--width", "64"], "--height"],
    [["depth", "--prompt", "x", "--video", join(MEDIA, "clip_life_64_6fps.gif")], "--depth-model"],
    [
      ["depth", "--prompt", "x", "--video", join(MEDIA, "clip_life_64_6fps.gif"), "--depth-model", notVideo],
      "--depth-model",
    ],
    [["pix2pix", "--prompt", "x", "--video", "/no/such/video.mp4"], "--video"],
    [["canny", "--prompt", "x", "--video", notVideo, "--model", SD, "--controlnet", CN], "--video"],
    [["text2video", "--prompt", "x", "--model", "/no/such/model"], "--model"],
    [["bogus"], "bogus"],
  ];
  const runs = await pool(4, bad.map(([args]) => () => cli(args)));
  runs.forEach((r, i) => {
    const [args, name] = bad[i];
    const what = `main.ts ${args.join(" ")}`;
    assertEquals(r.code, 2, `${what}: exit code (stderr: ${r.stderr})`);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 1, `${what}: one line, got:\n${r.stderr}`);
    assert(lines[0].startsWith("error: ") && lines[0].includes(name), `${what}: "${lines[0]}" should name ${name}`);
    assert(!/\n\s+at /.test(r.stderr), `${what}: no stack trace`);
  });
});

Deno.test("cli: a GPU failure exits 1 with one line", async () => {
  const r = await cli(["text2video", "--prompt", "x", "--adapter", "no-such-gpu-anywhere"]);
  assertEquals(r.code, 1, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assert(lines[0].includes("no-such-gpu-anywhere"), lines[0]);
});

Deno.test("cli: --help, per mode", async () => {
  const [all, canny, t2v, none] = await pool(4, [
    () => cli(["--help"]),
    () => cli(["canny", "--help"]),
    () => cli(["text2video", "--help"]),
    () => cli([]),
  ]);
  assertEquals([all.code, canny.code, t2v.code], [0, 0, 0]);
  for (const m of ["text2video", "pix2pix", "pose", "canny", "depth", "serve"]) assert(all.stdout.includes(m), m);
  assert(canny.stdout.includes("--low-threshold") && canny.stdout.includes("[default: 100]"), canny.stdout);
  assert(!canny.stdout.includes("--t0"), "canny has no --t0");
  assert(t2v.stdout.includes("--motion-x") && !t2v.stdout.includes("--video "), t2v.stdout);
  assertEquals(none.code, 2, "no mode at all is a usage error");
});
