// gpu-check's report: one JSON document (report.json) and its Markdown rendering (report.md). Both are rewritten
// after every section, so a run cut short still leaves what it measured.
import { join } from "node:path";
import type { KernelRow } from "../bench/kernels.ts";
import { kernelTable, mib, ms, percent as pct, rate, table } from "../bench/format.ts";
import { type PeerRow, ratioText } from "../bench/peers.ts";
import type { AdapterReport, MachineReport } from "./adapter.ts";
import type { Counts } from "./correctness.ts";
import type { Ceiling, Ceilings } from "./probes.ts";
import type { Text2VideoReport, UNetReportRow, UNetVariantRow } from "./models.ts";
import { attnText, type TilesReport, tileText } from "./tiles.ts";

export const SECTIONS = [
  "adapter",
  "correctness",
  "ceilings",
  "kernels",
  "tiles",
  "unet",
  "text2video",
  "peers",
] as const;
export type Section = typeof SECTIONS[number];

export interface SectionStatus {
  status: "ok" | "error" | "skipped" | "pending";
  seconds: number;
  error?: string;
}

export interface KernelReportRow extends KernelRow {
  /** rate / the measured ceiling at this dtype (FMA for FLOP-bound cases, copy for byte-bound ones). */
  share: number | null;
}

export interface PeerRatio {
  peer: string;
  batch: number;
  zerovidMs: number | null;
  peerMs: number | null;
  /** peer time / zerovid time: > 1 means zerovid is faster. */
  speedup: number | null;
  /** The peer's implied rate: zerovid's FLOP count of the same call (GEMM-shaped work) / the peer's time. */
  tflops: number | null;
  /** tflops / this adapter's FMA ceiling at the peer's dtype (null for a peer on the CPU): past 1, the peer's
   *  GEMMs run on more than FMA units (tensor cores). */
  ofCeiling: number | null;
}

export interface Report {
  tool: "zerovid gpu-check";
  version: 1;
  small: boolean;
  started: string;
  seconds: number;
  budgetS: number;
  machine: MachineReport | null;
  adapter: AdapterReport | null;
  sections: Record<Section, SectionStatus>;
  correctness: { ops: Counts | null; golden: { f32: Counts | null; f16: Counts | null } };
  ceilings: Ceilings | null;
  kernels: KernelReportRow[];
  /** GEMM tiles measured on this adapter (the UNet and text-to-video sections run with the winners). */
  tiles: TilesReport | null;
  /** One call at each batch: times, GPU time by kernel, FLOPs against the FMA ceiling. */
  unet: UNetReportRow[];
  /** The same calls with every GEMM on the GEMM core's other f16 math (f16 only; null: not run). */
  unetMath: { variant: string; rows: UNetVariantRow[] } | null;
  text2video: Text2VideoReport | null;
  peers: {
    /** The UNet the peers and zerovid ran. */
    model: string;
    rows: PeerRow[];
    /** zerovid's own rows for the same calls (from the unet section). */
    ratios: PeerRatio[];
    /** "PyTorch eager: why" for each peer that did not run. */
    missing: string[];
    /** python, torch and diffusers versions used, or null. */
    torch: string | null;
  };
}

export function emptyReport(small: boolean, budgetS: number): Report {
  const sections = Object.fromEntries(SECTIONS.map((s) => [s, { status: "pending", seconds: 0 }])) as Record<
    Section,
    SectionStatus
  >;
  return {
    tool: "zerovid gpu-check",
    version: 1,
    small,
    started: new Date().toISOString(),
    seconds: 0,
    budgetS,
    machine: null,
    adapter: null,
    sections,
    correctness: { ops: null, golden: { f32: null, f16: null } },
    ceilings: null,
    kernels: [],
    tiles: null,
    unet: [],
    unetMath: null,
    text2video: null,
    peers: { model: "", rows: [], ratios: [], missing: [], torch: null },
  };
}

/** Three significant digits (TFLOP/s of a tiny model on a CPU adapter are thousandths). */
const sig = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? "-" : Math.abs(x) >= 1000 ? x.toFixed(0) : x.toPrecision(3);
const sec = (x: number | null | undefined) => x === null || x === undefined ? "-" : x.toFixed(2);

