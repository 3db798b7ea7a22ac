#include "core/storage.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

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
#ifdef DINO_HAS_CUDA
  return kernels::cuda::available();
#else
  return false;
#endif
}

static void require_cuda(const char* what) {
#ifdef DINO_HAS_CUDA
  DINO_CHECK(kernels::cuda::available(), "[", what, "] no usable CUDA device: ",
             kernels::cuda::device_description());
#else
  throw Error(str_cat("[", what, "] this build has no CUDA support (configure with DINO_CUDA=ON)"));
#endif
}

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) {
  const size_t bytes = n == 0 ? 64 : n;
  if (dev == Device::cpu) {
    data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!data) throw std::bad_alloc();
    return;
  }
  require_cuda("alloc");
#ifdef DINO_HAS_CUDA
  data = kernels::cuda::alloc(bytes);
#endif
}

Storage::~Storage() {
  if (device == Device::cpu) {
    std::free(data);
    return;
  }
#ifdef DINO_HAS_CUDA
  kernels::cuda::free(data);
#endif
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t n) {
  if (n == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memcpy(dst, src, n);
    return;
  }
  require_cuda("copy");
#ifdef DINO_HAS_CUDA
  if (dst_device == Device::cuda && src_device == Device::cpu)
    kernels::cuda::copy_h2d(dst, src, n);
  else if (dst_device == Device::cpu)
    kernels::cuda::copy_d2h(dst, src, n);
  else
    kernels::cuda::copy_d2d(dst, src, n);
#endif
}

}  // namespace dino
