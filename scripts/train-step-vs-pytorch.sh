#!/usr/bin/env bash
# mdq's training step against PyTorch's, eager and torch.compile, back to back on this machine's
# GPU: benchmarks/bench_train_step, then benchmarks/pytorch_train_step.py over the same networks,
# batches and precisions (synthetic data on the GPU, MD-tanh-S + Adam). Then throughput and peak
# memory side by side, ending with one line per model, batch and precision:
#   ratio resnet18 bs128 bf16: mdq/eager = 2.13, mdq/compile = 1.41
# Everything goes to stdout and to <folder>/<date>-<card>-train-step.txt.
#   scripts/train-step-vs-pytorch.sh benchmarks/results [--build build] [--steps 20]
#       [--models resnet18,vgg16,mobilenetv2] [--batches 128,512] [--precisions fp32,tf32,bf16]
#       [--compile-precisions bf16 | --no-compile] [--static-compile] [--channels-last]
# torch.compile takes tens of seconds per model and precision, so by default it runs at bf16 only
# (the batch dimension is dynamic: one compile serves both batches). With the defaults this should
# take about 4 minutes on an H200; --compile-precisions fp32,tf32,bf16 compiles all three.
# PYTHON picks the interpreter that has torch (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/train-step-common.sh
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || usage
command_line="scripts/train-step-vs-pytorch.sh $*"
folder=$1
shift
build=build steps=20 models=resnet18,vgg16,mobilenetv2 batches=128,512 precisions=fp32,tf32,bf16
compile_args=(--compile-precisions bf16) torch_layout=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --compile-precisions) compile_args=(--compile-precisions "$2"); shift 2 ;;
    --no-compile) compile_args=(--modes eager); shift ;;
    --static-compile) compile_args+=(--static-compile); shift ;;
    --channels-last) torch_layout=(--channels-last); shift ;;
    *) echo "train-step-vs-pytorch: unknown option $1" >&2; usage ;;
  esac
done

require_gpu_and_bench train-step-vs-pytorch "$build"
card=$(card_name)
slug=$(card_slug)
mkdir -p "$folder"
out="$folder/$(date -u +%F)-$slug-train-step.txt"
mdq_cmd=("$build/bench_train_step" --models "$models" --batches "$batches" --precisions "$precisions" --steps "$steps")
torch_cmd=("${PYTHON:-python3}" benchmarks/pytorch_train_step.py --models "$models" --batches "$batches"
           --precisions "$precisions" --steps "$steps" "${compile_args[@]}" "${torch_layout[@]}")

# The table and the ratio lines, from the 'train-step key=value ...' lines of both benchmarks.
summarize() {
  awk '
    function ratio(a, b) { return (a != "" && b > 0) ? sprintf("%.2f", a / b) : "n/a" }
    function or_na(v) { return v == "" ? "n/a" : v }
    /^train-step / {
      split("", f)
      for (i = 2; i <= NF; i++) if ((eq = index($i, "=")) > 0) f[substr($i, 1, eq - 1)] = substr($i, eq + 1)
      if (!("img_per_s" in f)) next
      key = f["model"] " " f["batch"] " " f["precision"]
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      impl = f["impl"]
      rate[impl, key] = f["img_per_s"]; ms[impl, key] = f["ms_per_step"]
      mem[impl, key] = (impl == "mdq" ? f["peak_in_use_mib"] : f["peak_alloc_mib"]) " / " f["peak_reserved_mib"]
      if (impl == "mdq") mdq_params[f["model"]] = f["params"]; else torch_params[f["model"]] = f["params"]
    }
    END {
      if (n == 0) { print "no results to compare"; exit }
      print ""
      print "== images/s (ms per step), higher is better; ratios mdq over PyTorch"
      printf "%-12s %5s %-5s %18s %18s %18s %9s %11s\n", "model", "batch", "prec", "mdq", "torch eager", "torch compile", "mdq/eager", "mdq/compile"
      for (k = 1; k <= n; k++) {
        split(order[k], c, " ")
        printf "%-12s %5s %-5s", c[1], c[2], c[3]
        for (j = 1; j <= 3; j++) {
          impl = j == 1 ? "mdq" : j == 2 ? "torch-eager" : "torch-compile"
          cell = rate[impl, order[k]] == "" ? "n/a" : rate[impl, order[k]] " (" sprintf("%.1f", ms[impl, order[k]]) ")"
          printf " %18s", cell
        }
        printf " %9s %11s\n", ratio(rate["mdq", order[k]], rate["torch-eager", order[k]]),
               ratio(rate["mdq", order[k]], rate["torch-compile", order[k]])
      }
      print ""
      print "== peak GPU memory, MiB: allocated / reserved. torch: max_memory_allocated / max_memory_reserved;"
      print "   mdq: the caching allocator'"'"'s most bytes in use at once / every block it took; the engine'"'"'s"
      print "   cuDNN/cuBLAS workspace is in neither"
      printf "%-12s %5s %-5s %20s %20s %20s\n", "model", "batch", "prec", "mdq", "torch eager", "torch compile"
      for (k = 1; k <= n; k++) {
        split(order[k], c, " ")
        printf "%-12s %5s %-5s %20s %20s %20s\n", c[1], c[2], c[3], or_na(mem["mdq", order[k]]),
               or_na(mem["torch-eager", order[k]]), or_na(mem["torch-compile", order[k]])
      }
      for (m in mdq_params)
        if ((m in torch_params) && mdq_params[m] != torch_params[m])
          printf "WARNING: %s has %s parameters in mdq and %s in PyTorch: not the same network\n", m, mdq_params[m], torch_params[m]
      print ""
      for (k = 1; k <= n; k++) {
        split(order[k], c, " ")
        printf "ratio %s bs%s %s: mdq/eager = %s, mdq/compile = %s\n", c[1], c[2], c[3],
               ratio(rate["mdq", order[k]], rate["torch-eager", order[k]]), ratio(rate["mdq", order[k]], rate["torch-compile", order[k]])
      }
    }'
}

{
  echo "# card: $card; date: $(date -u +%FT%TZ); mdq commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# command: $command_line"
  echo "\$ ${mdq_cmd[*]}"
  start=$SECONDS
  "${mdq_cmd[@]}" 2>&1 || echo "# bench_train_step exit $?"
  echo "# mdq took $((SECONDS - start)) s"
  echo "\$ ${torch_cmd[*]}"
  start=$SECONDS
  "${torch_cmd[@]}" 2>&1 || echo "# pytorch_train_step exit $?"
  echo "# PyTorch took $((SECONDS - start)) s"
} | tee "$out"
summarize < "$out" | tee -a "$out"
echo "written: $out"
