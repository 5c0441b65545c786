#!/usr/bin/env bash
# Where one training step spends its GPU time, for mdq (benchmarks/bench_train_step) and for
# PyTorch (benchmarks/pytorch_train_step.py, eager; torch.compile too with --with-compile): each
# model and batch is profiled over a few steps after the warm-up (the benchmarks make the timed
# steps the profiler's capture range) with nsys, or with ncu when nsys is missing, and
# scripts/kernel_breakdown.py writes the top kernels by time, each as ms per step and % of the
# step's wall time (measured by a run without the profiler).
#   scripts/profile-train-step.sh <folder> [--build build] [--models resnet18] [--batches 128,512]
#       [--precision bf16] [--steps 10] [--with-compile | --mdq-only] [--tool nsys|ncu]
# Writes <folder>/<impl>-<model>-bs<batch>-<precision>-kernels.txt, summary.txt (the first line of
# each), and the raw profiles and logs beside them. About a minute per model on an H200 with
# nsys; ncu replays every kernel, so it profiles 2 steps. PYTHON picks the interpreter with torch.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/train-step-common.sh
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || usage
folder=$1
shift
build=build models=resnet18 batches=128,512 precision=bf16 steps= tool= impls="mdq torch-eager"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --with-compile) impls="$impls torch-compile"; shift ;;
    --mdq-only) impls=mdq; shift ;;
    --tool) tool=$2; shift 2 ;;
    *) echo "profile-train-step: unknown option $1" >&2; usage ;;
  esac
done

require_gpu_and_bench profile-train-step "$build"
if [ -z "$tool" ]; then
  if command -v nsys > /dev/null; then tool=nsys
  elif command -v ncu > /dev/null; then tool=ncu
  else echo "profile-train-step: neither nsys nor ncu is on PATH" >&2; exit 2
  fi
fi
[ "$tool" = nsys ] || [ "$tool" = ncu ] || usage
[ -n "$steps" ] || { [ "$tool" = nsys ] && steps=10 || steps=2; }
python=${PYTHON:-python3}
mkdir -p "$folder"
summary="$folder/summary.txt"
echo "# $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $(date -u +%FT%TZ); $tool; mdq commit" \
     "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$summary"

# The benchmark command of one implementation, model and batch: 5 warm-up steps, then $4 timed.
bench_cmd() {
  local impl=$1 model=$2 batch=$3 timed=$4
  case "$impl" in
    mdq) echo "$build/bench_train_step --models $model --batches $batch --precisions $precision --steps $timed --warmup 5" \
              "--cuda-graph on" ;;
    torch-*) echo "$python benchmarks/pytorch_train_step.py --models $model --batches $batch --precisions $precision" \
                  "--modes ${impl#torch-} --steps $timed --warmup 5" ;;
  esac
}

# Writes $base.csv: the per-kernel times of the capture range.
profile() {
  local base=$1; shift
  if [ "$tool" = nsys ]; then
    # mdq's step is a CUDA graph: trace its kernels one by one (ncu profiles graph nodes by default).
    nsys profile --trace=cuda --cuda-graph-trace=node --sample=none --cpuctxsw=none --capture-range=cudaProfilerApi \
      --capture-range-end=stop --force-overwrite=true -o "$base" "$@" > "$base.log" 2>&1
    # The report is cuda_gpu_kern_sum since nsys 2023.2, gpukernsum before.
    nsys stats --force-export=true --format csv --report cuda_gpu_kern_sum --output "$base" "$base.nsys-rep" >> "$base.log" 2>&1 ||
      nsys stats --force-export=true --format csv --report gpukernsum --output "$base" "$base.nsys-rep" >> "$base.log" 2>&1
    mv "$(ls "$base"_*kern*sum.csv | head -1)" "$base.csv"
  else
    ncu --profile-from-start off --metrics gpu__time_duration.sum --cache-control none --clock-control none \
      --csv --log-file "$base.csv" "$@" > "$base.log" 2>&1
  fi
}

for model in ${models//,/ }; do
  for batch in ${batches//,/ }; do
    for impl in $impls; do
      name="$impl-$model-bs$batch-$precision"
      base="$folder/$name"
      echo "== $name"
      # The step's wall time over 30 steps without the profiler (the bench's own line), then the profile.
      read -ra cmd <<< "$(bench_cmd "$impl" "$model" "$batch" 30)"
      wall=$("${cmd[@]}" | tee "$base.wall.log" | sed -n 's/^train-step .* ms_per_step=\([0-9.]*\).*/\1/p' || true)
      if [ -z "$wall" ]; then
        echo "# $name: no measurement (see $base.wall.log)" | tee -a "$summary"
        continue
      fi
      read -ra cmd <<< "$(bench_cmd "$impl" "$model" "$batch" "$steps")"
      if ! profile "$base" "${cmd[@]}" || [ ! -s "$base.csv" ]; then
        echo "# $name: $tool failed (see $base.log)" | tee -a "$summary"
        continue
      fi
      python3 scripts/kernel_breakdown.py "$base.csv" --steps "$steps" --step-ms "$wall" --title "$name" \
        > "$base-kernels.txt" || { echo "# $name: no breakdown (see $base.csv)" | tee -a "$summary"; continue; }
      head -1 "$base-kernels.txt" | tee -a "$summary"
    done
  done
done
echo "written: $folder (summary.txt, *-kernels.txt)"
