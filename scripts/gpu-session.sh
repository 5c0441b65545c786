#!/usr/bin/env bash
# One GPU session in one go, for a GPU host without network: build with the .deps/ that
# scripts/stage-offline-deps.sh staged (docs/DESIGN.md §3), run the whole test suite, the
# benchmarks, and training runs. A staged CIFAR-10/100 tarball is unpacked into /tmp/data once.
# Logs go to $OUT (default ./gpu-out). Steps: any of build build:<targets> test gputest sanitize bench dp1 smoke
# trainstep[:<options>] profile[:<options>] infer[:<options>] reproduce:<tables and options> train:<args>.
# A device call returns at most 8 files from $OUT: steps that write many pack them into one tarball.
# (Eight trainings at once under CUDA MPS ran 5x slower in total than 3-5 without it on an H200:
# benchmarks/results/2026-12-01-h200-reproduce-c10-resnet18.txt.)
#   scripts/gpu-session.sh build test bench smoke
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
# BUILD: a build folder to use instead of build-gpu, e.g. one carried from the machine that edits
# the code (glibc no newer than the GPU host's), so that training calls skip the build step.
build=${BUILD:-build-gpu}
data=/tmp/data
stamp() { echo "=== $(date -u +%FT%TZ) $*"; }
for ds in cifar10 cifar100; do
  if [ -f .deps/data/$ds-jpeg.tar.gz ] && [ ! -d $data/$ds ]; then
    mkdir -p $data && tar xzf .deps/data/$ds-jpeg.tar.gz -C $data
  fi
