#include "dist/communicator.h"

namespace dino::dist {

void Communicator::check_tensor(const char* op, const Tensor& t, bool reduce) const {
  DINO_CHECK(t.defined(), "[", backend(), "] ", op, ": undefined tensor");
  DINO_CHECK(t.device() == device(), "[", backend(), "] ", op, ": the tensor is on ",
             device_name(t.device()), ", this communicator works on ", device_name(device()),
             " tensors");
  DINO_CHECK(!reduce || t.dtype() == DType::f32 || t.dtype() == DType::f64, "[", backend(), "] ",
             op, ": reductions take f32 or f64 tensors, got ", dtype_name(t.dtype()));
}

}  // namespace dino::dist
