#include "core/backend.h"

namespace dino {

const Backend& backend(Device device, const char* op, bool need_device) {
  if (device == Device::cpu) return cpu_backend();
  const Backend* b = cuda_backend();
  DINO_CHECK(b, "[", op,
             "] this build has no CUDA support (configure with -DDINO_CUDA=ON on a "
             "machine with the CUDA toolkit)");
  DINO_CHECK(!need_device || b->available(), "[", op,
             "] no usable CUDA device: ", b->description());
  return *b;
}

}  // namespace dino