function countsLine(label: string, c: Counts | null): string {
  if (!c) return `- ${label}: not run`;
  const skip = c.skipped ? `, ${c.skipped} skipped (${c.skipReason})` : "";
  return `- ${label}: **${c.passed} passed, ${c.failed} failed** of ${c.run} run (${c.total} in the set${skip}), ` +
    `${c.seconds.toFixed(1)} s`;
}

function ceilingCell(c: Ceiling): string {
  return c.rate === null ? `- (${c.error ?? "not measured"})` : `${rate(c.rate)} ${c.unit}`;
}

const ARITHMETIC_COLUMNS = [
  "dtype",
  "batch",
  "GFLOP",
  "linear",
  "conv2d",
  "attention",
  "gpu ms",
  "TFLOP/s",
  "wall TFLOP/s",
  "FMA ceiling",
  "floor ms",
  "floor/gpu",
];

/** The UNet calls' FLOPs against the adapter's FMA ceiling. */
function unetArithmeticLines(rows: UNetReportRow[]): string[] {
  const counted = rows.filter((u) => u.arithmetic);
  if (!counted.length) return [];
  return [
    "",
    "### Arithmetic: GEMM-shaped work only",
    "",
    "FLOPs counted as the ops record them: 2*M*N*K of every linear layer and of conv2d's implicit GEMM " +
    "(K = Cin*KH*KW), and attention's QK^T and PV. GroupNorm, elementwise ops, softmax and copies are not counted. " +
    "TFLOP/s = FLOPs / the call's summed GPU time (wall: / its wall time). Floor = those FLOPs at this adapter's " +
    "measured FMA ceiling at the call's dtype (ceilings section): the fastest any FMA-based (non-tensor-core) " +
    "kernel set could run the call here; floor/gpu = how near the kernels come to it.",
    "",
    "```",
    table(
      ARITHMETIC_COLUMNS,
      counted.map((u) => {
        const x = u.arithmetic!;
        return [
          u.dtype,
          u.batch,
          sig(x.gflop),
          sig(x.linearGflop),
          sig(x.conv2dGflop),
          sig(x.attentionGflop),
          ms(u.gpuMs),
          sig(x.tflops),
          sig(x.wallTflops),
          sig(x.ceilingTflops),
          ms(x.floorMs),
          pct(x.ofCeiling),
        ];
      }),
      ARITHMETIC_COLUMNS.slice(1),
    ),
    "```",
    "",
    "GFLOP per call (linear, conv2d, attention: its parts); FMA ceiling in TFLOP/s.",
  ];
}

/** The UNet calls again with the GEMM core's other f16 math, beside the default ones. */
function unetMathLines(r: Report): string[] {
  const v = r.unetMath;
  if (!v) return [];
  const cols = ["batch", "default wall ms", "default gpu ms", "variant wall ms", "variant gpu ms", "variant/default"];
  return [
    "",
    `### The same calls with ${v.variant}`,
    "",
    "```",
    table(
      cols,
      v.rows.map((x) => {
        const d = r.unet.find((u) => u.batch === x.batch);
        const ratio = x.vsDefault === null ? "-" : x.vsDefault.toFixed(3);
        return [x.batch, ms(d?.wallMs ?? null), ms(d?.gpuMs ?? null), ms(x.wallMs), ms(x.gpuMs), x.error ?? ratio];
      }),
      cols,
    ),
    "```",
    "",
    "variant/default: GPU time. Each shape's own choice goes to the tiles file (tiles section); this is the whole " +
    "model switched at once ($ZEROVID_GEMM_F16).",
  ];
}

