# Sourced by scripts/train-step-vs-pytorch.sh and scripts/profile-train-step.sh: what both do
# before anything runs.

# The calling script's header comment is its usage text.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }

# Exits 0 without a GPU (a benchmark never fails for want of one), 2 without the benchmark binary.
require_gpu_and_bench() {
  local who=$1 build=$2
  if ! nvidia-smi -L > /dev/null 2>&1; then
    echo "$who: no GPU (nvidia-smi finds none); nothing to measure."
    exit 0
  fi
  [ -x "$build/bench_train_step" ] || { echo "$who: no $build/bench_train_step: build it first (or give --build)" >&2; exit 2; }
}
