#!/usr/bin/env bash
# Data-parallel scaling on this machine's GPUs: bench_data_parallel on 1, 2, 4, ... up to all of
# them (or MAX_GPUS), at batch 128 and 512 per GPU. Output: stdout and $OUT (default
# benchmarks/results/<date>-<gpu>-data-parallel-scaling.txt) with the card, date and command.
#   BUILD=build MODEL=resnet18 METHOD=md-tanh-s PRECISION=bf16 benchmarks/run_data_parallel_scaling.sh
# (PRECISION defaults to bf16, what mdq-train picks for ResNet-18 and VGG-16 on a GPU; CUDA_GRAPH=on,
# the default, times steps replayed from CUDA graphs as mdq-train runs them; off times eager steps)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
gpus=$(nvidia-smi -L | wc -l)
max=${MAX_GPUS:-$gpus}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
out=${OUT:-benchmarks/results/$(date -u +%F)-$(echo "$card" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')-data-parallel-scaling.txt}
{
  echo "# $(date -u +%FT%TZ), $gpus x $card, max $max GPUs"
  for ((n = 1; n <= max; n *= 2)); do
    cmd="$build/bench_data_parallel --gpus $n --model ${MODEL:-resnet18} --method ${METHOD:-md-tanh-s} --batches 128,512 --steps ${STEPS:-30} --precision ${PRECISION:-bf16} --cuda-graph ${CUDA_GRAPH:-on}"
    echo "\$ $cmd"
    $cmd
  done
} 2>&1 | tee "$out"
