// The CUDA test executable's main (ARCHITECTURE §6). Catch2 v2 has no SKIP, so without a usable
// GPU the executable prints why and exits with 77, which CTest (SKIP_RETURN_CODE 77) reports
// as skipped rather than passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "kernels/cuda/runtime.h"

int main(int argc, char** argv) {
  if (!dino::kernels::cuda::available()) {
    std::printf("skipping the CUDA tests: %s\n", dino::kernels::cuda::device_description().c_str());
    return 77;
  }
  std::printf("CUDA tests on %s\n", dino::kernels::cuda::device_description().c_str());
  return Catch::Session().run(argc, argv);
}
