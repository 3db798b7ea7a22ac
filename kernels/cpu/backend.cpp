// The CPU backend's memory: 64-byte aligned host blocks (vector loads, no false sharing), and
// the table itself (cpu_backend()).
#include "kernels/cpu/backend.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace dino {

namespace kernels::cpu {

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

void* CpuBackend::alloc(size_t bytes) const { return host_cache().take(host_block_bytes(bytes)); }

void CpuBackend::free(void* p, size_t bytes) const {
  if (p) host_cache().give(p, host_block_bytes(bytes));
}

void CpuBackend::copy(void* dst, Device, const void* src, Device, size_t bytes) const {
  std::memcpy(dst, src, bytes);
}

}  // namespace kernels::cpu

const Backend& cpu_backend() {
  static const kernels::cpu::CpuBackend* b = new kernels::cpu::CpuBackend;  // never destroyed
  return *b;
}

}  // namespace dino
