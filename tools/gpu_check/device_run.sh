#!/usr/bin/env bash
# Runs on the bare, offline GPU machine, in the repository root, with .gpu/ carried (tools/gpu_check/pack.sh built
# it): installs the Vulkan loader, unpacks deno and the npm files, runs gpu-check and leaves the report in
# $OUT/gpu-check/ (report.md, report.json, log.txt, and tiles/<adapter>.json: the measured GEMM tiles, worth folding
# into pipeline/ops/tiles.ts's table for that GPU). Extra arguments go to gpu-check (e.g. --budget 480).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/zerovid-out}/gpu-check"
work=/tmp/zerovid-gpu
mkdir -p "$out" "$work/xdg" && chmod 700 "$work/xdg"

for f in .gpu/debs/*.deb; do dpkg -x "$f" /; done
ldconfig
# The NVIDIA image keeps its Vulkan driver manifest outside the loader's default search path.
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
fi
xz -dc .gpu/deno.xz >"$work/deno" && chmod +x "$work/deno"
# Test data pack.sh --slim carried once (byte-identical copies of other files): back in place.
if [ -f .gpu/copies.txt ]; then
  while IFS=$'\t' read -r copy original; do
    mkdir -p "$(dirname "$copy")" && cp "$original" "$copy"
  done <.gpu/copies.txt
fi
rm -rf node_modules && tar xJf .gpu/node_modules.tar.xz

export XDG_RUNTIME_DIR="$work/xdg" NO_COLOR=1 DENO_DIR="$work/deno-dir" HF_HUB_OFFLINE=1
{
  echo "== $(date -u +%FT%TZ) $(uname -srm)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | head -3
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1
} | tee "$out/log.txt"
# The SM clock while gpu-check runs, every second, in clocks.csv: the FMA ceiling and every rate in the report scale
# with it, and nothing else says whether the GPU ran at its boost clock or was held below it (runs 1-4 measured the
# FMA ceiling at about half the H200's FP32 rate on paper). The last line of log.txt sums up the busy samples.
reasons=clocks_event_reasons.active
nvidia-smi --query-gpu=$reasons --format=csv,noheader >/dev/null 2>&1 || reasons=clocks_throttle_reasons.active
nvidia-smi --query-gpu=timestamp,utilization.gpu,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,$reasons \
  --format=csv,nounits -lms 1000 >"$out/clocks.csv" 2>&1 &
sampler=$!
ref=()
ls .gpu/ref/diffusers-*_src.tgz >/dev/null 2>&1 && ref=(--ref .gpu/ref)
# manual: use the carried node_modules as they are (auto would try to fetch every package in deno.lock).
"$work/deno" run -A --node-modules-dir=manual tools/gpu_check.ts --out "$out" --cache "$work/cache" --tiles-dir "$out/tiles" "${ref[@]}" "$@" 2>&1 | tee -a "$out/log.txt"
rc="${PIPESTATUS[0]}"
kill "$sampler" 2>/dev/null
bash tools/gpu_check/clocks.sh "$out/clocks.csv" | tee -a "$out/log.txt"
exit "$rc"
