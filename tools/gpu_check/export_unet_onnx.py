"""Export a diffusers UNet2DConditionModel to ONNX for the onnxruntime-web peer (tools/bench/peers.ts).

  python3 export_unet_onnx.py MODEL_DIR OUT.onnx [--weights-in-safetensors]                  # MODEL_DIR/unet
  python3 export_unet_onnx.py --sd15-random OUT.onnx [--f16] [--cuda] [--external-data]     # SD 1.5, random weights

Based on ../shared/ref/export_unet_onnx.py (same wrapper, same inputs, plain attention so that the graph has no
fused SDPA node). Additions:
- `--f16`: weights and compute in float16 (an SD 1.5 UNet in f32 is 3.4 GB, past what onnxruntime-web's 32-bit
  wasm heap can hold; in f16 it is 1.7 GB, one file). Inputs and output stay float32 (cast inside the graph).
- `--weights-in-safetensors`: no weights in the .onnx file: every initializer refers (ONNX external data) to its
  bytes inside MODEL_DIR/unet/diffusion_pytorch_model.safetensors, so the committed graph is small and shares the
  weights with the golden model. Needs the `onnx` package (pip or Debian's python3-onnx).
- `--external-data`: the weights (initializers of 1 KiB or more) in OUT.onnx.data beside a graph-only OUT.onnx (ONNX
  external data, one file, each tensor 64-byte aligned). onnxruntime-web then parses a 2 MB graph instead of a 1.7 GB
  protobuf, and its WebGPU EP uploads each weight from the JS buffer straight to its GPU buffer, without copying the
  model through the wasm heap (tools/bench/peers.ts passes the file as `externalData`). The graph and the weights are
  the same either way. The export goes through memory (no 1.7 GB temporary file); needs no `onnx` package.

Inputs: sample [B,4,H,W] f32, timestep [1] f32, encoder_hidden_states [B,77,C] f32 (B, H, W dynamic); output
out_sample f32. Needs torch and diffusers 0.25.1 (see docs/GPU.md for PYTHONPATH)."""
import io
import json
import mmap
import os
import struct
import sys

import torch

_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the repository
from onnx_external import split_external_data  # noqa: E402  (beside this file)
sys.dont_write_bytecode = _bytecode

# diffusers 0.25.1 runs with the huggingface_hub it was released with (0.20.3, from the ref sources); a machine's
# newer accelerate / transformers / peft need a newer hub and fail to import beside it. The UNet needs none of
# them: hide them from diffusers' availability checks (find_spec sees None in sys.modules).
for _name in ("accelerate", "transformers", "peft"):
    sys.modules.setdefault(_name, None)

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import AttnProcessor  # noqa: E402

SD15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


class Wrap(torch.nn.Module):
    def __init__(self, unet, dtype):
        super().__init__()
        self.unet = unet
        self.dtype = dtype

    def forward(self, sample, timestep, enc):
        out = self.unet(sample.to(self.dtype), timestep, enc.to(self.dtype), return_dict=False)[0]
        return out.float()


