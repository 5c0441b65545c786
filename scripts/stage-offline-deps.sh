#!/usr/bin/env bash
# Stages what a GPU host without network needs to build and test mdq into .deps/ of this
# checkout (ignored by git), to be copied along with the tree (docs/DESIGN.md §3). Run it on a
# machine that reaches Debian's package archive:
#   scripts/stage-offline-deps.sh [--data] [--cifar10 TARBALL] [--cifar100 TARBALL] [--dest DIR]
#     .deps/include/catch2/catch.hpp   Catch2 v2 (single header), from the Debian package catch2
#     .deps/include/stb/stb_image.h    stb, from libstb-dev
#     .deps/data/fashion-mnist/*.gz    Fashion-MNIST (idx, gzip), from dataset-fashion-mnist (--data)
#     .deps/data/cifar10-jpeg.tar.gz   a copy of the CIFAR-10 JPEG tarball you have (--cifar10)
#     .deps/data/cifar100-jpeg.tar.gz  likewise for CIFAR-100 (--cifar100)
# The .deb files are kept in ~/.cache/mdq-debs, so a second run needs no network.
# On the host: cmake -DMDQ_DEPS_DIR=$PWD/.deps ... (scripts/test.sh and gpu-session.sh pass it
# when .deps/include exists; gpu-session.sh unpacks a staged CIFAR-10 tarball into /tmp/data).
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
fail() { echo "stage-offline-deps: $*" >&2; exit 1; }

dest=.deps
data=0
cifar10=""
cifar100=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=1 ;;
    --cifar10 | --cifar100)
      [ $# -ge 2 ] || fail "$1 needs the path of a tarball, e.g. $1 ~/data/${1#--}-jpeg.tar.gz"
      [ -f "$2" ] || fail "$1: no file at '$2'"
      case "$2" in *.tar.gz | *.tgz) ;; *) fail "$1: '$2' is not a .tar.gz" ;; esac
      path=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
      if [ "$1" = --cifar10 ]; then cifar10=$path; else cifar100=$path; fi
      shift ;;
    --dest)
      [ $# -ge 2 ] || fail "--dest needs a folder name inside the checkout"
      dest=$2
      shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fail "unknown argument '$1'" ;;
  esac
  shift
done
case "$dest" in /* | *..*) fail "--dest '$dest' must be a folder inside the checkout (a relative path)" ;; esac

top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null) ||
  fail "run it from a git checkout of mdq (the folder it stages into is ignored through .git/info/exclude)"
cd "$top"
command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
  fail "needs apt-get and dpkg (a Debian or Ubuntu machine) to fetch the catch2 and libstb-dev packages"

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$dest/" "$exclude" 2>/dev/null || echo "/$dest/" >> "$exclude"

pkgs=(catch2 libstb-dev)
[ "$data" = 1 ] && pkgs+=(dataset-fashion-mnist)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mdq-debs"
mkdir -p "$cache"
need=()
for p in "${pkgs[@]}"; do ls "$cache/${p}"_*.deb >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  # A stale package list makes apt-get download fail: refresh it once and try again.
  if ! (cd "$cache" && apt-get download "${need[@]}" >/dev/null 2>&1); then
    apt-get update -qq || fail "apt-get update failed (no network, or not root?): cannot fetch ${need[*]}"
    (cd "$cache" && apt-get download "${need[@]}") || fail "apt-get download ${need[*]} failed"
  fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for p in "${pkgs[@]}"; do
  deb=$(ls "$cache/${p}"_*.deb | sort -V | tail -1)
  dpkg -x "$deb" "$tmp" || fail "cannot unpack $deb"
done
[ -f "$tmp/usr/include/catch2/catch.hpp" ] ||
  fail "the catch2 package has no usr/include/catch2/catch.hpp (mdq needs Catch2 v2's single header)"
[ -f "$tmp/usr/include/stb/stb_image.h" ] || fail "the libstb-dev package has no usr/include/stb/stb_image.h"
mkdir -p "$dest/include"
rm -rf "$dest/include/catch2" "$dest/include/stb"
cp -r "$tmp/usr/include/catch2" "$tmp/usr/include/stb" "$dest/include/"

if [ "$data" = 1 ]; then
  mkdir -p "$dest/data/fashion-mnist"
  find "$tmp" -name '*-ubyte.gz' -exec cp {} "$dest/data/fashion-mnist/" \;
  n=$(find "$dest/data/fashion-mnist" -name '*-ubyte.gz' | wc -l)
  [ "$n" = 4 ] || fail "expected the 4 Fashion-MNIST idx files in dataset-fashion-mnist, found $n"
fi
for pair in "cifar10:$cifar10" "cifar100:$cifar100"; do
  name=${pair%%:*}
  src=${pair#*:}
  [ -n "$src" ] || continue
  tar tzf "$src" >/dev/null 2>&1 || fail "--$name: '$src' is not a readable gzip tarball"
  mkdir -p "$dest/data"
  cp "$src" "$dest/data/$name-jpeg.tar.gz"
done

echo "staged into $top/$dest ($(du -sh "$dest" | cut -f1)):"
(cd "$dest" && find . -maxdepth 2 -mindepth 2 | sort | sed 's|^\./|  |')
