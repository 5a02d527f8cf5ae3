#!/usr/bin/env bash
# Builds .gpu/ (git-ignored): what `deno task gpu-check` needs on a GPU machine that starts bare and offline, next
# to the repository's own files. Then checks that the repository plus .gpu/ fit the 64 MiB a device call carries.
#
#   bash tools/gpu_check/pack.sh [--ref DIR] [--slim]   # DIR: the diffusers sources for the PyTorch peer (../shared/ref)
#   bash tools/gpu_check/pack.sh --restore              # undo --slim after the device call
#
# --slim: the repository's test data alone is about 63 MB, so with .gpu/ a device call would carry more than 64 MiB.
# --slim takes the two largest test models out of the working tree with a sparse checkout (git keeps them; nothing
# is deleted): tiny-sd-original.safetensors (the single-file copy of tiny-sd, used only by CPU-side weight tests) and
# tiny-pix2pix/ (its golden cases are then reported as skipped, "model not present"), and every test-data file that is
# byte-identical to another one carried (tiny-sd's tokenizer is the demo tokenizer): those travel once, listed in
# .gpu/copies.txt, and device_run.sh copies them back before gpu-check starts. --restore brings them all back.
#
# .gpu/deno.xz             this machine's deno binary, xz -9 (about 30 MB)
# .gpu/node_modules.tar.xz only the npm files gpu-check loads (onnxruntime-web's WebGPU build, the tokenizer)
# .gpu/debs/*.deb          the Vulkan loader (libvulkan1) and GLVND (libglvnd0, libglx0, libegl1, libgl1: NVIDIA's Vulkan
#                          driver, libGLX_nvidia, needs libGLdispatch; without it WebGPU finds no adapter); the
#                          driver itself comes with the machine
# .gpu/ref/*.tgz           diffusers 0.25.1 + huggingface_hub 0.20.3 sources (PyTorch and the ONNX export)
# tools/gpu_check/device_run.sh unpacks these there and runs gpu-check (docs/GPU.md has the call).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
LIMIT=$((64 * 1024 * 1024))
ref=""
slim=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ref) ref="$2"; shift 2 ;;
    --slim) slim=1; shift ;;
    --restore) git sparse-checkout disable && echo "restored: the whole working tree is checked out"; exit 0 ;;
    *) echo "pack.sh: unknown argument $1 (usage: pack.sh [--ref DIR] [--slim] | --restore)" >&2; exit 2 ;;
  esac
done
mkdir -p .gpu
rm -f .gpu/copies.txt
if [ "$slim" = 1 ]; then
  # "copy<TAB>original" for each later file with the same git blob as an earlier one (the index knows every path,
  # checked out or not, so a second --slim finds the same pairs); the product's own tokenizer comes first.
  { git ls-files -s -- pipeline/models/demo_tokenizer && git ls-files -s -- fixtures/golden/models; } |
    awk -F'\t' '$2 !~ /^fixtures\/golden\/models\/(tiny-sd-original\.safetensors|tiny-pix2pix\/)/ {
      split($1, m, " "); if (m[2] in seen) print $2 "\t" seen[m[2]]; else seen[m[2]] = $2 }' >.gpu/copies.txt
  # shellcheck disable=SC2046
  git sparse-checkout set --no-cone '/*' '!/fixtures/golden/models/tiny-sd-original.safetensors' \
    '!/fixtures/golden/models/tiny-pix2pix/' $(cut -f1 .gpu/copies.txt | sed 's|^|!/|')
  echo "slim: left out of the working tree until 'pack.sh --restore': tiny-sd-original.safetensors, tiny-pix2pix/," \
    "$(wc -l <.gpu/copies.txt) byte-identical copies (.gpu/copies.txt)"
fi
[ -n "$ref" ] || { [ -d ../shared/ref ] && ref=../shared/ref; } || true

exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
mkdir -p .gpu/debs .gpu/ref

