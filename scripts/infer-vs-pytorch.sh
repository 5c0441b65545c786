#!/usr/bin/env bash
# ImageNet ResNet-18 inference, mdq against PyTorch on this machine's GPU, back to back (issue #16's
# fair baselines): benchmarks/bench_packed_resnet18 (mdq's cuDNN bf16 NHWC baseline, W1A16, W1A1, and
# the stem and CUDA-graph variants; "W1A1 tc graph" is what mdq-infer --engine packed runs by default,
# "W1A1 tc stem" the same plan launched kernel by kernel, as with --cuda-graph off), then
# benchmarks/pytorch_infer_resnet18.py (bf16 channels-last, eager and torch.compile). Then one
# table of images/s and ms per batch, ending with one line per batch:
#   ratio resnet18-imagenet bs256: w1a1/eager = 1.41, w1a1/compile = 0.90, ...
# where w1a1 is mdq-infer's default (the tensor-core stem's plan replayed from a CUDA graph),
# w1a1-eager the same plan launched eagerly and w1a1-f32stem the plan with the stem on the float
# engine.
# Everything goes to stdout and to <folder>/<date>-<card>-infer-vs-pytorch.txt.
#   scripts/infer-vs-pytorch.sh benchmarks/results [--build build] [--batches 1,32,256]
#       [--compile-mode max-autotune | --no-compile]
# max-autotune compiles for minutes per batch size; --compile-mode default is quicker and slower to run.
# PYTHON picks the interpreter that has torch (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/train-step-common.sh
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || usage
command_line="scripts/infer-vs-pytorch.sh $*"
folder=$1
shift
build=build batches=1,32,256 torch_modes=(--modes eager,compile --compile-mode max-autotune)
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --compile-mode) torch_modes=(--modes eager,compile --compile-mode "$2"); shift 2 ;;
    --no-compile) torch_modes=(--modes eager); shift ;;
    *) echo "infer-vs-pytorch: unknown option $1" >&2; usage ;;
  esac
done
require_gpu_and_bench infer-vs-pytorch "$build" bench_packed_resnet18
card=$(card_name)
slug=$(card_slug)
mkdir -p "$folder"
out="$folder/$(date -u +%F)-$slug-infer-vs-pytorch.txt"
{
  echo "# ImageNet ResNet-18 inference, mdq vs PyTorch; card: $card; date: $(date -u +%FT%TZ)"
  echo "# command: $command_line"
  echo "\$ $build/bench_packed_resnet18 ${batches//,/ }"
  "$build/bench_packed_resnet18" ${batches//,/ }
  echo "\$ ${PYTHON:-python3} benchmarks/pytorch_infer_resnet18.py --models imagenet --batches $batches ${torch_modes[*]}"
  "${PYTHON:-python3}" benchmarks/pytorch_infer_resnet18.py --models imagenet --batches "$batches" "${torch_modes[@]}" || true
} 2>&1 | tee "$out.raw"
python3 - "$out.raw" <<'PY' | tee -a "$out.raw"
import re, sys
rate, ms = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r"\s*(\d+)\s+(cuDNN bf16|W1A16 split|W1A16 stem16|W1A16 tc stem|W1A16|W1A1 tc stem|W1A1 tc-bf16|W1A1 tc graph|W1A1 stem16|W1A1 s16 graph|W1A1 graph|W1A1)\s+\|\s+([\d.]+)\s+\|\s+([\d.]+)\s+\|", line)
    if m:  # bench_packed_resnet18's table: batch, version, ms/batch, images/s
        key = (int(m.group(1)), "mdq " + m.group(2))
        ms[key], rate[key] = float(m.group(3)), float(m.group(4))
    if line.startswith("infer impl=torch-") and "img_per_s=" in line and "model=resnet18-imagenet" in line:
        f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        key = (int(f["batch"]), f["impl"])
        ms[key], rate[key] = float(f["ms_per_batch"]), float(f["img_per_s"])
cols = ["torch-eager", "torch-compile", "mdq cuDNN bf16", "mdq W1A16 tc stem", "mdq W1A1", "mdq W1A1 stem16",
        "mdq W1A1 tc stem", "mdq W1A1 tc graph", "mdq W1A1 tc-bf16"]
batches = sorted({b for b, _ in rate})
if not batches:
    sys.exit("infer-vs-pytorch: no results to compare")
print("\n== images/s (ms per batch), higher is better")
print(f"{'batch':>5} " + " ".join(f"{c:>20}" for c in cols))
for b in batches:
    print(f"{b:>5} " + " ".join(f"{rate[b, c]:>11.0f} ({ms[b, c]:6.3f})" if (b, c) in rate else f"{'n/a':>20}" for c in cols))
def ratio(b, x, y):
    return f"{rate[b, x] / rate[b, y]:.2f}" if (b, x) in rate and (b, y) in rate else "n/a"
print()
for b in batches:
    print(f"ratio resnet18-imagenet bs{b}: w1a1/eager = {ratio(b, 'mdq W1A1 tc graph', 'torch-eager')}, "
          f"w1a1/compile = {ratio(b, 'mdq W1A1 tc graph', 'torch-compile')}, "
          f"w1a1-eager/compile = {ratio(b, 'mdq W1A1 tc stem', 'torch-compile')}, "
          f"w1a1/cudnn = {ratio(b, 'mdq W1A1 tc graph', 'mdq cuDNN bf16')}, "
          f"w1a1-f32stem/compile = {ratio(b, 'mdq W1A1', 'torch-compile')}, "
          f"w1a1-tc-bf16/compile = {ratio(b, 'mdq W1A1 tc-bf16', 'torch-compile')}, "
          f"w1a16/eager = {ratio(b, 'mdq W1A16 tc stem', 'torch-eager')}, "
          f"cudnn/eager = {ratio(b, 'mdq cuDNN bf16', 'torch-eager')}")
PY
mv "$out.raw" "$out"
echo "wrote $out"
