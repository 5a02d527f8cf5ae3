// tools/bench.ts in a subprocess: one cheap kernel and the tiny UNet with --quick, checked for the tables' columns
// and numeric values; --json; argument errors. The peers' plumbing: a child's deadline, ONNX external data.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import type * as Ort from "onnxruntime-web";
import { exportedOnnx, partialRows, type PeerRow, readWhole, runChild } from "../tools/bench/peers.ts";

function assertMatch(s: string, re: RegExp): void {
  assert(re.test(s), `${JSON.stringify(s)} does not match ${re}`);
}

const BENCH = new URL("../tools/bench.ts", import.meta.url).pathname;
const hasGpu = "gpu" in navigator && !!navigator.gpu;

async function bench(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BENCH, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The table whose header line starts with `first`: header cells and rows, split on runs of 2+ spaces. */
function tableAfter(text: string, first: string): { headers: string[]; rows: Record<string, string>[] } {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith(`${first}  `));
  assert(at >= 0, `no table with first column "${first}" in:\n${text}`);
  const split = (l: string) => l.trim().split(/\s{2,}/);
  const headers = split(lines[at]);
  assertMatch(lines[at + 1], /^-+( +-+)*$/);
  const rows: Record<string, string>[] = [];
  for (const l of lines.slice(at + 2)) {
    if (!l.trim()) break;
    const cells = split(l);
    assertEquals(cells.length, headers.length, `row "${l}" does not fill the columns ${headers.join(" | ")}`);
    rows.push(Object.fromEntries(headers.map((h, i) => [h, cells[i]])));
  }
  return { headers, rows };
}

function positive(row: Record<string, string>, col: string): number {
  const v = Number(row[col]);
  assert(Number.isFinite(v) && v > 0, `column "${col}" is not a positive number: ${JSON.stringify(row)}`);
  return v;
}

Deno.test({
  name: "bench: --quick kernel table and tiny UNet table",
  ignore: !hasGpu,
  fn: async () => {
    const r = await bench(
      "--quick",
      "--filter",
      "^unary\\.silu ",
      "--precision",
      "f32",
      "--tiny-latent",
      "8",
      "--frames",
      "2",
    );
    assertEquals(r.code, 0, r.stderr);
    const timestamps = /timestamp-query yes/.test(r.stdout);

    const k = tableAfter(r.stdout, "op");
    assertEquals(k.headers, ["op", "shape", "dtype", "iters", "wall ms", "gpu ms", "rate", "unit", "note"]);
    assertEquals(k.rows.length, 1);
    const silu = k.rows[0];
    assertEquals([silu.op, silu.dtype, silu.unit, silu.note], ["unary.silu", "f32", "GB/s", "-"]);
    assertEquals(silu.iters, "1");
    positive(silu, "wall ms");
    positive(silu, "rate");
    if (timestamps) positive(silu, "gpu ms");

    const u = tableAfter(r.stdout, "dtype");
    assertEquals(u.headers, [
      "dtype",
      "batch",
      "attention",
      "iters",
      "wall ms",
      "record ms",
      "gpu ms",
      "gpu/wall",
      "wall+ts ms",
      "dispatches",
      "timed",
      "note",
    ]);
    assertEquals(u.rows.map((x) => [x.dtype, x.batch, x.attention]), [["f32", "2", "self"], [
      "f32",
      "4",
      "cross-frame F=2",
    ]]);
    for (const row of u.rows) {
      assertEquals(row.note, "-");
      positive(row, "wall ms");
      positive(row, "record ms");
      assert(positive(row, "dispatches") >= 100, `a UNet call is hundreds of dispatches: ${JSON.stringify(row)}`);
      if (timestamps) {
        positive(row, "gpu ms");
        assertMatch(row["gpu/wall"], /^\d+%$/);
        positive(row, "wall+ts ms");
        assertEquals(row.timed, "all");
      }
    }
    if (timestamps) {
      const top = tableAfter(r.stdout, "call");
      assertEquals(top.headers, ["call", "kernel", "dispatches", "gpu ms", "share"]);
      assert(top.rows.some((x) => x.kernel === "conv2d"), "conv2d is among the top kernels");
    }
  },
});

