// GEGLU activation (shaders/geglu.wgsl).
import gegluSrc from "../../shaders/geglu.wgsl" with { type: "text" };
import erfSrc from "../../shaders/erf.wgsl" with { type: "text" };
import { GpuError, Params } from "../gpu/device.ts";
import { empty, type Tensor } from "../gpu/tensor.ts";
import { grid1d } from "./launch.ts";
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
  const n = y.numel / w;
  const k = dev.kernel("geglu", vecSource(gegluSrc + erfSrc, w), vecConsts(w), x.dtype);
  const { groups, row } = grid1d(n, 256);
  dev.dispatch(k, new Params().u(n, D / w, row, 0), [x.binding(), y.binding()], groups);
  return y;
}
