// The CUPTI stand-in (include/cupti.h): TracedWork records the host-clock interval of each
// piece of emulated device work while its kind is enabled; a flush writes the records into the
// caller's buffers as CUPTI lays them out (one record after another, each 8-byte aligned) and
// completes them through the caller's callback.
#include <cuda_runtime.h>
#include <cupti.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <variant>
#include <vector>

namespace {

using Record = std::variant<CUpti_ActivityKernel10, CUpti_ActivityMemcpy6, CUpti_ActivityMemset4>;

std::mutex g_mutex;
CUpti_BuffersCallbackRequestFunc g_request = nullptr;
CUpti_BuffersCallbackCompleteFunc g_complete = nullptr;
bool g_kernels = false, g_copies = false, g_memsets = false;
std::vector<Record> g_records;

constexpr size_t align8(size_t n) { return (n + 7) / 8 * 8; }

size_t record_size(CUpti_ActivityKind kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
    case CUPTI_ACTIVITY_KIND_KERNEL: return align8(sizeof(CUpti_ActivityKernel10));
    case CUPTI_ACTIVITY_KIND_MEMCPY: return align8(sizeof(CUpti_ActivityMemcpy6));
    case CUPTI_ACTIVITY_KIND_MEMSET: return align8(sizeof(CUpti_ActivityMemset4));
    default: return 0;
  }
}

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

bool* flag_of(CUpti_ActivityKind kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
    case CUPTI_ACTIVITY_KIND_KERNEL: return &g_kernels;
    case CUPTI_ACTIVITY_KIND_MEMCPY: return &g_copies;
    case CUPTI_ACTIVITY_KIND_MEMSET: return &g_memsets;
    default: return nullptr;
  }
}

}  // namespace

namespace dino::simt {

TracedWork::TracedWork(Activity kind, const char* name, size_t bytes, cudaMemcpyKind direction)
    : kind_(kind), name_(name), bytes_(bytes), direction_(direction) {
  std::lock_guard<std::mutex> lock(g_mutex);
  on_ = kind == Activity::kernel ? g_kernels : kind == Activity::memcpy ? g_copies : g_memsets;
  if (on_) start_ns_ = now_ns();
}

TracedWork::TracedWork(const char* kernel, const Dim3& grid, const Dim3& block)
    : TracedWork(Activity::kernel, kernel) {
  grid_ = grid, block_ = block;
}

TracedWork::~TracedWork() {
  if (!on_) return;
  const uint64_t end = now_ns();
  std::lock_guard<std::mutex> lock(g_mutex);
  switch (kind_) {
    case Activity::kernel: {
      CUpti_ActivityKernel10 r{};
      r.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
      r.start = start_ns_, r.end = end, r.name = name_;
      r.gridX = int32_t(grid_.x), r.gridY = int32_t(grid_.y), r.gridZ = int32_t(grid_.z);
      r.blockX = int32_t(block_.x), r.blockY = int32_t(block_.y), r.blockZ = int32_t(block_.z);
      g_records.push_back(r);
      break;
    }
    case Activity::memcpy: {
      CUpti_ActivityMemcpy6 r{};
      r.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
      r.copyKind = direction_ == cudaMemcpyHostToDevice     ? CUPTI_ACTIVITY_MEMCPY_KIND_HTOD
                   : direction_ == cudaMemcpyDeviceToHost   ? CUPTI_ACTIVITY_MEMCPY_KIND_DTOH
                   : direction_ == cudaMemcpyDeviceToDevice ? CUPTI_ACTIVITY_MEMCPY_KIND_DTOD
                                                            : CUPTI_ACTIVITY_MEMCPY_KIND_UNKNOWN;
      r.start = start_ns_, r.end = end, r.bytes = bytes_;
      g_records.push_back(r);
      break;
    }
    case Activity::memset: {
      CUpti_ActivityMemset4 r{};
      r.kind = CUPTI_ACTIVITY_KIND_MEMSET;
      r.start = start_ns_, r.end = end, r.bytes = bytes_;
      g_records.push_back(r);
      break;
    }
  }
}

}  // namespace dino::simt

