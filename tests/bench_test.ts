// tools/bench.ts in a subprocess: one cheap kernel and the tiny UNet with --quick, checked for the tables' columns
// and numeric values; --json; argument errors.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { partialRows, type PeerRow, runChild } from "../tools/bench/peers.ts";

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
