#!/usr/bin/env bash
# Installs what mdq needs to build and test on Debian/Ubuntu, when it is missing.
# The CUDA toolkit and cuDNN are optional: without nvcc, mdq builds its CPU backend only.
# NCCL (multi-GPU) is found in the CUDA toolkit or the system paths when present; optional too.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -f /usr/include/catch2/catch.hpp ] || [ -f "${MDQ_DEPS_DIR:-/nonexistent}/include/catch2/catch.hpp" ] || need+=(catch2)
[ -f /usr/include/stb/stb_image.h ] || [ -f "${MDQ_DEPS_DIR:-/nonexistent}/include/stb/stb_image.h" ] || need+=(libstb-dev)
# OpenMPI: data-parallel training under mpirun, and the MPI tests (2 CPU ranks) that CI runs.
# MDQ_WITHOUT_MPI=1 skips it (mdq then builds without MPI and those tests report themselves skipped).
if [ "${MDQ_WITHOUT_MPI:-0}" != 1 ]; then
  command -v mpirun >/dev/null || need+=(openmpi-bin)
  command -v mpicc >/dev/null || need+=(libopenmpi-dev)
fi
if [ "${MDQ_WITH_FASHION_MNIST:-0}" = 1 ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then need+=(dataset-fashion-mnist); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "mdq: installing ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
