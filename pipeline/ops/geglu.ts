// GEGLU activation (shaders/geglu.wgsl).
import gegluSrc from "../../shaders/geglu.wgsl" with { type: "text" };
import erfSrc from "../../shaders/erf.wgsl" with { type: "text" };
import { BYTES, GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { grid1d, rangeView, splitItems } from "./launch.ts";
import { vecConsts, vecSource, widthFor } from "./vec.ts";

/** diffusers GEGLU after its projection: x [..., 2D] -> h * gelu_erf(gate) with h = x[..., :D], gate = x[..., D:]. */
export function geglu(x: Tensor): Tensor {
  const last = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || last % 2 !== 0) {
    throw new GpuError(`geglu: x has shape [${x.shape}], expected [..., 2D] (an even last dimension)`);
  }
  const dev = x.dev;
  const D = last / 2;
  const y = empty(dev, [...x.shape.slice(0, -1), D], x.dtype);
  const w = widthFor(D);
  if (y.numel === 0) return y;
  const k = dev.kernel("geglu", vecSource(gegluSrc + erfSrc, w), vecConsts(w), x.dtype);
  // Rows are independent: split them past the binding limit (many frames of large images).
  const rows = y.numel / D, eb = BYTES[x.dtype];
  const chunk = splitItems("geglu", dev, "rows", rows, [2 * D * eb, D * eb]);
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const m = Math.min(chunk, rows - r0);
    const xs = m === rows ? x : rangeView(x, r0, 2 * D, [m, 2 * D]);
    const ys = m === rows ? y : rangeView(y, r0, D, [m, D]);
    const { groups, row } = grid1d(m * D / w, 256);
    dev.dispatch(k, new Params().u(m * D / w, D / w, row, 0), [xs.binding(), ys.binding()], groups);
  }
  return y;
}