Deno.test({
  name: "bench: --json",
  ignore: !hasGpu,
  fn: async () => {
    const r = await bench("--quick", "--json", "--parts", "kernels", "--filter", "^cfg ", "--precision", "f32");
    assertEquals(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assertEquals(typeof j.adapter.name, "string");
    assertEquals(j.kernels.length, 1);
    const row = j.kernels[0];
    assertEquals([row.op, row.dtype, row.status, row.unit, row.iters], ["cfg", "f32", "ok", "GB/s", 1]);
    assert(row.wallMs > 0 && row.rate > 0 && row.bytes > 0, JSON.stringify(row));
    assertEquals(j.unet, []);
    assertEquals(j.full, []);
  },
});

Deno.test("bench: bad arguments exit 2 with a message", async () => {
  for (
    const [args, msg] of [
      [["--precision", "f64"], "--precision must be f32 or f16"],
      [["--parts", "kernels,nope"], 'unknown part "nope"'],
      [["--latent", "0"], "--latent must be an integer >= 1"],
    ] as const
  ) {
    const r = await bench(...args);
    assertEquals(r.code, 2, r.stderr);
    assert(r.stderr.includes(msg), `stderr lacks "${msg}": ${r.stderr}`);
  }
});

Deno.test("bench peers: a child killed at its deadline keeps what it printed; finished batches survive", async () => {
  const t0 = performance.now();
  const c = await runChild("bash", ["-c", `echo '{"progress":"setup done"}'; echo err >&2; exec sleep 30`], {
    timeoutS: 1,
  });
  assert(performance.now() - t0 < 10_000, "the deadline did not kill the child");
  assert(c.timedOut, "not reported as timed out");
  assertEquals(c.stdout.trim(), `{"progress":"setup done"}`);
  assertEquals(c.stderr.trim(), "err");

  const row = (batch: number): PeerRow => ({
    peer: "onnxruntime-web webgpu",
    device: "-",
    dtype: "f16",
    batch,
    latent: 64,
    iters: 0,
    ms: null,
    setupS: null,
  });
  const finished = { ...row(2), iters: 3, ms: 812.5, setupS: 41 };
  const out = [
    JSON.stringify({ progress: "session created in 41.0 s" }),
    JSON.stringify({ progress: "batch 2 done", row: finished }),
    "a line that is no JSON",
    JSON.stringify({ progress: "session created in 41.0 s; batch 16: first call" }),
  ].join("\n");
  const rows = partialRows([row(2), row(16)], out, "timed out after 60 s");
  assertEquals(rows[0], finished);
  assertEquals(rows[1].ms, null);
  assertEquals(rows[1].error, "timed out after 60 s (session created in 41.0 s; batch 16: first call)");
  assertEquals(partialRows([row(2)], "", "failed")[0].error, "failed");
});

// --- ONNX external data (export_unet_onnx.py --external-data, through tools/gpu_check/onnx_external.py) ---------

/** Protobuf field: a number as a varint, a string or bytes length-delimited. */
function pb(n: number, x: number | string | Uint8Array): Uint8Array {
  const varint = (v: number) => {
    const out: number[] = [];
    for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v % 128) | 0x80);
    out.push(v);
    return out;
  };
  if (typeof x === "number") return new Uint8Array([...varint(n << 3), ...varint(x)]);
  const bytes = typeof x === "string" ? new TextEncoder().encode(x) : x;
  return new Uint8Array([...varint((n << 3) | 2), ...varint(bytes.length), ...bytes]);
}
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};

/** y = (x + W) * S, float32 [2, 512]: W (4 KiB) inline, S (4 bytes) inline. */
function tinyModel(w: Float32Array, s: number): Uint8Array {
  const tensor = (name: string, dims: number[], data: Float32Array) =>
    cat(...dims.map((d) => pb(1, d)), pb(2, 1), pb(8, name), pb(9, new Uint8Array(data.buffer)));
  const info = (name: string) =>
    cat(pb(1, name), pb(2, pb(1, cat(pb(1, 1), pb(2, cat(pb(1, pb(1, 2)), pb(1, pb(1, 512))))))));
  const node = (op: string, ins: string[], out: string) => cat(...ins.map((i) => pb(1, i)), pb(2, out), pb(4, op));
  const graph = cat(
    pb(1, node("Add", ["x", "W"], "y1")),
    pb(1, node("Mul", ["y1", "S"], "y")),
    pb(2, "g"),
    pb(5, tensor("W", [2, 512], w)),
    pb(5, tensor("S", [1], new Float32Array([s]))),
    pb(11, info("x")),
    pb(12, info("y")),
  );
  return cat(pb(1, 8), pb(8, cat(pb(1, ""), pb(2, 17))), pb(7, graph));
}

const hasPython = (() => {
  try {
    return new Deno.Command("python3", { args: ["-c", "pass"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "bench peers: onnx_external.py moves the large initializers to OUT.data; onnxruntime-web runs the pair",
  ignore: !hasPython,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const w = Float32Array.from({ length: 1024 }, (_, i) => Math.sin(i) * 3);
      await Deno.writeFile(`${dir}/inline.onnx`, tinyModel(w, 0.5));
      const script = new URL("../tools/gpu_check/onnx_external.py", import.meta.url).pathname;
      const c = await runChild("python3", [script, `${dir}/inline.onnx`, `${dir}/split.onnx`], { timeoutS: 60 });
      assertEquals(c.code, 0, c.stderr);
      assertMatch(c.stderr, /^1 initializers \(4096 bytes\) in split\.onnx\.data/);
      // W's bytes, as they were; S (under 1 KiB) stays in the graph.
      assertEquals([...await Deno.readFile(`${dir}/split.onnx.data`)], [...new Uint8Array(w.buffer)]);
      const sizes = [(await Deno.stat(`${dir}/inline.onnx`)).size, (await Deno.stat(`${dir}/split.onnx`)).size];
      assert(sizes[0] > 4096 && sizes[1] < 512, `graph sizes before and after: ${sizes}`);
      const m = exportedOnnx(`${dir}/split.onnx`, "f32");
      assertEquals(m.external, { "split.onnx.data": `${dir}/split.onnx.data` });
      assertEquals(exportedOnnx(`${dir}/inline.onnx`, "f32").external, undefined);

      const ort = (await import("onnxruntime-web")) as typeof Ort;
      ort.env.wasm.numThreads = 1;
      const externalData = Object.entries(m.external!).map(([path, file]) => ({ path, data: Deno.readFileSync(file) }));
      const session = await ort.InferenceSession.create(await readWhole(m.path), { externalData });
      const x = Float32Array.from({ length: 1024 }, (_, i) => i / 100);
      const r = await session.run({ x: new ort.Tensor("float32", x, [2, 512]) });
      const y = r.y.data as Float32Array;
      await session.release();
      assertEquals([...y], [...x].map((v, i) => Math.fround(Math.fround(v + w[i]) * 0.5)));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