def safetensors_offsets(path):
    """name -> (absolute byte offset, length) of each tensor in a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    base = 8 + n
    return {k: (base + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0])
            for k, v in header.items() if k != "__metadata__"}


def point_into_safetensors(onnx_path, st_path):
    """Replace each initializer by an external-data reference to the same bytes in the safetensors file. Constant
    folding leaves linear weights transposed: those become a Transpose node over the stored tensor."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    m = onnx.load(onnx_path)
    offsets = safetensors_offsets(st_path)
    location = os.path.basename(st_path)
    with open(st_path, "rb") as f:
        blob = f.read()
    stored = {k: np.frombuffer(blob[o:o + n], dtype=np.float32) for k, (o, n) in offsets.items()}

    def external(t, name):
        off, length = offsets[name]
        set_external_data(t, location=location, offset=off, length=length)
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL

    by_bytes = {}
    for k, v in stored.items():
        by_bytes.setdefault(v.tobytes(), k)
    transposes, moved, kept = [], 0, []
    for t in list(m.graph.initializer):
        if t.data_type != onnx.TensorProto.FLOAT:
            kept.append(t.name)
            continue
        a = numpy_helper.to_array(t)
        name = t.name[len("unet."):] if t.name.startswith("unet.") else t.name
        if name not in offsets:
            name = by_bytes.get(a.tobytes())
        if name is not None:
            external(t, name)
            moved += 1
            continue
        if a.ndim == 2:
            src = by_bytes.get(np.ascontiguousarray(a.T).tobytes())
            if src is not None:
                w = onnx.TensorProto()
                w.name, w.data_type = "st." + src, onnx.TensorProto.FLOAT
                w.dims.extend([a.shape[1], a.shape[0]])
                w.raw_data = stored[src].tobytes()
                external(w, src)
                m.graph.initializer.remove(t)
                m.graph.initializer.append(w)
                transposes.append(helper.make_node("Transpose", [w.name], [t.name], perm=[1, 0]))
                moved += 1
                continue
        kept.append(t.name)
    for n in reversed(transposes):
        m.graph.node.insert(0, n)
    onnx.save_model(m, onnx_path)
    print(f"{moved} initializers point into {location} ({len(transposes)} through a Transpose); "
          f"{len(kept)} stay inline", file=sys.stderr)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--") or a == "--sd15-random"]
    flags = set(a for a in sys.argv[1:] if a.startswith("--"))
    if len(args) != 2:
        raise SystemExit(__doc__)
    external = "--weights-in-safetensors" in flags
    split = "--external-data" in flags
    if split and external:
        raise SystemExit("--external-data and --weights-in-safetensors exclude each other")
    dtype = torch.float16 if "--f16" in flags else torch.float32
    device = "cuda" if "--cuda" in flags else "cpu"
    if args[0] == "--sd15-random":
        torch.manual_seed(0)
        with torch.device(device) if device == "cuda" else _null():  # init on the GPU: seconds, not minutes
            unet = UNet2DConditionModel(**SD15)
    else:
        unet = UNet2DConditionModel.from_pretrained(os.path.join(args[0], "unet"))
    out = args[1]
    unet = unet.to(device=device, dtype=dtype).eval()
    unet.set_attn_processor(AttnProcessor())
    c, s = unet.config.cross_attention_dim, unet.config.sample_size
    inputs = (torch.randn(2, 4, s, s, device=device), torch.tensor([500.0], device=device),
              torch.randn(2, 77, c, device=device))
    for stale in (out, out + ".data"):  # an inline OUT must not meet an older OUT.data
        if os.path.exists(stale):
            os.remove(stale)
    # --external-data: the TorchScript exporter writes into memory, split_external_data writes the files.
    target = io.BytesIO() if split else out
    kw = dict(opset_version=17, input_names=["sample", "timestep", "encoder_hidden_states"],
              output_names=["out_sample"],
              dynamic_axes={"sample": {0: "B", 2: "H", 3: "W"}, "encoder_hidden_states": {0: "B"},
                            "out_sample": {0: "B", 2: "H", 3: "W"}},
              do_constant_folding=True)
    with torch.no_grad():
        try:
            torch.onnx.export(Wrap(unet, dtype), inputs, target, dynamo=False, **kw)
        except TypeError:  # torch < 2.5 has no `dynamo` argument
            torch.onnx.export(Wrap(unet, dtype), inputs, target, **kw)
        except Exception as e:  # a torch without the TorchScript exporter: the dynamo one (needs onnxscript)
            print(f"TorchScript export failed ({type(e).__name__}: {e}); trying dynamo=True", file=sys.stderr)
            kw.pop("do_constant_folding")
            target = out
            torch.onnx.export(Wrap(unet, dtype), inputs, out, dynamo=True, external_data=False, **kw)
    if external:
        point_into_safetensors(out, os.path.join(args[0], "unet", "diffusion_pytorch_model.safetensors"))
    if split and isinstance(target, io.BytesIO):
        split_external_data(target.getbuffer(), out)
    elif split:  # the dynamo exporter wrote OUT
        with open(out, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            split_external_data(m, out)
    data = f" + {os.path.getsize(out + '.data')} bytes of weights in {out}.data" if split else ""
    print("wrote", out, os.path.getsize(out), f"bytes{data}", file=sys.stderr)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
