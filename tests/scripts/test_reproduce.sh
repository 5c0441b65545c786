#!/usr/bin/env bash
# scripts/reproduce.sh on the CPU, in a scratch copy of the scripts with two toy tables: runs shared
# between tables go once, finished runs leave a record that the report reads once the run folders
# are gone, the README block is rewritten from the tables, and a run stopped by --stop-after exits
# 75 and is resumed to the end by the next call.
#   tests/scripts/test_reproduce.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: test_reproduce.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$build/mdq-train" ] || { echo "test_reproduce: $build/mdq-train not found (build first)"; exit 2; }
root=$(mktemp -d /tmp/mdq-reproduce-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$root"' EXIT
mkdir -p "$root/scripts/tables"
cp "$src/scripts/reproduce.py" "$src/scripts/plot_metrics.py" "$root/scripts/"
fail() { echo "test_reproduce: FAILED: $*"; exit 1; }

# Toy Fashion-MNIST-format data (scripts/make-toy-idx.py).
python3 "$(dirname "$0")/../../scripts/make-toy-idx.py" "$root/data"
common="--model smallcnn --dataset fashion-mnist --batch-size 32 --eval-every 10 --log-every 5 --device cpu --workers 1"
cat > "$root/scripts/tables/toya.txt" <<EOF
# toya: two cells
toy   float      data   $common --method float --iters 20
toy   md-tanh-s  data   $common --method md-tanh-s --beta-interval 2 --iters 20
EOF
cat > "$root/scripts/tables/toyb.txt" <<EOF
# toyb: toya's float run shared, one run of its own
toy   float      data   =toya/toy-float
toy   md-tanh-s  data   $common --method md-tanh-s --beta-interval 2 --iters 20 --seed 2
EOF
python3 -c "import sys; sys.path.insert(0, sys.argv[1]); import reproduce as r; print('# readme', r.README_BEGIN, r.README_END, sep='\n')" \
  "$root/scripts" > "$root/README.md"  # a README with the block's two markers
run() { python3 "$root/scripts/reproduce.py" "$@" --build "$build" --data-root "$root" --no-plots; }

out=$(run toya toyb --jobs 2) || fail "the first call exited $?: $out"
echo "$out"
[ "$(echo "$out" | grep -c '^\[.*start ')" = 3 ] || fail "expected 3 runs started (the shared one once)"
for r in toya/runs/toy-float toya/runs/toy-md-tanh-s toyb/runs/toy-md-tanh-s-seed2; do
  grep -q test_top1 "$root/results/$r/metrics.jsonl" || fail "no record results/$r"
  [ -f "$root/results/$r/config.txt" ] || fail "no config.txt in results/$r"
done
grep -q '| toy-float (= toya/toy-float) | done |' "$root/results/toyb.md" || fail "toyb.md does not show the shared run"

rm -rf "$root/runs"  # a fresh clone: the report must come from the records alone
cp "$root/results/toyb.md" "$root/toyb.before"
run toya toyb --report > /dev/null || fail "--report exited $?"
diff "$root/toyb.before" "$root/results/toyb.md" || fail "toyb.md changed when rebuilt from the records"
grep -q '^\*\*\[toyb\](results/toyb.md)\*\* (2 of 2 runs finished' "$root/README.md" || fail "README block not rewritten"
grep -q '^| REF (float) |' "$root/README.md" || fail "README block holds no grid"

cat > "$root/scripts/tables/toyc.txt" <<EOF
# toyc: a run long enough to be stopped
toy   md-tanh-s  data   --model smallcnn --dataset fashion-mnist --batch-size 32 --device cpu --workers 1 --method md-tanh-s --beta-interval 2 --iters 100 --eval-every 50 --log-every 10
EOF
set +e; run toyc --jobs 1 --stop-after 1 > "$root/stop.log"; rc=$?; set -e
cat "$root/stop.log"
[ $rc = 75 ] || fail "a call stopped by --stop-after exited $rc, expected 75"
[ -f "$root/runs/reproduce/toyc/toy-md-tanh-s/last.ckpt" ] || fail "the stopped run saved no last.ckpt"
out=$(run toyc --jobs 1) || fail "the resuming call exited $?"
echo "$out" | grep -q 'resume toyc/toy-md-tanh-s' || fail "the second call did not resume the run"
grep -q test_top1 "$root/results/toyc/runs/toy-md-tanh-s/metrics.jsonl" || fail "the resumed run did not finish"
echo "test_reproduce: passed"
