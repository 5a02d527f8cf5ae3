"""The PyTorch + diffusers peer of tools/bench/peers.ts: time one UNet2DConditionModel call.

  python3 torch_peer.py '<json job>'

job: {"model": DIR | "sd15-random", "batches": [2, 16], "latent": 64, "dtype": "f16", "attn": ["eager", "sdpa"],
      "device": "auto" | "cpu", "loop": {"warmup": 2, "timeS": 1.0, "iters": 20}}
Prints one JSON list of rows (the PeerRow fields) on the last stdout line. On CUDA (when torch sees a GPU and the
job allows it) the UNet runs in the job's dtype; on the CPU in float32, and each row says so. "eager" is diffusers'
plain AttnProcessor, "sdpa" AttnProcessor2_0 (torch's scaled_dot_product_attention, PyTorch >= 2)."""
import json
import os
import statistics
import sys
import time

import torch

# diffusers 0.25.1 runs with the huggingface_hub it was released with (0.20.3, from the ref sources); a machine's
# newer accelerate / transformers / peft need a newer hub and fail to import beside it. The UNet needs none of
# them: hide them from diffusers' availability checks (find_spec sees None in sys.modules).
for _name in ("accelerate", "transformers", "peft"):
    sys.modules.setdefault(_name, None)

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models import attention_processor as ap  # noqa: E402

SD15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def main():
    job = json.loads(sys.argv[1])
    cuda = job.get("device", "auto") == "auto" and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.float16 if cuda and job["dtype"] == "f16" else torch.float32
    note = None
    if not cuda:
        # OpenMP threads spin while they wait: on a busy machine, threads beyond the idle cores cost 10-20x
        # (seen: tiny UNet 5.8 s with 2 threads, 0.29 s with 1, at load 14 on 2 cores). Use the idle cores.
        cores = os.cpu_count() or 1
        threads = max(1, min(cores, round(cores - os.getloadavg()[0])))
        torch.set_num_threads(threads)
        note = f"CPU, float32, {threads} thread{'s' if threads > 1 else ''}" + (
            " (no CUDA device visible to torch)" if job.get("device", "auto") == "auto" else "")
    if not cuda and torch.__version__.startswith("1."):
        # diffusers' eager attention scores are torch.baddbmm(torch.empty(...), q, k^T, beta=0, alpha=scale), and
        # beta = 0 must ignore the input; Debian's torch 1.13 on the CPU sometimes lets NaNs of that uninitialised
        # buffer through (non-finite outputs, now and then a timed call). Its documented result, computed as such:
        baddbmm = torch.baddbmm

        def baddbmm_beta0(input, b1, b2, *, beta=1, alpha=1, out=None):
            if beta == 0 and out is None:
                return torch.bmm(b1, b2).mul_(alpha)
            return baddbmm(input, b1, b2, beta=beta, alpha=alpha, out=out)

        torch.baddbmm = baddbmm_beta0
    t0 = time.perf_counter()
    torch.manual_seed(0)
    if job["model"] == "sd15-random":
        if cuda and hasattr(torch, "device") and hasattr(torch.device, "__enter__"):
            with torch.device("cuda"):  # initialise on the GPU: seconds instead of a minute on the CPU
                unet = UNet2DConditionModel(**SD15)
        else:
            unet = UNet2DConditionModel(**SD15)
    else:
        unet = UNet2DConditionModel.from_pretrained(os.path.join(job["model"], "unet"))
    unet = unet.to(device=device, dtype=dtype).eval()
    if cuda:
        torch.cuda.synchronize()
    setup = time.perf_counter() - t0
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    cross = unet.config.cross_attention_dim
    L = job["latent"]
    loop = job["loop"]
    rows = []
    for attn in job["attn"]:
        row_base = dict(peer="PyTorch " + ("SDPA" if attn == "sdpa" else "eager"), device=name,
                        dtype="f16" if dtype == torch.float16 else "f32", latent=L, setupS=setup)
        if attn == "sdpa" and not hasattr(ap, "AttnProcessor2_0") or attn == "sdpa" and not hasattr(
                torch.nn.functional, "scaled_dot_product_attention"):
            for b in job["batches"]:
                rows.append(dict(row_base, batch=b, iters=0, ms=None, error="this torch has no SDPA (needs >= 2.0)"))
            continue
        unet.set_attn_processor(ap.AttnProcessor2_0() if attn == "sdpa" else ap.AttnProcessor())
        for b in job["batches"]:
            row = dict(row_base, batch=b, iters=0, ms=None)
            if note:
                row["note"] = note
            try:
                g = torch.Generator(device="cpu").manual_seed(b)
                x = torch.randn(b, unet.config.in_channels, L, L, generator=g).to(device, dtype)
                enc = torch.randn(b, 77, cross, generator=g).to(device, dtype)
                t = torch.tensor([500.0], device=device)

                def call():
                    s = time.perf_counter()
                    with torch.no_grad():
                        out = unet(x, t, enc, return_dict=False)[0]
                    if cuda:
                        torch.cuda.synchronize()
                    return (time.perf_counter() - s) * 1000, bool(torch.isfinite(out).all())

                for _ in range(max(1, loop["warmup"])):
                    if not call()[1] and "non-finite" not in row.get("note", ""):
                        # Seen with Debian's torch 1.13 on the CPU: the first call only (diffusers' baddbmm over
                        # torch.empty with beta=0). Timed calls must be finite.
                        row["note"] = (row.get("note", "") + "; a warm-up call returned non-finite values").lstrip("; ")
                times = []
                while True:
                    ms, finite = call()
                    if not finite:
                        raise RuntimeError("output has non-finite values")
                    times.append(ms)
                    if len(times) >= loop["iters"] or (
                            sum(times) >= loop["timeS"] * 1000 and len(times) >= loop.get("minIters", 1)):
                        break
                row.update(iters=len(times), ms=statistics.median(times))
            except Exception as e:  # out of memory at batch 16, say: the other rows still count
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                if cuda:
                    torch.cuda.empty_cache()
            rows.append(row)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
