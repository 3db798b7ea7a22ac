#pragma once
// The accuracy oracle shared by the CUDA tests, `dino check` and the host-emulated kernel tests
// (ARCHITECTURE §6): the ||got - ref|| / ||ref|| metric against a float64 reference, the error of
// rounding alone to bf16, and the plain bf16 attention composite whose error sets the attention
// kernels' tolerance. Plain C++, so CPU-only builds have it too.
#include <cstddef>
#include <string>
#include <vector>

namespace dino::testing {

struct Comparison {
  double rel_l2 = 0;  // ||got - ref|| / ||ref|| (NaN if any element of got is not finite)
  size_t non_finite = 0;
  std::string worst;  // the element with the largest |got - ref|
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

}  // namespace dino::testing
