// tools/gpu_check.ts --small in a subprocess on this machine's adapter: the report is complete and well formed
// (every section ran, numbers finite, correctness counts add up, each missing peer has a reason). Never a timing.
import { join } from "node:path";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { loadOpTable } from "./ops/table.ts";
import { listCases } from "../tools/golden/runner.ts";
import { GOLDEN_DIR } from "../fixtures/paths.ts";
import type { Report } from "../tools/gpu_check/report.ts";
import { SECTIONS } from "../tools/gpu_check/report.ts";
import { SMALL_SPEC } from "../tools/gpu_check/models.ts";
import type { PeerRow } from "../tools/bench/peers.ts";
import { SPLITS, TILES } from "../pipeline/ops/matmul.ts";
import { isCandidate, resetMeasuredTiles, tilesFile, tilesFor } from "../pipeline/ops/tiles.ts";

const TOOL = new URL("../tools/gpu_check.ts", import.meta.url).pathname;
/** The run takes about 2 minutes on 2 idle cores; a busy machine gets a generous deadline, never a hang. */
const DEADLINE_S = 900;

async function gpuCheck(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), DEADLINE_S * 1000);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", TOOL, ...args],
      stdout: "piped",
      stderr: "piped",
      signal: ac.signal,
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

function finitePositive(x: unknown, what: string): void {
  assert(typeof x === "number" && Number.isFinite(x) && x > 0, `${what} is not a finite positive number: ${x}`);
}

Deno.test("gpu-check: argument errors name the option", async () => {
  const noOut = await gpuCheck("--small");
  assertEquals(noOut.code, 2);
  assert(noOut.stderr.includes("--out DIR is required"), noOut.stderr);
  const badSkip = await gpuCheck("--out", "/nonexistent", "--skip", "kernels,bogus");
  assertEquals(badSkip.code, 2);
  assert(badSkip.stderr.includes(`--skip: unknown section "bogus"`), badSkip.stderr);
});

