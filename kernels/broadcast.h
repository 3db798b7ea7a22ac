#pragma once
// The broadcast geometry the CPU and CUDA elementwise backends share (numpy rules, up to 5
// dims: the most a Tensor has).
#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace dino::kernels {

constexpr int kMaxDims = 5;

// Strides (in elements) of `shape` read as if it had `out`'s rank, 0 along broadcast dims.
inline std::array<int64_t, kMaxDims> broadcast_strides(const Shape& shape, const Shape& out) {
  std::array<int64_t, kMaxDims> st{};
  int64_t stride = 1;
  const size_t off = out.size() - shape.size();
  for (size_t i = out.size(); i-- > 0;) {
    const int64_t d = i < off ? 1 : shape[i - off];
    st[i] = d == 1 ? 0 : stride;
    stride *= d;
  }
  return st;
}

}  // namespace dino::kernels
