#pragma once
// Shared validation and dispatch helpers for the op front-ends (core/ops_*.cpp).
#include <algorithm>
#include <array>
#include <climits>

#include "core/autograd.h"
#include "core/ops.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#endif

namespace dino::detail {

// Calls f(T{}) with T = float or double for the tensor's dtype; other dtypes are an error.
template <class F>
void dispatch_float(const char* op, DType t, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  throw Error(str_cat("[", op, "] expects f32 or f64 tensors, got ", dtype_name(t)));
}

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

// For code paths that only exist on the CPU (a CPU-only build, or the CPU branch of an op whose
// inputs should all be on the CPU): a CUDA tensor reaching one is a device mix-up.
inline void require_cpu(const char* op, const Tensor& t) {
  DINO_CHECK(t.device() == Device::cpu, "[", op, "] got a CUDA tensor on its CPU path: its "
             "inputs are on different devices, or this build has no CUDA support");
}

inline bool on_cuda(const Tensor& t) { return t.device() == Device::cuda; }

#ifdef DINO_HAS_CUDA
// The one stream every op runs on (kernels/cuda/context.h).
inline cudaStream_t cuda_stream() { return static_cast<cudaStream_t>(kernels::cuda::stream()); }
// Typed device pointers for the launchers (kernels/cuda/kernels.h).
inline float* f32_ptr(const Tensor& t) { return t.data<float>(); }
inline __nv_bfloat16* bf16_ptr(const Tensor& t) {
  return reinterpret_cast<__nv_bfloat16*>(t.data<bf16>());
}

inline void check_on_cuda(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    DINO_CHECK(t->device() == Device::cuda, "[", op, "] mixes cuda and ", device_name(t->device()),
               " tensors");
}

inline void check_float(const char* op, const Tensor& t, const char* name) {
  DINO_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16, "[", op, "] ", name,
             " must be f32 or bf16 on CUDA, got ", dtype_name(t.dtype()));
}

// The kernels index with int; a larger extent is a clear error, not an overflow.
inline int as_int(const char* op, int64_t v, const char* what) {
  DINO_CHECK(v <= INT_MAX, "[", op, "] ", what, " = ", v, " is too large for the CUDA kernels");
  return int(v);
}

// t in dtype dt (a cast on the device when it is the other float type).
inline Tensor in_dtype(const Tensor& t, DType dt) { return t.dtype() == dt ? t : t.to(dt); }
#endif

// Numpy broadcasting of two shapes; throws naming the op when they are incompatible.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// Sums g (of a broadcast shape) down to `shape`. Not recorded.
Tensor sum_to(const Tensor& g, const Shape& shape);

// Rows and columns of a tensor seen as (numel / last, last).
inline int64_t rows_of(const Tensor& t) { return t.dim() ? t.numel() / t.size(-1) : 1; }
inline int64_t cols_of(const Tensor& t) { return t.dim() ? t.size(-1) : 1; }

}  // namespace dino::detail