CUptiResult cuptiGetResultString(CUptiResult result, const char** str) {
  switch (result) {
    case CUPTI_SUCCESS: *str = "CUPTI_SUCCESS"; break;
    case CUPTI_ERROR_INVALID_PARAMETER: *str = "CUPTI_ERROR_INVALID_PARAMETER"; break;
    case CUPTI_ERROR_MAX_LIMIT_REACHED: *str = "CUPTI_ERROR_MAX_LIMIT_REACHED"; break;
    case CUPTI_ERROR_NOT_INITIALIZED: *str = "CUPTI_ERROR_NOT_INITIALIZED"; break;
    case CUPTI_ERROR_UNKNOWN: *str = "CUPTI_ERROR_UNKNOWN"; break;
    default: *str = "CUPTI_ERROR_UNKNOWN";
  }
  return CUPTI_SUCCESS;
}

CUptiResult cuptiActivityRegisterCallbacks(CUpti_BuffersCallbackRequestFunc request,
                                           CUpti_BuffersCallbackCompleteFunc complete) {
  if (!request || !complete) return CUPTI_ERROR_INVALID_PARAMETER;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_request = request;
  g_complete = complete;
  return CUPTI_SUCCESS;
}

static CUptiResult set_kind(CUpti_ActivityKind kind, bool on) {
  std::lock_guard<std::mutex> lock(g_mutex);
  bool* flag = flag_of(kind);
  if (!flag) return CUPTI_ERROR_INVALID_PARAMETER;
  if (on && !g_request) return CUPTI_ERROR_NOT_INITIALIZED;  // CUPTI needs the callbacks first
  // A machine whose CUPTI refuses to trace, for the tests of what --profile does then.
  if (on && std::getenv("DINO_SIMT_CUPTI_REFUSE")) return CUPTI_ERROR_UNKNOWN;
  *flag = on;
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityEnable(CUpti_ActivityKind kind) { return set_kind(kind, true); }
CUptiResult cuptiActivityDisable(CUpti_ActivityKind kind) { return set_kind(kind, false); }

CUptiResult cuptiActivityFlushAll(uint32_t) {
  std::vector<Record> records;
  CUpti_BuffersCallbackRequestFunc request;
  CUpti_BuffersCallbackCompleteFunc complete;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    records.swap(g_records);
    request = g_request;
    complete = g_complete;
  }
  if (!request) return records.empty() ? CUPTI_SUCCESS : CUPTI_ERROR_NOT_INITIALIZED;
  size_t next = 0;
  while (next < records.size()) {
    uint8_t* buffer = nullptr;
    size_t size = 0, max_records = 0;
    request(&buffer, &size, &max_records);
    if (!buffer) return CUPTI_ERROR_INVALID_PARAMETER;
    size_t used = 0, written = 0;
    for (; next < records.size() && (max_records == 0 || written < max_records); ++next) {
      const bool fits = std::visit(
          [&](const auto& r) {
            const size_t n = record_size(r.kind);
            if (used + n > size) return false;
            std::memcpy(buffer + used, &r, sizeof(r));
            used += n;
            return true;
          },
          records[next]);
      if (!fits) break;
      ++written;
    }
    if (written == 0) return CUPTI_ERROR_INVALID_PARAMETER;  // a buffer too small for one record
    complete(nullptr, 0, buffer, size, used);
  }
  return CUPTI_SUCCESS;
}

CUptiResult cuptiActivityGetNextRecord(uint8_t* buffer, size_t valid, CUpti_Activity** record) {
  size_t offset = 0;
  if (*record) {
    offset = size_t(reinterpret_cast<uint8_t*>(*record) - buffer) + record_size((*record)->kind);
  }
  if (offset >= valid) return CUPTI_ERROR_MAX_LIMIT_REACHED;
  *record = reinterpret_cast<CUpti_Activity*>(buffer + offset);
  return CUPTI_SUCCESS;
}

CUptiResult cuptiActivityGetNumDroppedRecords(CUcontext, uint32_t, size_t* dropped) {
  *dropped = 0;
  return CUPTI_SUCCESS;
}
