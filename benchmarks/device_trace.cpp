// trace_device_activity on CUPTI's activity API (benchmarks/step_profile.h). CUPTI hands
// records back in buffers it requests from us and returns, possibly from its own thread, when
// they fill or when flushed; they are parsed as they come back. Without CUPTI at configure time
// (DINO_HAS_CUPTI unset) the function says so.
#include "benchmarks/step_profile.h"
#include "core/error.h"

#ifdef DINO_HAS_CUPTI
#include <cupti.h>
#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#endif

namespace dino::bench {

#ifdef DINO_HAS_CUPTI

namespace {

void cupti_check(CUptiResult r, const char* call) {
  if (r == CUPTI_SUCCESS) return;
  const char* text = nullptr;
  if (cuptiGetResultString(r, &text) != CUPTI_SUCCESS || !text) text = "unknown error";
  throw Error(str_cat("[profile] ", call, " failed: ", text, " (CUPTI error ", int(r), ")"));
}
#define CUPTI_CHECK(call) cupti_check((call), #call)

constexpr size_t kBufferBytes = size_t(8) << 20;
constexpr size_t kRecordAlignment = 8;

// Where the buffer callbacks put what they parse (they are plain functions: CUPTI passes no
// user pointer).
std::mutex sink_mutex;
std::vector<DeviceActivity>* sink = nullptr;

std::string demangle(const char* name) {
  if (!name) return "(unnamed kernel)";
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(name, nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

const char* copy_kind(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "memcpy DtoD";
    default: return "memcpy (other)";
  }
}

DeviceActivity parse(const CUpti_Activity* record) {
  DeviceActivity a;
  switch (record->kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
    case CUPTI_ACTIVITY_KIND_KERNEL: {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
      a.kind = DeviceActivity::Kind::kernel;
      a.name = demangle(k->name);
      a.start_ns = k->start, a.end_ns = k->end;
      a.registers = k->registersPerThread;
      a.grid[0] = k->gridX, a.grid[1] = k->gridY, a.grid[2] = k->gridZ;
      a.block[0] = k->blockX, a.block[1] = k->blockY, a.block[2] = k->blockZ;
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      a.kind = DeviceActivity::Kind::memcpy;
      a.name = copy_kind(m->copyKind);
      a.start_ns = m->start, a.end_ns = m->end, a.bytes = m->bytes;
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
      a.kind = DeviceActivity::Kind::memset;
      a.name = "memset";
      a.start_ns = m->start, a.end_ns = m->end, a.bytes = m->bytes;
      break;
    }
    default: a.name.clear();  // a kind not asked for: dropped by the caller
  }
  return a;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kRecordAlignment, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  std::vector<DeviceActivity> parsed;
  CUpti_Activity* record = nullptr;
  while (valid > 0 && cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    DeviceActivity a = parse(record);
    if (!a.name.empty()) parsed.push_back(std::move(a));
  }
  std::free(buffer);
  std::lock_guard<std::mutex> lock(sink_mutex);
  if (sink) sink->insert(sink->end(), parsed.begin(), parsed.end());
}

constexpr CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
                                         CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET};

// Tracing on from construction to stop(); the destructor stops it without checks when `run`
// threw, so a failed run leaves CUPTI off and the sink let go.
class Tracing {
 public:
  explicit Tracing(std::vector<DeviceActivity>* out) {
    static const bool registered = [] {
      CUPTI_CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
      return true;
    }();
    (void)registered;
    {
      std::lock_guard<std::mutex> lock(sink_mutex);
      sink = out;
    }
    for (CUpti_ActivityKind kind : kKinds) {
      CUPTI_CHECK(cuptiActivityEnable(kind));
      ++enabled_;
    }
  }
  void stop() {
    for (; enabled_ > 0; --enabled_) CUPTI_CHECK(cuptiActivityDisable(kKinds[enabled_ - 1]));
    CUPTI_CHECK(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    release();
  }
  ~Tracing() {
    if (!released_) {
      for (; enabled_ > 0; --enabled_) cuptiActivityDisable(kKinds[enabled_ - 1]);
      cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
      release();
    }
  }
  Tracing(const Tracing&) = delete;
  Tracing& operator=(const Tracing&) = delete;

 private:
  void release() {
    std::lock_guard<std::mutex> lock(sink_mutex);
    sink = nullptr;
    released_ = true;
  }
  int enabled_ = 0;
  bool released_ = false;
};

}  // namespace

std::vector<DeviceActivity> trace_device_activity(const std::function<void()>& run) {
  std::vector<DeviceActivity> out;
  Tracing tracing(&out);
  run();
  tracing.stop();
  size_t dropped = 0;
  CUPTI_CHECK(cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped));
  DINO_CHECK(dropped == 0, "[profile] CUPTI dropped ", dropped,
             " activity records (its buffers filled): the trace is incomplete");
  return out;
}

#else

std::vector<DeviceActivity> trace_device_activity(const std::function<void()>&) {
  throw Error(
      "[profile] this build has no CUPTI (libcupti and cupti.h were not found when it was "
      "configured): --profile needs them");
}

#endif

}  // namespace dino::bench
