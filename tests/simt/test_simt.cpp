// The emulator's own checks (tests/simt/README.md): what it must catch, it catches.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>

#include "tests/simt/simt.h"

using dino::simt::Dim3;

TEST_CASE("the emulator reports a __syncthreads that some threads skip", "[simt]") {
  // Half the block waits at the barrier, the other half has returned: on a GPU this hangs or
  // is undefined.
  CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{64, 1, 1}, 0,
                                       [] {
                                         if (threadIdx.x < 32) __syncthreads();
                                       }),
                    Catch::Contains("deadlock"));
}

TEST_CASE("the emulator refuses launches the runtime refuses", "[simt]") {
  int runs = 0;
  cudaGetLastError();
  dino::simt::Launch(dim3(1), dim3(2048)).run([&] { ++runs; });  // > 1024 threads
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  dino::simt::Launch(dim3(1, 70000), dim3(32)).run([&] { ++runs; });  // gridDim.y > 65535
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  dino::simt::Launch(dim3(1), dim3(32), 228 * 1024).run([&] { ++runs; });  // shared memory
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(runs == 0);
  dino::simt::Launch(dim3(2, 3), dim3(40)).run([&] { ++runs; });  // a partial second warp
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(runs == 2 * 3 * 40);
}

TEST_CASE("emulated shuffles exchange within the warp", "[simt]") {
  float got[64];
  dino::simt::launch(Dim3{1, 1, 1}, Dim3{64, 1, 1}, 0, [&] {
    const int i = int(threadIdx.x);
    got[i] = __shfl_xor_sync(0xffffffffu, float(i), 5);
  });
  for (int i = 0; i < 64; ++i) CHECK(got[i] == float(i ^ 5));
}