# 1. Deno, compressed once per version.
deno_bin="$(readlink -f "$(command -v deno)")"
version="$("$deno_bin" --version | head -1)"
if [ ! -f .gpu/deno.xz ] || [ "$(cat .gpu/deno.version 2>/dev/null)" != "$version" ]; then
  echo "compressing $deno_bin ($version)"
  xz -T0 -9 -c "$deno_bin" >.gpu/deno.xz.tmp && mv .gpu/deno.xz.tmp .gpu/deno.xz
  echo "$version" >.gpu/deno.version
fi

# 2. node_modules: the packages in gpu-check's module graph (its dynamic imports included), with onnxruntime-web
#    cut to the WebGPU entry and the wasm it loads.
[ -d node_modules/.deno ] || deno install >/dev/null
pkgs=(
  "@huggingface+tokenizers@" onnxruntime-web@ onnxruntime-common@ flatbuffers@ guid-typescript@ long@ platform@
  protobufjs@ "@protobufjs+"
)
list=$(mktemp)
for p in "${pkgs[@]}"; do
  for d in node_modules/.deno/"$p"*; do
    [ -e "$d" ] || { echo "pack.sh: node_modules has no $p* (run deno install)" >&2; exit 1; }
    case "$d" in
      node_modules/.deno/onnxruntime-web@*)
        w="$d/node_modules/onnxruntime-web"
        printf '%s\n' "$w/package.json" "$w/dist/ort.webgpu.bundle.min.mjs" \
          "$w/dist/ort-wasm-simd-threaded.asyncify.wasm" "$w/dist/ort-wasm-simd-threaded.asyncify.mjs" >>"$list"
        find "$d/node_modules" -maxdepth 1 -mindepth 1 -type l -printf '%p\n' >>"$list"
        find "$d/node_modules" -maxdepth 2 -mindepth 2 -type l -printf '%p\n' >>"$list"
        ;;
      *) echo "$d" >>"$list" ;;
    esac
  done
done
printf '%s\n' node_modules/onnxruntime-web node_modules/@huggingface/tokenizers node_modules/.deno/.setup-cache.bin \
  node_modules/.deno/.deno.lock >>"$list"
tar cf - --files-from="$list" | xz -T0 -9 -c >.gpu/node_modules.tar.xz
rm -f "$list"

# 3. The Vulkan loader and GLVND (amd64, as the GPU machines are), from this machine's apt sources.
if ! ls .gpu/debs/libvulkan1_*.deb .gpu/debs/libglvnd0_*.deb >/dev/null 2>&1; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/zerovid-apt-amd64'
  mkdir -p /tmp/zerovid-apt-amd64/partial
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null && (cd .gpu/debs && apt-get $o download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 >/dev/null)
fi

# 4. The upstream Python sources for the PyTorch peer and the ONNX export.
if [ -n "$ref" ] && ls "$ref"/diffusers-*_src.tgz >/dev/null 2>&1; then
  cp -u "$ref"/diffusers-*_src.tgz .gpu/ref/
else
  echo "note: no --ref DIR with diffusers-*_src.tgz: the PyTorch peer will use whatever diffusers the machine has"
fi

# 5. What a device call carries: tracked files, untracked files git does not ignore, and the carried .gpu/.
# (files a sparse checkout left out are in the index but not on disk: they do not travel, and stat skips them)
tracked=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null || true) |
  awk '{s += $1} END {print s + 0}')
gpu=$(find .gpu -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "repository files: $(mib "$tracked")"
for f in .gpu/deno.xz .gpu/node_modules.tar.xz .gpu/debs .gpu/ref; do
  echo "  $f: $(mib "$(find "$f" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')")"
done
total=$((tracked + gpu))
echo "total carried: $(mib "$total") of $(mib "$LIMIT")"
if [ "$total" -gt "$LIMIT" ]; then
  echo "pack.sh: over the device call's 64 MiB: the repository's own files take $(mib "$tracked")" \
    "(largest below); try --slim" >&2
  git ls-files -z | xargs -0 -r du -b | sort -rn | head -8 >&2
  exit 1
fi
echo "ok: .gpu/ is ready (carry [\".gpu\"], command: bash tools/gpu_check/device_run.sh; see docs/GPU.md)"
