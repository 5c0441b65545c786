#!/usr/bin/env bash
# The test command: installs what is missing, builds everything (CUDA code too when nvcc is
# there), runs every test with ctest and says which tests were skipped and why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${MDQ_BUILD_DIR:-build}
deps=()
[ -d .deps/include ] && deps=(-DMDQ_DEPS_DIR="$PWD/.deps")
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${deps[@]}" "$@"
cmake --build "$build"
status=0
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" || status=$?
log="$build/Testing/Temporary/LastTest.log"
if grep -q "^SKIPPED:" "$log" 2>/dev/null; then
  echo "Skipped tests, with the reason each gave:"
  grep "^SKIPPED:" "$log" | sort | uniq -c | sed 's/^/  /'
fi
exit $status