done
fmnist=.deps/data/fashion-mnist
[ -d $fmnist ] || fmnist=/usr/share/datasets/fashion-mnist
# A side-by-side script (mdq vs PyTorch) into $OUT: side_by_side NAME SCRIPT STEP, the script's
# options after STEP's colon (space-separated); its log is $OUT/NAME.log, its ratio lines echoed.
side_by_side() {
  local name=$1 script=$2 args=""
  [ "$3" != "$name" ] && args=${3#*:}
  set -f
  { stamp "$script $args"; $script "$OUT" --build $build $args; } > "$OUT/$name.log" 2>&1
  set +f
  grep -E "^ratio|error|not found" "$OUT/$name.log"
}
for step in "$@"; do
  case "$step" in
    build|build:*)
      # build:T1,T2 builds only those targets (e.g. build:mdq-train for training runs alone)
      targets=""; [ "$step" != build ] && targets="--target ${step#build:}" && targets=${targets//,/ }
      { stamp build; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMDQ_DEPS_DIR=$PWD/.deps &&
        cmake --build $build $targets; echo "build exit $?"; } > "$OUT/build.log" 2>&1
      tail -3 "$OUT/build.log" ;;
    trainstep|trainstep:*) side_by_side trainstep scripts/train-step-vs-pytorch.sh "$step" ;;
    infer|infer:*) side_by_side infer scripts/infer-vs-pytorch.sh "$step" ;;
    profile|profile:*)
      # profile[:<scripts/profile-train-step.sh options>], e.g. profile:"--models resnet18 --mdq-only"; the
      # per-kernel tables and the summary come back as one tarball, $OUT/profile.tar.gz.
      set -f; args=""; [ "$step" != profile ] && args=${step#profile:}
      { stamp "profile-train-step.sh $args"; scripts/profile-train-step.sh /tmp/mdq-profile --build $build $args
        echo "profile exit $?"; } > "$OUT/profile.log" 2>&1
      set +f
      (cd /tmp/mdq-profile && tar czf "$OUT/profile.tar.gz" summary.txt *-kernels.txt) 2>/dev/null
      cat /tmp/mdq-profile/summary.txt 2>/dev/null; tail -1 "$OUT/profile.log" ;;
    reproduce:*)
      # reproduce:"TABLE... [reproduce.sh options]"; the run records and logs (no checkpoints) come
      # back as reproduce-runs.tar.gz; plots are drawn where matplotlib is (scripts/plot_metrics.py).
      set -f; args=${step#reproduce:}
      { stamp "reproduce.sh $args"; python3 scripts/reproduce.py $args --build $build --data-root $data --no-plots
        echo "reproduce exit $?"; } 2>&1 | tee -a "$OUT/reproduce.txt" | grep -E "done|FAIL|DIVERG|stopp|not started|exit"
      set +f
      tar czf "$OUT/reproduce-runs.tar.gz" --exclude='*.ckpt' runs/reproduce results 2>/dev/null ;;
    test)
      { stamp ctest; ctest --test-dir $build --output-on-failure -j 6 --timeout 300; echo "ctest exit $?"; } > "$OUT/ctest.log" 2>&1
      grep -E "tests passed|FAILED|Failed|exit" "$OUT/ctest.log" | tail -15 ;;
    gputest)
      { stamp "ctest (GPU tests)"; ctest --test-dir $build --output-on-failure -R '^gpu\.' -j 4 --timeout 300; echo "ctest exit $?"; } > "$OUT/ctest-gpu.log" 2>&1
      grep -E "tests passed|FAILED|Failed|exit" "$OUT/ctest-gpu.log" | tail -15 ;;
    sanitize)
      # compute-sanitizer over every GPU test (memcheck; racecheck too on the packed kernels and
      # the op table, which holds the BN kernels) and a 50-iteration training run of each model,
      # all at once; one log each under $OUT/sanitize, then the error summaries.
      mkdir -p "$OUT/sanitize"
      san() { local tool=$1 name=$2; shift 2
        timeout 420 compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 "$@" > "$OUT/sanitize/$tool-$name.log" 2>&1
        echo "exit $?" >> "$OUT/sanitize/$tool-$name.log"; }
      for t in $build/test_*_gpu; do san memcheck "$(basename "$t")" "$t" & done
      san racecheck test_packed_gpu $build/test_packed_gpu &
      san racecheck test_ops_gpu $build/test_ops_gpu &
      for m in resnet18 vgg16 mobilenetv2; do
        san memcheck "train-$m" $build/mdq-train --model $m --dataset cifar10 --data-dir $data/cifar10 --batch-size 32 \
          --iters 50 --eval-every 50 --max-eval-batches 2 --out /tmp/san-$m --overwrite --quiet &
      done
      san memcheck train-smallcnn $build/mdq-train --model smallcnn --dataset fashion-mnist --data-dir $fmnist \
        --batch-size 32 --iters 50 --eval-every 50 --max-eval-batches 2 --out /tmp/san-smallcnn --overwrite --quiet &
      wait
      for f in "$OUT"/sanitize/*.log; do
        echo "$(basename "$f" .log): $(grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$f" | tail -1) $(tail -1 "$f")"
      done | tee "$OUT/sanitize-summary.txt" ;;
    dp1)
      # The data-parallel path on one GPU (a one-rank NCCL communicator, through --gpus 1 and
      # through mpirun -np 1) against the plain run: the same training, throughput side by side.
      base="--config configs/cifar10-resnet18-md-tanh-s.cfg --data-dir $data/cifar10 --iters 1500 --eval-every 100000 --max-eval-batches 1 --quiet --overwrite"
      { stamp "data-parallel on one GPU vs the plain run (ResNet-18 CIFAR-10 MD-tanh-S, batch 128, 1500 iterations)"
        rm -f /tmp/dp-rates
        # cuDNN's timed algorithm search picks differently from one process to the next (two plain
        # runs differed by 12%); the heuristics pick the same algorithms in every run, so the
        # comparison sees the data-parallel path alone.
        export MDQ_CUDNN_ALGOS=heuristic
        # Five rounds, the order rotated each round (a process's first run pays for cold caches);
        # the median of each way is compared: single runs of the same command differed by 10-40%.
        for order in "plain gpus1 mpi1" "gpus1 mpi1 plain" "mpi1 plain gpus1" "plain gpus1 mpi1" "gpus1 mpi1 plain"; do
          for how in $order; do
            case $how in
              plain) cmd="$build/mdq-train $base --out /tmp/dp-$how" ;;
              gpus1) cmd="$build/mdq-train $base --gpus 1 --out /tmp/dp-$how" ;;
              mpi1) cmd="mpirun -np 1 --bind-to none --allow-run-as-root $build/mdq-train $base --out /tmp/dp-$how" ;;
            esac
            echo "\$ $cmd"; $cmd 2>&1 | grep -E "data-parallel|throughput|error" | tee /tmp/dp-$how.out
            grep -o "throughput: [0-9]*" /tmp/dp-$how.out | awk -v h=$how '{print h, $2}' >> /tmp/dp-rates
          done
        done
        python3 - /tmp/dp-rates <<'PY'
import statistics, sys
r = {}
for line in open(sys.argv[1]):
    how, rate = line.split()
    r.setdefault(how, []).append(float(rate))
p = statistics.median(r["plain"])
for how, v in r.items():
    print(f"{how:6s} img/s {' '.join(f'{x:.0f}' for x in v)}  median {statistics.median(v):.0f}"
          + ("" if how == "plain" else f"  vs plain {100 * (statistics.median(v) / p - 1):+.1f}%"))
PY
        rm -f /tmp/dp-rates; unset MDQ_CUDNN_ALGOS
        # In one process, the step with and without the one-rank all-reduce in alternating windows
        # (medians): end-to-end runs of the same command differ by up to 40%, this by far less.
        # Graph-replayed steps throughout, as mdq-train runs them.
        MAX_GPUS=1 BUILD=$build OUT=$OUT/dp-scaling.txt benchmarks/run_data_parallel_scaling.sh > /dev/null 2>&1; cat $OUT/dp-scaling.txt
        echo "\$ mpirun -np 1 ... bench_data_parallel (the same, the rank started by MPI)"
        mpirun -np 1 --bind-to none --allow-run-as-root $build/bench_data_parallel --model resnet18 --method md-tanh-s \
          --batches 128,512 --steps 30 --precision bf16 < /dev/null
      } > "$OUT/dp1.txt" 2>&1
      grep -E "median|not hidden" "$OUT/dp1.txt" ;;
    bench)
      for b in bench_md_update bench_conv2d bench_matmul bench_packed_conv bench_packed_resnet18 bench_loader; do
        { stamp "$b"; timeout 120 $build/$b; echo "$b exit $?"; } >> "$OUT/bench.txt" 2>&1
      done
      tail -5 "$OUT/bench.txt" ;;
    smoke)
      { stamp "mdq-train throughput, resnet18 cifar10 md-tanh-s, 300 iterations";
        for p in fp32 tf32; do
          timeout 200 $build/mdq-train --model resnet18 --dataset cifar10 --data-dir $data/cifar10 --iters 300 \
            --eval-every 300 --max-eval-batches 4 --precision $p --out /tmp/smoke-$p --overwrite --quiet
        done
        stamp "pytorch side by side"; timeout 120 python3 benchmarks/pytorch_train_step.py --models resnet18 \
          --batches 128 --precisions fp32,tf32 --modes eager; } >> "$OUT/train.txt" 2>&1
      tail -8 "$OUT/train.txt" ;;
    train:*)
      args=${step#train:}
      { stamp "mdq-train $args"; eval "$build/mdq-train $args --quiet"; echo "exit $?"; } >> "$OUT/train.txt" 2>&1
      run_dir=$(echo "$args" | sed -n 's/.*--out \([^ ]*\).*/\1/p')
      [ -n "$run_dir" ] && cp "$run_dir/metrics.jsonl" "$OUT/metrics-$(basename "$run_dir").jsonl" 2>/dev/null
      tail -3 "$OUT/train.txt" ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
