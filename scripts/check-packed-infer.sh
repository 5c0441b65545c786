#!/usr/bin/env bash
# Exported models on the packed kernels vs the float engine, on a GPU host: trains two short
# runs (Fashion-MNIST small CNN, CIFAR-10 ResNet-18 3 epochs), exports them, and runs mdq-infer
# with --engine float and --engine packed in both precisions (accuracies must agree; images/s
# side by side). --agree counts the images whose top-1 class matches the float engine's: an
# exported model should agree with the network mdq-train evaluated on >= 99.9% of the images, which the default --packed-precision split should meet and bf16 does not.
# Then the same two nets fully binary (--act-bits 1: sign activations), whose --engine packed runs
# their layers on ±1 input on the W1A1 kernels (engine/infer/lower.h picks the path per layer).
# The CIFAR-10 nets also run with --stem tc-bf16 (the tensor-core stem on bf16-rounded operands;
# the default, --stem auto = tc, splits them in two bf16 parts), --stem direct (the direct f32
# stem kernel) and --stem f32 (the stem on the float engine), for the agreement and images/s side
# by side; last, a random-weight ImageNet ResNet-18 through mdq-infer --random-model, likewise.
# Needs build-gpu (scripts/gpu-session.sh build) and the data staged in .deps (CIFAR-10 in /tmp/data).
# A dataset that is not there skips its checks with a line that says so; any command that fails
# is named at the end, and the script then exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
fm=.deps/data/fashion-mnist; c10=/tmp/data/cifar10
[ -d $fm ] || fm=/usr/share/datasets/fashion-mnist  # the Debian package's copy, as gpu-session.sh
failed=()
# run CMD...: runs it; a non-zero exit is remembered (and the script goes on to the other checks).
run() { "$@" || failed+=("$*"); }
# train ARGS...: mdq-train, its last 3 lines shown.
train() { $B/mdq-train "$@" --overwrite --quiet 2>&1 | tail -3; [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("mdq-train $*"); }
# have DIR WHAT WHERE-FROM: 1 where the dataset DIR is there, else 0 and a line that says its checks are skipped.
have() {
  [ -d "$1" ] && { echo 1; return; }
  echo "check-packed-infer: $2 is not at $1 ($3): its checks are skipped" >&2
  echo 0
}
have_fm=$(have $fm Fashion-MNIST "stage it in .deps/data/fashion-mnist")
have_c10=$(have $c10 CIFAR-10 "scripts/gpu-session.sh unpacks .deps/data/cifar10-jpeg.tar.gz there")

if [ $have_fm = 1 ]; then
  train --config configs/fashion-mnist-smallcnn-md-tanh-s-cpu.cfg --data-dir $fm --device cuda --out runs/fm-small
  run $B/mdq-export --checkpoint runs/fm-small/best.ckpt --out runs/fm-small.mdqpack
  run $B/mdq-infer --model runs/fm-small.mdqpack --data-dir $fm --engine float
  for p in split bf16; do run $B/mdq-infer --model runs/fm-small.mdqpack --data-dir $fm --engine packed --packed-precision $p --agree; done
fi
if [ $have_c10 = 1 ]; then
  # 3 epochs with beta annealed fast enough (x1.2 every 20 iterations) that the rounded network learns too
  train --config configs/cifar10-resnet18-md-tanh-s-30ep.cfg --data-dir $c10 --epochs 3 --beta-rho 1.2 --beta-interval 20 \
    --precision tf32 --out runs/c10-3ep
  run $B/mdq-export --checkpoint runs/c10-3ep/best.ckpt --out runs/c10-3ep.mdqpack
  for bs in 256 1000; do run $B/mdq-infer --model runs/c10-3ep.mdqpack --data-dir $c10 --engine float --batch-size $bs; done
  for p in split bf16; do
    run $B/mdq-infer --model runs/c10-3ep.mdqpack --data-dir $c10 --engine packed --packed-precision $p --batch-size 256
    run $B/mdq-infer --model runs/c10-3ep.mdqpack --data-dir $c10 --engine packed --packed-precision $p --batch-size 1000 --agree
  done
  for s in tc-bf16 direct f32; do
    run $B/mdq-infer --model runs/c10-3ep.mdqpack --data-dir $c10 --engine packed --stem $s --batch-size 1000 --agree
  done
fi
# Fully binary (act_bits = 1) on the W1A1 kernels
if [ $have_fm = 1 ]; then
  train --config configs/fashion-mnist-smallcnn-md-tanh-s-cpu.cfg --data-dir $fm --device cuda --act-bits 1 --out runs/fm-small-a1
  run $B/mdq-export --checkpoint runs/fm-small-a1/best.ckpt --out runs/fm-small-a1.mdqpack
  run $B/mdq-infer --model runs/fm-small-a1.mdqpack --data-dir $fm --engine float
  for s in auto tc-bf16 direct; do run $B/mdq-infer --model runs/fm-small-a1.mdqpack --data-dir $fm --engine packed --stem $s --agree; done
fi
if [ $have_c10 = 1 ]; then
  train --config configs/cifar10-resnet18-md-tanh-s-30ep.cfg --data-dir $c10 --epochs 3 --beta-rho 1.2 --beta-interval 20 \
    --act-bits 1 --precision tf32 --out runs/c10-3ep-a1
  run $B/mdq-export --checkpoint runs/c10-3ep-a1/best.ckpt --out runs/c10-3ep-a1.mdqpack
  run $B/mdq-infer --model runs/c10-3ep-a1.mdqpack --data-dir $c10 --engine float --batch-size 1000
  run $B/mdq-infer --model runs/c10-3ep-a1.mdqpack --data-dir $c10 --engine packed --batch-size 1000 --agree
  for s in tc-bf16 direct f32; do
    run $B/mdq-infer --model runs/c10-3ep-a1.mdqpack --data-dir $c10 --engine packed --stem $s --batch-size 1000 --agree
  done
fi
# A random-weight ImageNet ResNet-18 (no data, no model file): W1A1 and W1A16 at batch 256, the
# default stem (tensor cores, split operands), tc-bf16, direct and f32, against the float engine (--agree:
# the images of one batch)
for a in 1 32; do
  for s in auto tc-bf16 direct f32; do
    run $B/mdq-infer --random-model resnet18 --engine packed --act-bits $a --stem $s --batch-size 256 --agree
  done
  run $B/mdq-infer --random-model resnet18 --engine float --act-bits $a --batch-size 256
done
[ $have_fm = 1 ] || echo "check-packed-infer: the Fashion-MNIST checks were skipped (no data at $fm)"
[ $have_c10 = 1 ] || echo "check-packed-infer: the CIFAR-10 checks were skipped (no data at $c10)"
if [ ${#failed[@]} -gt 0 ]; then
  echo "check-packed-infer: ${#failed[@]} command(s) failed:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "check-packed-infer: every command ran"
