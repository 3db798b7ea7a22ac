#pragma once
// The CUDA kernels against their CPU references, as a table: `dino check` prints it and
// tests/cuda/test_selfcheck.cpp requires every row to pass. The metric and the tolerances are
// the CUDA tests' (DESIGN §6; tests/cuda/test_util.h uses compare() and bf16_output_error()
// from here): ||out - ref|| / ||ref|| against a float64 reference computed from the same
// (bf16-rounded where the kernel reads bf16) fresh random inputs, outputs poisoned with NaN
// before each run, any non-finite element a failure. Each family runs a few of its test's
// shapes, chosen to cover the odd and the training-sized cases in a few seconds.
// A plain C++ header (no CUDA includes); the functions need a usable GPU (available()).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dino::kernels::cuda::selfcheck {

struct Comparison {
  double rel_l2 = 0;   // ||got - ref|| / ||ref|| (NaN if any element of got is not finite)
  size_t non_finite = 0;
  std::string worst;   // the element with the largest |got - ref|
};
Comparison compare(const std::vector<double>& got, const std::vector<double>& ref);

// The error of only rounding the exact result to bf16: the floor of any bf16-output kernel.
double bf16_output_error(const std::vector<double>& ref);

// The plain bf16 attention composite (cuBLAS + unfused kernels, every product stored in bf16),
// simulated in double from the bf16 inputs qkv (B, N, 3*H*Dh) and dout (B, N, H*Dh): its error
// against the exact result sets the attention kernels' tolerance.
void attention_bf16_composite(std::vector<double>& out, std::vector<double>& dqkv,
                              const std::vector<double>& qkv, const std::vector<double>& dout,
                              int B, int N, int H, int Dh);

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

}  // namespace dino::kernels::cuda::selfcheck
