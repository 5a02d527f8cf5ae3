// GroupNorm (shaders/groupnorm.wgsl, with shaders/groupnorm_stats.wgsl for large groups) and LayerNorm
// (shaders/layernorm.wgsl).
import statsSrc from "../../shaders/groupnorm_stats.wgsl" with { type: "text" };
import groupNormSrc from "../../shaders/groupnorm.wgsl" with { type: "text" };
import reduceSrc from "../../shaders/groupnorm_reduce.wgsl" with { type: "text" };
import mergeSrc from "../../shaders/groupnorm_merge.wgsl" with { type: "text" };
import mergeSgSrc from "../../shaders/groupnorm_merge_sg.wgsl" with { type: "text" };
import layerNormSumSrc from "../../shaders/layernorm_sum.wgsl" with { type: "text" };
import layerNormSumSgSrc from "../../shaders/layernorm_sum_sg.wgsl" with { type: "text" };
import layerNormSrc from "../../shaders/layernorm.wgsl" with { type: "text" };
import { BYTES, GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { assertSameDType, assertShape, grid1d, itemsPerBinding, splitItems } from "./launch.ts";
import { vecConsts, vecSource, widthFor } from "./vec.ts";

// GroupNorm splits each group into chunks of about this many storage units (vec4 or scalar), one workgroup each,
// so that small batches still fill the GPU; at most MAX_CHUNKS per group keeps the merge in pass 2 cheap.
const CHUNK_UNITS = 1024;
const MAX_CHUNKS = 256;

function checkOut(op: string, x: Tensor, out?: Tensor): void {
  if (!out) return;
  assertShape(op, "out", out, x.shape);
  assertSameDType(op, x, out);
  // WebGPU rejects a dispatch that binds one buffer both read-only and writable.
  if (out.buffer === x.buffer) throw new GpuError(`${op}: out must not share x's buffer (no in-place normalisation)`);
}

/** PyTorch GroupNorm over x [N, C, ...spatial] (any number of trailing dims incl. none), affine gamma/beta [C];
 *  optional fused SiLU after the affine (diffusers resnets: norm -> silu). `stats` [N * groups * 4] f32 gives each
 *  (n, group)'s (count, mean, M2, -) instead of computing them from x: x is then a part (a band of rows) of the map
 *  those statistics describe. */
export function groupNorm(
  x: Tensor,
  groups: number,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  opts: { silu?: boolean; out?: Tensor; stats?: Tensor } = {},
): Tensor {
  const op = "groupNorm";
  if (x.shape.length < 2) throw new GpuError(`${op}: x has shape [${x.shape}], expected [N, C, ...spatial]`);
  const [N, C] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) {
    throw new GpuError(`${op}: ${C} channels do not split into ${groups} groups`);
  }
  assertShape(op, "gamma", gamma, [C]);
  assertShape(op, "beta", beta, [C]);
  assertSameDType(op, x, gamma, beta);
  checkOut(op, x, opts.out);
  if (opts.stats) {
    assertShape(op, "stats", opts.stats, [N * groups * 4]);
    if (opts.stats.dtype !== "f32") throw new GpuError(`${op}: stats must be f32, got ${opts.stats.dtype}`);
  }
  const dev = x.dev;
  const y = opts.out ?? empty(dev, x.shape, x.dtype);
  const S = x.numel / (N * C);
  const cg = C / groups;
  if (x.numel === 0) return y;
  // vec4 needs every vector inside one channel.
  const w = widthFor(S);
  const units = (cg * S) / w;
  const chunks = Math.min(MAX_CHUNKS, Math.ceil(units / CHUNK_UNITS));
  const chunk = Math.ceil(units / chunks);
  // Threads per workgroup: enough for the chunk, no more (idle threads still pay for every barrier).
  const WG = Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(chunk))));
  // The workgroup merge on subgroups where the device has them (pipeline/gpu/subgroups.ts).
  const SG = dev.subgroups, merge = reduceSrc + (SG ? mergeSgSrc : mergeSrc);
  const kn = (onePass: boolean, given = false) =>
    dev.kernel(
      "groupnorm",
      vecSource(groupNormSrc + merge, w),
      vecConsts(w, { SILU: !!opts.silu, WG, ONEPASS: onePass, GIVEN: given, SG }),
      x.dtype,
    );
  /** Normalise `count` consecutive groups starting at group g0 of the channel order (x rows of cg * S elements). */
  const run = (start: number, count: number, g0: number) => {
    const whole = count === N * groups;
    const xs = whole ? x : x.view([count * cg * S], start * (cg * S));
    const ys = whole ? y : y.view([count * cg * S], start * (cg * S));
    if (count > 65535) throw new GpuError(`${op}: ${count} groups in one dispatch exceed 65535 workgroups`);
    const pn = new Params().u(units, chunk, chunks, S / w, groups, cg).f(eps).u(g0);
    if (opts.stats) {
      const st = opts.stats.view([count * 4], start * 4);
      const bs = [xs.binding(), st.binding(), gamma.binding(), beta.binding(), ys.binding()];
      dev.dispatch(kn(false, true), pn, bs, [chunks, count]);
      return;
    }
    if (chunks === 1) {
      // The whole group fits one workgroup: statistics and normalisation in one dispatch (x stands in for `part`).
      const bs = [xs.binding(), xs.binding(), gamma.binding(), beta.binding(), ys.binding()];
      dev.dispatch(kn(true), pn, bs, [1, count]);
      return;
    }
    const ks = dev.kernel("groupnorm_stats", vecSource(statsSrc + merge, w), vecConsts(w, { WG, SG }), x.dtype);
    const part = empty(dev, [count * chunks * 4], "f32");
    dev.dispatch(ks, new Params().u(units, chunk, chunks, 0), [xs.binding(), part.binding()], [chunks, count]);
    const bs = [xs.binding(), part.binding(), gamma.binding(), beta.binding(), ys.binding()];
    dev.dispatch(kn(false), pn, bs, [chunks, count]);
    part.release();
  };
  // Groups are independent: past the binding limit split between images, or between the groups of one image.
  const eb = BYTES[x.dtype], imageBytes = C * S * eb;
  const images = Math.min(itemsPerBinding(dev, N, [imageBytes]), Math.floor(65535 / groups));
  if (images > 0) {
    for (let n0 = 0; n0 < N; n0 += images) run(n0 * groups, Math.min(images, N - n0) * groups, 0);
    return y;
  }
  const per = Math.min(splitItems(op, dev, "groups", groups, [cg * S * eb]), 65535);
  for (let n = 0; n < N; n++) {
    for (let g0 = 0; g0 < groups; g0 += per) run(n * groups + g0, Math.min(per, groups - g0), g0);
  }
  return y;
}

