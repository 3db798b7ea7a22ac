#pragma once
// Shared validation and dispatch helpers for the op front-ends (core/ops_*.cpp).
#include <algorithm>
#include <array>
#include <climits>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace dino::detail {

inline void check_defined(const char* op, const Tensor& t, const char* name) {
  DINO_CHECK(t.defined(), "[", op, "] ", name, " is undefined");
}

// Every input on the same device with the same dtype as the first.
inline void check_same(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
      continue;
    }
    DINO_CHECK(t->dtype() == first->dtype(), "[", op, "] mixes ", dtype_name(first->dtype()),
               " and ", dtype_name(t->dtype()), " tensors");
    DINO_CHECK(t->device() == first->device(), "[", op, "] mixes ", device_name(first->device()),
               " and ", device_name(t->device()), " tensors");
  }
}

inline bool on_cuda(const Tensor& t) { return t.device() == Device::cuda; }

// A drop_path call of the step, as drop_path and linear_drop_path take it (core/ops_nn.cpp): the
// noise's nonce (checked to be on x's device), the call's index, taken from the noise, and the
// batch shard that places x's samples in the global batch (core/batch_shard.h).
struct DropPathCall {
  Tensor nonce;
  uint32_t call;
  int rank, ranks;
};
DropPathCall take_drop_path_call(const char* op, const Tensor& x, DropPathNoise& noise);

// Numpy broadcasting of two shapes; throws naming the op when they are incompatible.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// Sums g (of a broadcast shape) down to `shape`. Not recorded.
Tensor sum_to(const Tensor& g, const Shape& shape);

}  // namespace dino::detail