/** Each UNet call's GPU time by kernel, or why there is none. */
function unetKernelLines(r: Report): string[] {
  const L = ["", "### GPU time by kernel", ""];
  const rows = r.unet.filter((u) => u.kernels.length);
  if (!rows.length) {
    const why = r.adapter && !r.adapter.features["timestamp-query"]
      ? "this adapter has no timestamp-query, so per-dispatch GPU times cannot be measured"
      : "no call was timed with timestamps";
    return [...L, `No per-kernel breakdown: ${why}.`];
  }
  const partly = rows.filter((u) => u.timed !== null && u.dispatches !== null && u.timed < u.dispatches);
  L.push(
    "Every kernel of one call, largest GPU time first: dispatches per call, GPU ms per call, share of the call's " +
      "timed GPU time." +
      partly.map((u) =>
        ` Batch ${u.batch}: only ${Math.round(u.timed!)} of ${Math.round(u.dispatches!)} dispatches have timestamps.`
      ).join(""),
    "",
    "```",
    kernelTable(rows.map((u) => ({ label: `${u.dtype} B=${u.batch}`, kernels: u.kernels }))),
    "```",
  );
  return L;
}

export function renderMarkdown(r: Report): string {
  const L: string[] = [];
  const a = r.adapter, m = r.machine;
  L.push(`# zerovid gpu-check${r.small ? " (--small)" : ""}`, "");
  L.push(`Started ${r.started}, ${r.seconds.toFixed(0)} s of a ${r.budgetS} s budget.`, "");
  L.push("| section | status | seconds | note |", "| --- | --- | --- | --- |");
  for (const s of SECTIONS) {
    const st = r.sections[s];
    L.push(`| ${s} | ${st.status} | ${st.seconds.toFixed(1)} | ${(st.error ?? "").replace(/\|/g, "/")} |`);
  }
  L.push("", "## Adapter", "");
  if (a) {
    L.push(`- name: ${a.name}${a.fallback ? " (software / fallback adapter)" : ""}`);
    L.push(`- vendor: ${a.vendor || "-"}, architecture: ${a.architecture || "-"}, device: ${a.device || "-"}`);
    L.push(`- driver: ${a.driver}`);
    L.push(
      `- features: shader-f16 ${a.features["shader-f16"] ? "yes" : "no"}, subgroups ${
        a.features.subgroups ? "yes" : "no"
      }${a.subgroupSizes ? ` (size ${a.subgroupSizes.join("-")})` : ""}, timestamp-query ${
        a.features["timestamp-query"] ? "yes" : "no"
      }`,
    );
    if (a.subgroupsUsed) L.push(`- subgroups in zerovid's reductions: ${a.subgroupsUsed}`);
    L.push(`- all features: ${a.allFeatures.join(", ")}`);
    const keys = [
      "maxBufferSize",
      "maxStorageBufferBindingSize",
      "maxComputeWorkgroupStorageSize",
      "maxComputeInvocationsPerWorkgroup",
      "maxComputeWorkgroupSizeX",
      "maxComputeWorkgroupsPerDimension",
      "maxStorageBuffersPerShaderStage",
    ];
    L.push(`- limits: ${keys.map((k) => `${k} ${a.limits[k]}`).join(", ")} (all in report.json)`);
  }
  if (m) {
    L.push(
      `- machine: ${m.cpuModel}, ${m.cpus} CPUs, ${m.memoryGiB} GiB, ${m.os} ${m.arch}; Deno ${m.deno}; ` +
        `load average at start ${m.loadAvg.map((x) => x.toFixed(2)).join(" ")}`,
    );
  }

  L.push("", "## Correctness on this adapter", "");
  L.push(countsLine("op table (tests/ops)", r.correctness.ops));
  L.push(countsLine("golden set f32", r.correctness.golden.f32));
  L.push(countsLine("golden set f16", r.correctness.golden.f16));
  const fails = [
    ...(r.correctness.ops?.failures ?? []),
    ...(r.correctness.golden.f32?.failures ?? []),
    ...(r.correctness.golden.f16?.failures ?? []),
  ];
  if (fails.length) {
    L.push("", "Failures:", "");
    for (const f of fails.slice(0, 40)) L.push(`- ${f.name}: ${f.message}`);
    if (fails.length > 40) L.push(`- ... ${fails.length - 40} more in report.json`);
  }

  L.push("", "## Ceilings (probe kernels)", "");
  if (r.ceilings) {
    const c = r.ceilings;
    L.push("| probe | rate | from | ms/call | size |", "| --- | --- | --- | --- | --- |");
    for (const [label, x] of [["FMA f32", c.fmaF32], ["FMA f16", c.fmaF16], ["copy", c.copy]] as const) {
      L.push(`| ${label} | ${ceilingCell(x)} | ${x.from ?? "-"} | ${ms(x.ms)} | ${x.size || "-"} |`);
    }
  }

  L.push("", "## Kernels at SD 1.5 shapes (512x512, CFG batch 2)", "");
  if (r.kernels.length) {
    L.push("```");
    L.push(table(
      ["op", "shape", "dtype", "iters", "ms", "rate", "unit", "of ceiling", "note"],
      r.kernels.map((k) => [
        k.op,
        k.shape,
        k.dtype,
        k.status === "ok" ? k.iters : "-",
        ms(k.gpuMs ?? k.wallMs),
        rate(k.rate),
        k.unit,
        pct(k.share),
        k.note,
      ]),
      ["iters", "ms", "rate", "of ceiling"],
    ));
    L.push("```");
  }

  L.push("", "## Tiles measured on this adapter", "");
  if (r.tiles) {
    const t = r.tiles;
    const attnChanged = t.attention.filter((x) => x.best !== x.production).length;
    L.push(
      `Attention: ${t.attention.length} head dims of one UNet call, each timed on its heaviest call shape with every ` +
        `candidate kernel and tiling; ${attnChanged} picks changed.`,
      "",
      "```",
      table(
        ["D", "shape", "calls", "of them", "production", "ms", "measured", "ms", "tried"],
        t.attention.map((x) => [
          x.D,
          x.shape,
          x.calls,
          x.shapeCalls,
          attnText(x.production),
          ms(x.productionMs),
          attnText(x.best),
          ms(x.bestMs),
          x.tried,
        ]),
        ["D", "calls", "of them", "ms", "tried"],
      ),
      "```",
      "",
    );
    const changed = t.rows.filter((x) => tileText(x.best) !== tileText(x.scored)).length;
    L.push(
      `${t.rows.length} GEMM shapes of one UNet call (batches ${t.batches.join(", ")}, ${t.dtype}) timed with every ` +
        `candidate tile${t.untimed ? ` (${t.untimed} more not reached in time)` : ""}; ${changed} picks changed. ` +
        `Their time per call at those batches: ${ms(t.scoredMs)} ms with the table's scoring, ${ms(t.tunedMs)} ms ` +
        `measured. ${t.file ? `Written to ${t.file}: later runs on this adapter use them.` : "Not written."}`,
      "",
    );
    L.push("```");
    L.push(table(
      ["op", "shape", "calls", "scored tile", "ms", "measured tile", "ms", "tried", "ms by unroll", "winograd ms"],
      t.rows.map((x) => [
        x.op,
        x.shape,
        x.calls,
        tileText(x.scored),
        ms(x.scoredMs),
        tileText(x.best),
        ms(x.bestMs),
        x.tried,
        Object.entries(x.unrollMs ?? {}).map(([u, v]) => `${u}: ${ms(v)}`).join(", ") || "-",
        x.winogradMs === undefined ? "-" : ms(x.winogradMs),
      ]),
      ["calls", "ms", "tried", "winograd ms"],
    ));
    L.push("```");
  }

  L.push("", "## UNet, one call", "");
  if (r.unet.length) {
    L.push("```");
    L.push(table(
      ["model", "dtype", "latent", "batch", "attention", "iters", "wall ms", "gpu ms", "dispatches", "note"],
      r.unet.map((u) => [
        u.model,
        u.dtype,
        u.latent,
        u.batch,
        u.attention,
        u.error ? "-" : u.iters,
        ms(u.wallMs),
        ms(u.gpuMs),
        u.dispatches === null ? "-" : Math.round(u.dispatches),
        u.error ? `error: ${u.error}` : "",
      ]),
      ["latent", "batch", "iters", "wall ms", "gpu ms", "dispatches"],
    ));
    L.push("```", "", "wall = record + submit + wait (no timestamps); gpu = sum of the dispatches' GPU timestamps.");
    L.push(...unetArithmeticLines(r.unet), ...unetKernelLines(r), ...unetMathLines(r));
  }

  L.push("", "## Text to video, end to end", "");
  const t = r.text2video;
  if (t) {
    L.push(
      `${t.model}, ${t.dtype}, ${t.frames} frames ${t.width}x${t.height}, ${t.steps} steps` +
        (t.stepsNote ? ` (${t.stepsNote})` : "") + (t.error ? `: **error** ${t.error}` : ""),
      "",
    );
    L.push(
      `- wall: ${sec(t.wallS)} s; stages: ${Object.entries(t.stages).map(([k, v]) => `${k} ${sec(v)} s`).join(", ")}`,
    );
    L.push(
      `- GPU memory: weights ${mib(t.weightBytes)} MiB, Winograd's transformed weights ` +
        `${
          t.transformedBytes === null ? "-" : mib(t.transformedBytes)
        } MiB, activations' high-water mark (buffer pool) ` +
        `${t.peakPoolBytes === null ? "-" : mib(t.peakPoolBytes)} MiB`,
    );
    L.push(
      `- dispatches ${t.dispatches ?? "-"}, command buffers ${t.submits ?? "-"}, pipelines compiled inside the loop ` +
        `${t.lateCompiles ?? "-"}`,
    );
  }

  L.push("", "## Peers: the same UNet, same adapter, same run", "");
  const p = r.peers;
  if (p.model) L.push(`UNet: ${p.model}.${p.torch ? ` PyTorch: ${p.torch}.` : ""}`, "");
  if (p.rows.length) {
    L.push("```");
    L.push(table(
      [
        "peer",
        "device",
        "dtype",
        "batch",
        "latent",
        "iters",
        "ms/call",
        "setup s",
        "vs zerovid",
        "TFLOP/s",
        "of FMA ceiling",
        "note",
      ],
      p.rows.map((x) => {
        const ratio = p.ratios.find((q) => q.peer === x.peer && q.batch === x.batch);
        return [
          x.peer,
          x.device,
          x.dtype,
          x.batch,
          x.latent,
          x.ms === null ? "-" : x.iters,
          ms(x.ms),
          x.setupS === null ? "-" : x.setupS.toFixed(1),
          ratioText(ratio?.speedup ?? null),
          sig(ratio?.tflops),
          pct(ratio?.ofCeiling ?? null),
          x.error ? `missing: ${x.error}` : x.note,
        ];
      }),
      ["batch", "latent", "iters", "ms/call", "setup s", "TFLOP/s", "of FMA ceiling"],
    ));
    L.push("```", "");
    L.push("Ratio = peer's median ms per call / zerovid's wall ms per call at the same batch (unet section).");
    const zv = r.unet.flatMap((u) => {
      const x = u.arithmetic;
      if (!x?.wallTflops) return [];
      const of = x.ceilingTflops ? ` (${pct(x.wallTflops / x.ceilingTflops)} of the FMA ceiling)` : "";
      return [`batch ${u.batch} ${sig(x.wallTflops)} TFLOP/s${of}`];
    });
    L.push(
      "TFLOP/s = zerovid's count of the same call's GEMM-shaped FLOPs (unet section) / the peer's ms per call; of " +
        "FMA ceiling = against this adapter's measured FMA ceiling at the peer's dtype (not for a peer on the CPU). " +
        "Past 100 %, a peer's GEMMs run on more than FMA units (tensor cores): faster than any FMA-based kernel set " +
        "could be here." + (zv.length ? ` zerovid, by wall time: ${zv.join(", ")}.` : ""),
    );
  }
  if (p.missing.length) {
    L.push("", "Missing peers:", "");
    for (const x of p.missing) L.push(`- ${x}`);
  }
  return L.join("\n") + "\n";
}

export async function writeReport(dir: string, r: Report): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "report.json"), JSON.stringify(r, null, 2) + "\n");
  await Deno.writeTextFile(join(dir, "report.md"), renderMarkdown(r));
}