Deno.test("gpu-check --small: every section, finite numbers, correctness counts, peers or their reasons", async () => {
  const out = await Deno.makeTempDir({ prefix: "zerovid-gpu-check-" });
  try {
    const tilesDir = join(out, "tiles");
    const r = await gpuCheck("--small", "--out", out, "--tiles-dir", tilesDir);
    const seen = `exit ${r.code}\nstdout:\n${r.stdout}\nstderr (end):\n${r.stderr.slice(-3000)}`;
    assertEquals(r.code, 0, seen);
    const rep = JSON.parse(await Deno.readTextFile(join(out, "report.json"))) as Report;
    const md = await Deno.readTextFile(join(out, "report.md"));

    for (const s of SECTIONS) {
      assertEquals(rep.sections[s].status, "ok", `section ${s}: ${JSON.stringify(rep.sections[s])}`);
    }
    for (
      const h of [
        "## Adapter",
        "## Correctness",
        "## Ceilings",
        "## Kernels",
        "## Tiles",
        "## UNet",
        "## Text to video",
        "## Peers",
      ]
    ) assert(md.includes(h), `report.md has no "${h}"`);
    assert(rep.small);

    // Adapter
    const a = rep.adapter!;
    assert(a.name.length > 0 && a.driver.length > 0);
    for (const f of ["shader-f16", "subgroups", "timestamp-query"] as const) {
      assertEquals(typeof a.features[f], "boolean");
    }
    finitePositive(a.limits.maxStorageBufferBindingSize, "maxStorageBufferBindingSize");
    // Whether the reductions use subgroups, with the reason (llvmpipe does not list them, so: not in use).
    assert(
      a.features.subgroups ? /^in use|^not used/.test(a.subgroupsUsed ?? "") : !!a.subgroupsUsed,
      `subgroups: ${a.subgroupsUsed}`,
    );
    finitePositive(rep.machine!.cpus, "cpus");

    // Correctness: every case of the op table and the golden set accounted for, none failed.
    const { cases: opCases, perf } = await loadOpTable();
    const golden = await listCases(GOLDEN_DIR);
    const f16 = a.features["shader-f16"];
    const c = rep.correctness;
    for (
      const [label, k, total] of [
        ["ops", c.ops, opCases.length],
        ["golden f32", c.golden.f32, golden.length],
        ["golden f16", c.golden.f16, golden.length],
      ] as const
    ) {
      assert(k, `${label}: not in the report`);
      assertEquals(k.total, total, `${label}: total`);
      assertEquals(k.passed + k.failed, k.run, `${label}: passed + failed = run`);
      assertEquals(k.run + k.skipped, k.total, `${label}: run + skipped = total`);
      assertEquals(k.failed, 0, `${label}: ${JSON.stringify(k.failures)}`);
      if (label !== "golden f16" || f16) assert(k.run > 0, `${label}: nothing ran`);
      if (k.skipped) assert(k.skipReason, `${label}: skips without a reason`);
    }
    // --small runs one case per op and dtype: every op appears.
    assertEquals(
      c.ops!.run,
      new Set(opCases.filter((k) => f16 || k.dtype === "f32").map((k) => `${k.op}|${k.dtype}`)).size,
    );

    // Ceilings
    const ce = rep.ceilings!;
    finitePositive(ce.fmaF32.rate, "FMA f32");
    finitePositive(ce.copy.rate, "copy");
    if (f16) finitePositive(ce.fmaF16.rate, "FMA f16");
    else assert(ce.fmaF16.error, "FMA f16 without shader-f16 needs a reason");

    // Kernels: every perf case at every dtype, run or skipped with a reason; each unit measured at least once.
    const dtypes = f16 ? 2 : 1;
    assertEquals(rep.kernels.length, perf.length * dtypes);
    for (const k of rep.kernels) {
      assert(k.status === "ok" || k.status === "skipped", `${k.op} ${k.shape} ${k.dtype}: ${k.status} ${k.note}`);
      if (k.status === "ok") {
        finitePositive(k.rate, `${k.op} ${k.shape} rate`);
        finitePositive(k.share, `${k.op} ${k.shape} share of the ceiling`);
      } else assert(k.note.startsWith("skipped:"), k.note);
    }
    for (const unit of ["GB/s", "GFLOP/s"]) {
      assert(rep.kernels.some((k) => k.unit === unit && k.status === "ok"), `no ${unit} kernel measured`);
    }

    // Tiles: the UNet's GEMM shapes, each timed with every candidate; the winners that differ from the table's
    // scoring are in the adapter's tiles file, and a later run on this adapter picks them.
    const tl = rep.tiles!;
    assert(tl.rows.length > 10 && tl.untimed === 0, `${tl.rows.length} shapes timed, ${tl.untimed} not`);
    assert(tl.rows.some((x) => x.op === "conv2d") && tl.rows.some((x) => x.op === "linear"), "both GEMM kinds");
    for (const x of tl.rows) {
      // A candidate tile; split-K only for conv2d, whose kernel has it.
      assert(isCandidate(x.best, TILES, SPLITS), `${x.key}: ${JSON.stringify(x.best)}`);
      assert(x.op === "conv2d" || !x.best.splitK, `${x.key}: a split linear layer`);
      assert(x.tried >= 4 && x.bestMs <= x.scoredMs, `${x.key}: tried ${x.tried}, ${x.bestMs} vs ${x.scoredMs}`);
      finitePositive(x.calls, `${x.key} calls`);
    }
    assertEquals(tl.file, tilesFile(a.name, tilesDir));
    const saved = JSON.parse(await Deno.readTextFile(tl.file!));
    const changed = tl.rows.filter((x) => JSON.stringify(x.best) !== JSON.stringify(x.scored));
    assertEquals(saved.adapter, a.name);
    assertEquals(Object.keys(saved.shapes).sort(), changed.map((x) => x.key).sort());
    const env = Deno.env.get("ZEROVID_TILES_DIR");
    Deno.env.set("ZEROVID_TILES_DIR", tilesDir);
    resetMeasuredTiles();
    try {
      const shapes = tilesFor(a.name, a.fallback).shapes ?? {};
      for (const x of changed) assertEquals(shapes[x.key], x.best, `${x.key}: a later run picks the measured tile`);
    } finally {
      if (env === undefined) Deno.env.delete("ZEROVID_TILES_DIR");
      else Deno.env.set("ZEROVID_TILES_DIR", env);
      resetMeasuredTiles();
    }

    // UNet calls at the spec's batches
    assertEquals(rep.unet.map((u) => u.batch), SMALL_SPEC.batches);
    for (const u of rep.unet) {
      assertEquals(u.error, undefined);
      finitePositive(u.wallMs, `UNet batch ${u.batch} wall`);
      finitePositive(u.dispatches, `UNet batch ${u.batch} dispatches`);
      if (a.features["timestamp-query"]) finitePositive(u.gpuMs, `UNet batch ${u.batch} gpu`);
    }

    // Text to video end to end
    const t = rep.text2video!;
    assertEquals([t.frames, t.width, t.steps], [SMALL_SPEC.frames, SMALL_SPEC.size, SMALL_SPEC.steps]);
    finitePositive(t.wallS, "text2video wall");
    finitePositive(t.peakPoolBytes, "pool high-water mark");
    finitePositive(t.weightBytes, "weights");
    for (const s of ["start", "denoise", "decode"]) finitePositive(t.stages[s], `stage ${s}`);
    assertEquals(t.lateCompiles, 0, "pipelines compiled inside the loop");

    // Peers: PyTorch (eager, SDPA) and onnxruntime-web WebGPU at each batch, each timed or missing with a reason;
    // onnxruntime-web runs from the repository alone (committed ONNX graph, npm package).
    const p = rep.peers;
    for (const peer of ["PyTorch eager", "PyTorch SDPA", "onnxruntime-web webgpu"]) {
      for (const b of SMALL_SPEC.batches) {
        const row = p.rows.find((x) => x.peer === peer && x.batch === b);
        assert(row, `no ${peer} row at batch ${b}`);
        if (row.error) {
          assert(p.missing.some((m) => m.startsWith(peer) && m.includes(row.error!)), `${peer}: not in missing`);
        } else {
          finitePositive(row.ms, `${peer} batch ${b}`);
          const q = p.ratios.find((x) => x.peer === peer && x.batch === b);
          finitePositive(q?.speedup, `${peer} batch ${b} ratio`);
        }
      }
    }
    assert(!p.rows.some((x) => x.peer === "onnxruntime-web webgpu" && x.error), JSON.stringify(p.missing));
    assert(r.stdout.includes("onnxruntime-web webgpu batch 2:"), r.stdout);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("bench --peers --quick --json: zerovid and each peer timed, or missing with a reason", async () => {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), DEADLINE_S * 1000);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../tools/bench.ts", import.meta.url).pathname, "--peers", "--quick", "--json"],
      stdout: "piped",
      stderr: "piped",
      signal: ac.signal,
    }).output();
  } finally {
    clearTimeout(timer);
  }
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr.slice(-3000));
  const res = JSON.parse(new TextDecoder().decode(out.stdout)) as { peers: PeerRow[] };
  assertEquals(
    res.peers.map((r) => r.peer),
    ["zerovid", "onnxruntime-web webgpu", "onnxruntime-web wasm", "PyTorch eager"],
  );
  for (const r of res.peers) {
    assertEquals([r.batch, r.latent, r.dtype], [2, 8, "f32"], r.peer);
    // zerovid and onnxruntime-web run from the repository alone; PyTorch may be missing, with the reason.
    if (r.peer === "PyTorch eager" && r.error) assert(r.error.length > 10, r.error);
    else finitePositive(r.ms, `${r.peer} ms`);
  }
});
