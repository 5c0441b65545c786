#!/usr/bin/env bash
# Builds the libFuzzer targets for the CIFAR and idx parsers (data/formats.cpp alone, with
# ASan + UBSan) and runs each for N seconds (default 60). Not part of ctest.
#   tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-/tmp/mdq-fuzz}
mkdir -p "$out"
for target in fuzz_cifar fuzz_idx; do
  clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root" "$root/tests/fuzz/$target.cpp" "$root/data/formats.cpp" -lz -o "$out/$target"
  mkdir -p "$out/corpus-$target"
  # Seeds: one valid CIFAR-10 and CIFAR-100 record; a valid idx image file, plain and gzipped.
  if [ "$target" = fuzz_cifar ]; then
    head -c 3073 /dev/zero >"$out/corpus-$target/seed10"
    head -c 3074 /dev/zero >"$out/corpus-$target/seed100"
  else
    printf '\x01\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02\x01\x02\x03\x04\x05\x06\x07\x08' >"$out/corpus-$target/seed-idx"
    { printf '\x01'; printf '\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03' | gzip -c; } >"$out/corpus-$target/seed-gz"
  fi
  echo "== $target: ${seconds}s"
  # -max_len: a few CIFAR records; idx headers and gzip streams fit easily.
  "$out/$target" "$out/corpus-$target" -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" 2>&1 | grep -E "^#[0-9]+.*DONE|stat::|ERROR|SUMMARY|crash-|Done" || true
done
