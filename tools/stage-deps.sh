#!/usr/bin/env bash
# Copies the build dependencies that a machine without Debian's -dev packages lacks (the GPU
# machine: CUDA, a compiler and CMake, nothing else) from this Debian machine into .deps/, laid
# out as an install prefix, so `cmake -DDINO_DEPS_DIR=$PWD/.deps` finds them all there:
#   include/  eigen3, catch2 (v2), nlohmann, CLI, stb, fmt (use it header-only: FMT_HEADER_ONLY),
#             zlib.h + zconf.h, turbojpeg.h, cudnn*.h
#   lib/      libz.a and libturbojpeg.a (static, so nothing is needed at run time) and
#             libCatch2WithMain.a
#   share/eigen3/cmake, share/cmake/nlohmann_json, lib/cmake/Catch2: the packages' CMake
#             configs, which locate their headers relative to themselves (3 levels up)
#   cupti/    CUPTI's library and headers (include/, lib/), for `dino bench train-step --profile`
#             where the GPU machine's CUDA has no CUPTI
#   fashion-mnist/  the dataset's four IDX files (tools/gpu-check.sh trains on them)
#   STAGED    where each piece came from, with the Debian package versions
# Idempotent: builds a fresh copy beside .deps and swaps it in. .deps/ is git-ignored: copy it
# to the GPU machine with the tree (tools/gpu-check.sh).
#
# Usage: tools/stage-deps.sh [DEST]   (default: .deps in the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.deps}"
tmp="$dest.tmp.$$"
trap 'rm -rf "$tmp"' EXIT

cuda_include="${CUDA_HOME:-/usr/local/cuda}/include"
multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"

need() {  # need PATH PACKAGE: fail with the package to install when PATH is missing
  [ -e "$1" ] || { echo "stage-deps: $1 is missing (install $2: tools/setup.sh)" >&2; exit 1; }
}
need /usr/include/eigen3/Eigen/Core libeigen3-dev
need /usr/share/eigen3/cmake/Eigen3Config.cmake libeigen3-dev
need /usr/include/catch2/catch.hpp catch2
need /usr/lib/cmake/Catch2/Catch2Config.cmake catch2
need /usr/lib/libCatch2WithMain.a catch2
need /usr/include/nlohmann/json.hpp nlohmann-json3-dev
need /usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake nlohmann-json3-dev
need /usr/include/CLI/CLI.hpp libcli11-dev
need /usr/include/stb/stb_image.h libstb-dev
need /usr/include/fmt/format.h libfmt-dev
need /usr/include/zlib.h zlib1g-dev
need "/usr/lib/$multiarch/libz.a" zlib1g-dev
need /usr/include/turbojpeg.h libturbojpeg0-dev
need "/usr/lib/$multiarch/libturbojpeg.a" libturbojpeg0-dev

mkdir -p "$tmp/include" "$tmp/lib/cmake" "$tmp/share/eigen3" "$tmp/share/cmake"
cp -r /usr/include/eigen3 /usr/include/catch2 /usr/include/nlohmann /usr/include/CLI \
      /usr/include/stb /usr/include/fmt /usr/include/zlib.h /usr/include/zconf.h \
      /usr/include/turbojpeg.h "$tmp/include/"
cp "/usr/lib/$multiarch/libz.a" "/usr/lib/$multiarch/libturbojpeg.a" "$tmp/lib/"
# Unused (tests/cuda has its own main), but Catch2's config checks that its target's file exists.
cp /usr/lib/libCatch2WithMain.a "$tmp/lib/"
cp -r /usr/share/eigen3/cmake "$tmp/share/eigen3/"
cp -r /usr/share/cmake/nlohmann_json "$tmp/share/cmake/"
cp -r /usr/lib/cmake/Catch2 "$tmp/lib/cmake/"
# cuDNN's headers, when this machine has them (the GPU machine's CUDA may not); the library is
# found at configure time (CMakeLists.txt), and the build leaves cuDNN out without one.
cudnn_note="none (no $cuda_include/cudnn.h)"
if compgen -G "$cuda_include/cudnn*.h" >/dev/null; then
  cp "$cuda_include"/cudnn*.h "$tmp/include/"
  cudnn_note="$(sed -n 's/^#define CUDNN_\(MAJOR\|MINOR\|PATCHLEVEL\) *\([0-9]*\).*/\2/p' \
                "$cuda_include/cudnn_version.h" | paste -sd.) from $cuda_include"
fi
# CUPTI (library and headers) for `dino bench train-step --profile`, when this machine's CUDA has
# it, in a folder of its own: CMake takes it only when the GPU machine's CUDA has none.
cuda_root="$(dirname "$cuda_include")"
cupti_note="none (no libcupti.so beside $cuda_include)"
cupti_lib=""
for candidate in "$cuda_root"/extras/CUPTI/lib64 "$cuda_root"/lib64 "$cuda_root"/lib; do
  [ -z "$cupti_lib" ] && [ -e "$candidate/libcupti.so" ] && cupti_lib="$candidate/libcupti.so"
done
if [ -n "$cupti_lib" ] && [ -f "$cuda_include/cupti.h" ]; then
  mkdir -p "$tmp/cupti/lib" "$tmp/cupti/include"
  cp -P "$(dirname "$cupti_lib")"/libcupti.so* "$tmp/cupti/lib/"
  cp -r "$cuda_include"/cupti*.h "$cuda_include"/generated_*_meta.h "$cuda_include"/Openacc \
        "$cuda_include"/Openmp "$tmp/cupti/include/"
  cupti_note="$(readlink -f "$cupti_lib") with its headers from $cuda_include"
fi
# The Fashion-MNIST files that configs/fashion_mnist_gpu.json trains on in tools/gpu-check.sh
# (30 MB, gzip'd IDX as Debian's dataset-fashion-mnist installs them), when this machine has them.
fmnist=/usr/share/datasets/fashion-mnist
fmnist_note="none (no $fmnist)"
if [ -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$tmp/fashion-mnist"
  cp "$fmnist"/*-ubyte.gz "$tmp/fashion-mnist/"
  fmnist_note="$(dpkg-query -W -f='${Version}' dataset-fashion-mnist 2>/dev/null || echo '(not from a package)') from $fmnist"
fi

{
  echo "# staged by tools/stage-deps.sh on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for p in libeigen3-dev catch2 nlohmann-json3-dev libcli11-dev libstb-dev libfmt-dev zlib1g-dev \
           libturbojpeg0-dev; do
    echo "$p $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '(not from a package)')"
  done
  echo "cudnn headers $cudnn_note"
  echo "cupti $cupti_note"
  echo "fashion-mnist $fmnist_note"
} >"$tmp/STAGED"

rm -rf "$dest"
mv "$tmp" "$dest"
echo "stage-deps: staged into $dest ($(du -sh "$dest" | cut -f1))"
