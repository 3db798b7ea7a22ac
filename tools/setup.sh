#!/usr/bin/env bash
# Installs every Debian package dino-engine needs. Idempotent and quiet: when everything is
# already installed it does nothing. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  build-essential cmake
  libeigen3-dev catch2 nlohmann-json3-dev libcli11-dev libfmt-dev zlib1g-dev libstb-dev
  libturbojpeg0-dev
  # Data-parallel training: mpirun launches the ranks, MPI carries the host collectives.
  openmpi-bin libopenmpi-dev
  # tools/sanitize-check.sh: clang with libFuzzer and the sanitizer runtimes, and its OpenMP.
  clang-14 libclang-rt-14-dev libomp-14-dev
  # tests/style/clang_format.sh: every C++ and CUDA file as .clang-format says.
  clang-format-14
  dataset-fashion-mnist
  # python3 also runs at build time (tests/simt/emulate_cu.py); torch is the test reference.
  python3 python3-torch python3-numpy
  # Without an optimised BLAS, Debian's torch falls back to the reference BLAS (~8x slower).
  libopenblas0-pthread
  # benchmarks/loader_vs_torchvision.py and make_jpeg_folder.py: the loader's baseline,
  # torchvision's DINO transform on Pillow images.
  python3-torchvision python3-pil
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
