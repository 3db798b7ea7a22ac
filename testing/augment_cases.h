#pragma once
// The batch shapes of DINO's augmentations on the GPU (kernels/cuda/augment.cu), which are not a
// tensor op and so not in the op table (testing/op_cases.h): one list for the CUDA tests
// (tests/cuda/test_augment.cpp compares every checked case with the CPU path, apply_view) and
// `dino bench augment` (the cases of a benchmark set), so a shape added for one is run by both.
#include <string>
#include <utility>
#include <vector>

namespace dino::testing {

struct AugmentCase {
  std::string label;
  int channels = 3;
  std::vector<std::pair<int, int>> sources;  // each sample's source (height, width)
  int global_size = 224, local_crops = 10, local_size = 96;
  // Compared with the CPU path by the CUDA tests (off for a benchmark batch, too large to run
  // through apply_view on every test run).
  bool check = true;
  std::vector<std::string> bench;  // the benchmark sets ("smoke", "vit"); none: tests only
  int batch() const { return int(sources.size()); }
  bool uniform() const;  // every source the same size (a benchmark batch)
};

const std::vector<AugmentCase>& augment_cases();
// The checked cases (the CUDA tests').
std::vector<const AugmentCase*> checked_augment_cases();
// The cases of benchmark set `set` ("smoke", "vit", or "all": every set but "smoke").
std::vector<const AugmentCase*> augment_bench_cases(const std::string& set);

}  // namespace dino::testing
