#pragma once
// The optimizer kernels against float64 references, as rows of `dino check`'s table (after the
// op table's cases, testing/cuda/op_check.h): AdamW's step, the EMA, the gradient norms and the
// clipping are updates in place, not ops, so they are not cases of the table.
// tests/cuda/test_selfcheck.cpp requires every row to pass. The metric is the op table's
// (ARCHITECTURE §6): ||out - ref|| / ||ref||, any non-finite element a failure;
// tests/cuda/test_util.h takes compare() and bf16_output_error() from here. A plain C++ header (no
// CUDA includes); the functions need a usable GPU (available()).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "testing/bf16_oracle.h"

namespace dino::kernels::cuda::selfcheck {

// The metric, the bf16 floor and the attention composite (testing/bf16_oracle.h).
using ::dino::testing::attention_bf16_composite;
using ::dino::testing::bf16_output_error;
using ::dino::testing::compare;
using ::dino::testing::Comparison;

struct Row {
  std::string kernel;  // the launcher, e.g. "layernorm_forward"
  std::string shape;   // e.g. "N=197 C=384"
  std::string output;  // which output was compared, e.g. "dweight"
  double rel_err = 0, tol = 0;
  size_t non_finite = 0;
  bool pass = false;
  std::string worst;  // the worst element, for a failing row
};

// Runs the optimizer comparisons on the current device. A kernel that throws (a CUDA error)
// becomes a failing row saying so; the rest still run.
std::vector<Row> run_optimizer_checks(uint64_t seed = 1);

// The clipping rows (testing/cuda/selfcheck_optimizer.cpp): scale_by_norms per tensor and
// global, after grad_norms.
void check_optimizer_clip(std::vector<Row>& rows, uint64_t seed);

}  // namespace dino::kernels::cuda::selfcheck
