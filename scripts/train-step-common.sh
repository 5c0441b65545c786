# Sourced by scripts/train-step-vs-pytorch.sh, scripts/profile-train-step.sh and
# scripts/infer-vs-pytorch.sh: what they do before anything runs.

# The calling script's header comment is its usage text.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }

# Exits 0 without a GPU (a benchmark never fails for want of one), 2 without the benchmark binary.
# require_gpu_and_bench WHO BUILD [BENCH]: BENCH defaults to bench_train_step.
require_gpu_and_bench() {
  local who=$1 build=$2 bench=${3:-bench_train_step}
  if ! nvidia-smi -L > /dev/null 2>&1; then
    echo "$who: no GPU (nvidia-smi finds none); nothing to measure."
    exit 0
  fi
  [ -x "$build/$bench" ] || { echo "$who: no $build/$bench: build it first (or give --build)" >&2; exit 2; }
}

# The first GPU's name, and that name as a file-name part ("NVIDIA H200" -> "h200").
card_name() { nvidia-smi --query-gpu=name --format=csv,noheader | head -1; }
card_slug() { card_name | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-' | sed 's/^nvidia-//'; }
