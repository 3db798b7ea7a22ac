#pragma once
// The optimizer kernels' tensor sets (AdamW's step, the EMA, the gradient norms and the
// clipping: multi-tensor updates in place, not ops of the op table, testing/op_cases.h), in one
// place for their CUDA tests (tests/cuda/test_optimizer.cpp) and `dino check --op optimizer`
// (testing/cuda/selfcheck*.cpp).
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace dino::testing {

// Tensors packed in one buffer: each one's size and offset, and the buffer's length.
struct TensorLayout {
  std::vector<int64_t> sizes, offsets;
  int64_t total = 0;
};

// 1 element, odd sizes, the 1024-element chunk's edges (1023, 1024, 1025), a large tensor, then
// 1500 tiny ones of 1 to 9 elements drawn from rng (more chunks than an H100 or H200 grid has
// blocks, so the round-robin over blocks wraps around). `aligned` starts each tensor at a
// multiple of 4 elements (16 bytes: the vector path); otherwise they sit back to back
// (misaligned: the scalar path).
TensorLayout optimizer_layout(Rng& rng, bool aligned);

}  // namespace dino::testing
