#include "core/storage.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

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

namespace {

// Freed host blocks of at least kMinBytes, kept by (64-byte rounded) size for the next
// allocation of that size. A training step allocates the same sizes every step; handed back
// to the kernel, every large activation and gradient was page-faulted and zeroed afresh each
// step, which cost about a sixth of a CPU training step. At most kMaxCachedBytes are kept;
// blocks beyond that go back to the C library.
class HostBlockCache {
 public:
  void* take(size_t bytes) {
    if (bytes >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }

  void give(void* p, size_t bytes) {
    if (bytes >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_bytes_ + bytes <= kMaxCachedBytes) {
        free_[bytes].push_back(p);
        cached_bytes_ += bytes;
        return;
      }
    }
    std::free(p);
  }

 private:
  static constexpr size_t kMinBytes = size_t(64) << 10;
  static constexpr size_t kMaxCachedBytes = size_t(2) << 30;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

// Never destroyed: tensors held by static objects may be freed after it would be.
HostBlockCache& host_cache() {
  static HostBlockCache* cache = new HostBlockCache;
  return *cache;
}

size_t host_block_bytes(size_t n) { return (n == 0 ? 64 : n + 63) / 64 * 64; }

}  // namespace

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) {
  if (dev == Device::cpu) {
    data = host_cache().take(host_block_bytes(n));
    return;
  }
  require_cuda("alloc");
#ifdef DINO_HAS_CUDA
  data = kernels::cuda::alloc(n == 0 ? 64 : n);
#endif
}

Storage::~Storage() {
  if (device == Device::cpu) {
    host_cache().give(data, host_block_bytes(nbytes));
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
