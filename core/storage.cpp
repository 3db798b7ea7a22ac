#include "core/storage.h"

#include <cstring>

#include "core/backend.h"
#include "core/error.h"

namespace dino {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

bool cuda_available() {
  const Backend* b = cuda_backend();
  return b && b->available();
}

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) {
  data = backend(dev, "alloc").alloc(n);
}

Storage::~Storage() { backend(device, "free", false).free(data, nbytes); }

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t n) {
  if (n == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memcpy(dst, src, n);
    return;
  }
  backend(dst_device == Device::cpu ? src_device : dst_device, "copy")
      .copy(dst, dst_device, src, src_device, n);
}

}  // namespace dino