/** PyTorch LayerNorm over the last dim C of x [..., C], gamma/beta [C]. */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number, opts: { out?: Tensor } = {}): Tensor {
  const op = "layerNorm";
  if (x.shape.length < 1) throw new GpuError(`${op}: x has shape [${x.shape}], expected [..., C]`);
  const C = x.shape[x.shape.length - 1];
  assertShape(op, "gamma", gamma, [C]);
  assertShape(op, "beta", beta, [C]);
  assertSameDType(op, x, gamma, beta);
  checkOut(op, x, opts.out);
  const dev = x.dev;
  const y = opts.out ?? empty(dev, x.shape, x.dtype);
  if (x.numel === 0) return y;
  const rows = x.numel / C;
  const w = widthFor(C);
  const units = C / w;
  // Small rows: 64 threads; each thread keeps its R units in registers when R is small.
  const wg = units <= 1024 ? 64 : 256;
  const R = Math.ceil(units / wg);
  const cache = R <= 16;
  const SG = dev.subgroups;
  const k = dev.kernel(
    "layernorm",
    vecSource(layerNormSrc + (SG ? layerNormSumSgSrc : layerNormSumSrc), w),
    vecConsts(w, { WG: wg, R, CACHE: cache, RC: cache ? R : 1, SG }),
    x.dtype,
  );
  // Rows are independent: split them past the binding limit.
  const eb = BYTES[x.dtype];
  const per = splitItems(op, dev, "rows", rows, [C * eb, C * eb]);
  for (let r0 = 0; r0 < rows; r0 += per) {
    const m = Math.min(per, rows - r0);
    const xs = m === rows ? x : x.view([m, C], r0 * C), ys = m === rows ? y : y.view([m, C], r0 * C);
    const { groups } = grid1d(m, 1);
    const p = new Params().u(m, units, groups[0]).f(eps);
    dev.dispatch(k, p, [xs.binding(), gamma.binding(), beta.binding(), ys.binding()], groups);
  }
  return y;
}
