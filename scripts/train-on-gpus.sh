#!/usr/bin/env bash
# Long training runs side by side, one per GPU, that may span several device calls: each run
# goes to runs/NAME, resumes from runs/NAME/last.ckpt when one is there (bit-for-bit, see
# --resume), and is stopped at the deadline (SIGTERM; checkpoints are atomic, so at most the
# iterations since the last checkpoint are redone by the next call).
#   OUT=dir scripts/train-on-gpus.sh SECONDS NAME=ARGS [NAME=ARGS ...]
# e.g. scripts/train-on-gpus.sh 420 "md=--config configs/x.cfg --data-dir /tmp/data/cifar10"
# Run i uses GPU i. Logs: $OUT/train-NAME.log; metrics: $OUT/metrics-NAME.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
build=${BUILD:-build-gpu}
seconds=$1
shift
mkdir -p "$OUT" runs
gpu=0
for spec in "$@"; do
  name=${spec%%=*}
  args=${spec#*=}
  dir=runs/$name
  resume=""
  [ -f "$dir/last.ckpt" ] && resume="--resume"
  (
    echo "=== $(date -u +%FT%TZ) GPU $gpu: mdq-train $args --out $dir $resume (stops after ${seconds}s)"
    CUDA_VISIBLE_DEVICES=$gpu timeout "$seconds" $build/mdq-train $args --out "$dir" $resume --quiet
    rc=$?
    [ $rc = 124 ] && echo "stopped at the deadline; next call resumes from $dir/last.ckpt" || echo "exit $rc"
    cp "$dir/metrics.jsonl" "$OUT/metrics-$name.jsonl" 2>/dev/null
  ) >> "$OUT/train-$name.log" 2>&1 &
  gpu=$((gpu + 1))
done
wait
for spec in "$@"; do tail -4 "$OUT/train-${spec%%=*}.log"; done
