#!/usr/bin/env bash
# Kill/resume drill: trains a small CNN on a generated toy dataset once without a break, then
# again with N SIGKILLs at random moments, each followed by `mdq-train --resume --out DIR`, and
# checks that the final checkpoints are byte for byte those of the unbroken run (a kill loses at
# most the steps since the last checkpoint, and resuming redoes them identically).
#   scripts/kill-resume-drill.sh [N=5] [BUILD_DIR=build]
set -euo pipefail
n=${1:-5}
build=${2:-build}
train="$build/mdq-train"
[ -x "$train" ] || { echo "drill: $train not found (build first)"; exit 2; }
work=$(mktemp -d /tmp/mdq-drill-XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 "$(dirname "$0")/make-toy-idx.py" "$work/data"
args=(--model smallcnn --dataset fashion-mnist --data-dir "$work/data" --batch-size 32 --lr 0.003 --beta-interval 3
      --beta-rho 1.1 --device cpu --iters 150 --eval-every 20 --ckpt-every 5 --log-every 5 --workers 2 --quiet)
# Both runs use the same --out (it is part of the saved options), one after the other.
"$train" "${args[@]}" --out "$work/run" > "$work/whole.log" 2>&1 || { cat "$work/whole.log"; exit 1; }
mkdir "$work/whole" && mv "$work/run/last.ckpt" "$work/run/best.ckpt" "$work/whole/"

"$train" "${args[@]}" --out "$work/run" --overwrite > "$work/drill.log" 2>&1 &
pid=$!
kills=0
while [ $kills -lt "$n" ]; do
  # Kill at a random moment after the run has saved at least once, so every kill but none of the
  # restarts from scratch is a resume.
  while kill -0 $pid 2>/dev/null && [ ! -f "$work/run/last.ckpt" ]; do sleep 0.05; done
  sleep "$(( RANDOM % 2 )).$(( RANDOM % 10 ))"
  if ! kill -0 $pid 2>/dev/null; then break; fi  # finished before the next kill
  kill -KILL $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  kills=$((kills + 1))
  at=$(grep -a -m1 '^iteration = ' "$work/run/last.ckpt" | tr -dc 0-9)
  echo "drill: SIGKILL $kills of $n, resuming from last.ckpt at iteration $at"
  "$train" --resume --out "$work/run" >> "$work/drill.log" 2>&1 &
  pid=$!
done
wait $pid || { echo "drill: the last run failed"; tail -20 "$work/drill.log"; exit 1; }
for f in last.ckpt best.ckpt; do
  if ! cmp -s "$work/whole/$f" "$work/run/$f"; then
    echo "drill: FAILED: $f differs from the unbroken run's after $kills kills"; exit 1
  fi
done
echo "drill: $kills SIGKILLs, each resumed: last.ckpt and best.ckpt equal the unbroken run's, byte for byte"
