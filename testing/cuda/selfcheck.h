#pragma once
// The CUDA kernels against their CPU references, as a table: `dino check` prints it and
// tests/cuda/test_selfcheck.cpp requires every row to pass. The metric and the tolerances are
// the CUDA tests' (ARCHITECTURE §6; tests/cuda/test_util.h uses compare() and bf16_output_error()
// from here): ||out - ref|| / ||ref|| against a float64 reference computed from the same
// (bf16-rounded where the kernel reads bf16) fresh random inputs, outputs poisoned with NaN
// before each run, any non-finite element a failure. Each family runs a few of its test's
// shapes, chosen to cover the odd and the training-sized cases in a few seconds.
// A plain C++ header (no CUDA includes); the functions need a usable GPU (available()).
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
  std::string worst;   // the worst element, for a failing row
};

// Runs every family's comparisons on the current device. A kernel that throws (a CUDA error)
// becomes a failing row saying so; the rest still run.
std::vector<Row> run_all(uint64_t seed = 1);

// Rows of the nn kernels (testing/cuda/selfcheck_nn.cpp): softmax, log-softmax, l2-normalize, drop path,
// bicubic resize and the DINO loss extras (q, the scaled gradient, the teacher statistics).
void check_nn(std::vector<Row>& rows, uint64_t seed);

// Rows of the GEMM-side kernels (testing/cuda/selfcheck_linear.cpp): im2col_patches, weight_norm forward and
// backward, the fp32-output GEMM with an f32 bias (patchify) and the bf16 strided batch (matmul).
void check_linear(std::vector<Row>& rows, uint64_t seed);

// Rows of the element-wise kernels (testing/cuda/selfcheck_elementwise.cpp): the mixed-dtype broadcast binary op,
// GELU forward/backward, the deterministic all-sum, row reductions, sum_to, the tiled transpose.
void check_elementwise(std::vector<Row>& rows, uint64_t seed);

// Rows of the optimizer's clipping (testing/cuda/selfcheck_optimizer.cpp): the clipping launch scale_by_norms
// (per tensor and global) after grad_norms.
void check_optimizer_clip(std::vector<Row>& rows, uint64_t seed);

}  // namespace dino::kernels::cuda::selfcheck
