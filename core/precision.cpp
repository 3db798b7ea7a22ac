#include "core/precision.h"

namespace dino::precision {

namespace {

bool computes_in(Device d, DType t) {
  return d == Device::cpu ? (t == DType::f32 || t == DType::f64)
                          : (t == DType::f32 || t == DType::bf16);
}

const char* float_dtypes(Device d) { return d == Device::cpu ? "f32 or f64" : "f32 or bf16"; }

// The first defined tensor's device shared by all; on the CPU its dtype too (`same_dtype`).
const Tensor* check_shared(const char* op, std::initializer_list<Named> ts, bool same_dtype) {
  const Tensor* first = nullptr;
  for (const auto& [t, name] : ts) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
      continue;
    }
    DINO_CHECK(t->device() == first->device(), "[", op, "] mixes ", device_name(first->device()),
               " and ", device_name(t->device()), " tensors: ", name, " is on the ",
               device_name(t->device()));
    DINO_CHECK(!same_dtype || t->dtype() == first->dtype(), "[", op, "] mixes ",
               dtype_name(first->dtype()), " and ", dtype_name(t->dtype()), " tensors");
  }
  return first;
}

}  // namespace

void check_float_operands(const char* op, std::initializer_list<Named> ts) {
  const Tensor* first = check_shared(op, ts, false);
  if (!first) return;
  const Device d = first->device();
  for (const auto& [t, name] : ts) {
    if (!t->defined()) continue;
    DINO_CHECK(computes_in(d, t->dtype()), "[", op, "] ", name, " must be ", float_dtypes(d),
               " on the ", device_name(d), ", got ", dtype_name(t->dtype()));
    DINO_CHECK(d != Device::cpu || t->dtype() == first->dtype(), "[", op, "] mixes ",
               dtype_name(first->dtype()), " and ", dtype_name(t->dtype()), " tensors");
  }
}

void check_movable_operands(const char* op, std::initializer_list<Named> ts) {
  const Tensor* first = check_shared(op, ts, true);
  if (!first || first->device() == Device::cpu) return;
  const size_t es = dtype_size(first->dtype());
  DINO_CHECK(es == 2 || es == 4, "[", op, "] moves 2- or 4-byte elements on CUDA (bf16, f32), got ",
             dtype_name(first->dtype()));
}

void require_f32_on_cuda(const char* op, const Tensor& t, const char* name, const char* what) {
  DINO_CHECK(t.device() != Device::cuda || t.dtype() == DType::f32, "[", op, "] ", name,
             " must be f32 on CUDA (", what, "), got ", dtype_name(t.dtype()));
}

DType promote(DType a, DType b) { return a == DType::f32 || b == DType::f32 ? DType::f32 : a; }

DType accumulation(DType t) { return t == DType::bf16 ? DType::f32 : t; }

DType norm_input(const Tensor& x) { return x.device() == Device::cuda ? DType::f32 : x.dtype(); }

DType norm_output(const Tensor& x) { return x.device() == Device::cuda ? DType::bf16 : x.dtype(); }

bool fuses_add_norm(const Tensor& x, const Tensor& branch) {
  return x.device() != Device::cuda || (x.dtype() == DType::f32 && branch.dtype() == DType::bf16);
}

DType gemm_operand(const Tensor& t) { return t.device() == Device::cuda ? DType::bf16 : t.dtype(); }

DType accumulator(const Tensor& t) { return t.device() == Device::cuda ? DType::f32 : t.dtype(); }

DType column_sums(const Tensor& t) { return t.device() == Device::cuda ? DType::f32 : DType::f64; }

}  // namespace dino::precision
