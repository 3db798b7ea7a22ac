// The CPU backend's memory: 64-byte aligned host blocks (vector loads, no false sharing); its
// streams, events and pinned memory, which run everything as it is called; and the table itself
// (cpu_backend()).
#include "kernels/cpu/backend.h"

#include <chrono>
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

namespace {

// A CPU event: the time of its last record (an event never recorded holds the epoch).
struct CpuEvent {
  std::chrono::steady_clock::time_point recorded;
};

CpuEvent* cpu_event(DeviceEvent* e) { return reinterpret_cast<CpuEvent*>(e); }

}  // namespace

// Pinned memory is ordinary host memory here: nothing pages it out under a copy that is
// already done.
void* CpuBackend::alloc_pinned(size_t bytes) const {
  if (bytes == 0) return nullptr;
  void* p = std::aligned_alloc(64, host_block_bytes(bytes));
  if (!p) throw std::bad_alloc();
  return p;
}

void CpuBackend::free_pinned(void* p) const { std::free(p); }

DeviceEvent* CpuBackend::event_create(bool) const {
  return reinterpret_cast<DeviceEvent*>(new CpuEvent);
}

void CpuBackend::event_destroy(DeviceEvent* event) const { delete cpu_event(event); }

void CpuBackend::event_record(DeviceEvent* event, Queue) const {
  cpu_event(event)->recorded = std::chrono::steady_clock::now();
}

double CpuBackend::elapsed_ms(DeviceEvent* start, DeviceEvent* end) const {
  return std::chrono::duration<double, std::milli>(cpu_event(end)->recorded -
                                                   cpu_event(start)->recorded)
      .count();
}

void CpuBackend::copy_to_device_async(void* dst, const void* pinned_src, size_t bytes,
                                      Queue) const {
  if (bytes) std::memcpy(dst, pinned_src, bytes);
}

void CpuBackend::copy_to_host_async(void* pinned_dst, const void* src, size_t bytes, Queue) const {
  if (bytes) std::memcpy(pinned_dst, src, bytes);
}

void CpuBackend::no_graphs() {
  throw Error(
      "[graph] the cpu backend records no graphs: it runs each op as it is called "
      "(run.cuda_graph is for --device cuda)");
}

void CpuBackend::select_device(int index) const {
  DINO_CHECK(index == 0, "[select_device] the cpu backend has one device (0), asked for ", index);
}

// The CPU renders a batch's views in its loader threads (data.augment=cpu), beside the step,
// from the same view parameters (data/multicrop.h apply_view, the reference).
void CpuBackend::augment_views(const Tensor&, const uint8_t*, const data::AugmentSource*,
                               const data::ViewParams*, int64_t, int64_t, int64_t, int64_t,
                               const float*, const float*) const {
  throw Error(
      "[augment_views] the cpu backend renders no views: the CPU renders them in the loader "
      "(data.augment=cpu)");
}

}  // namespace kernels::cpu

const Backend& cpu_backend() {
  static const kernels::cpu::CpuBackend* b = new kernels::cpu::CpuBackend;  // never destroyed
  return *b;
}

}  // namespace dino
