#!/usr/bin/env bash
# The main job: installs what is missing, builds mdq, and trains a binary network with
# MD-tanh-S on Fashion-MNIST: ResNet-18 on the GPU when there is one, else a small CNN on the
# CPU that finishes in a few minutes. Ends by printing the rounded network's test accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
MDQ_WITH_FASHION_MNIST=1 bash scripts/install-deps.sh
build=${MDQ_BUILD_DIR:-build}
deps=()
[ -d .deps/include ] && deps=(-DMDQ_DEPS_DIR="$PWD/.deps")
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF "${deps[@]}" >/dev/null
cmake --build "$build" --target mdq-train mdq-device
data=${MDQ_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
[ -d .deps/data/fashion-mnist ] && data=.deps/data/fashion-mnist
# The main job may be run again: it starts afresh in runs/main-job (your own --out or --resume win).
again="--out runs/main-job --overwrite"
if "$build/mdq-device"; then
  exec "$build/mdq-train" --config configs/fashion-mnist-resnet18-md-tanh-s.cfg --data-dir "$data" $again "$@"
else
  exec "$build/mdq-train" --config configs/fashion-mnist-smallcnn-md-tanh-s-cpu.cfg --data-dir "$data" $again "$@"
fi
