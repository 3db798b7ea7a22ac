// The runtime API of the emulated CUDA headers (tests/simt/include/cuda_runtime.h): one
// "device" whose memory is host memory, a stream on which every call completes before it
// returns, and the launch checks the runtime makes.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

struct CUevent_st {
  std::chrono::steady_clock::time_point recorded;
  // Last recorded in a capture: on `stream`, after `work` of that stream's recorded work.
  std::atomic<bool> captured{false};
  cudaStream_t stream = nullptr;
  int work = 0;
};

namespace {

cudaError_t g_last_error = cudaSuccess;

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

constexpr size_t kOptinShared = 227 * 1024;  // an H100's per-block maximum

// Non-null handles for the stream and the pool.
template <class T>
T* handle() {
  static char h;
  return reinterpret_cast<T*>(&h);
}

std::mutex g_log_mutex;
bool g_log_on = false;
std::vector<dino::simt::StreamOp> g_log;
std::map<const char*, size_t> g_pinned;  // cudaHostAlloc blocks: start -> bytes

// The capture in progress (stream capture, one graph at a time): the stream it began on, what
// it recorded, and the streams that joined it by waiting on an event recorded in it. The host
// order of the recorded work is one order its dependencies allow (every call here completes
// before the next), so a launch replays it in that order. A joined stream counts the work
// recorded on it since the capturing stream last waited for all of it: the capture cannot end
// while any is left (the device's "unjoined" error).
cudaStream_t g_capturing = nullptr;
std::vector<std::function<void()>>* g_capture = nullptr;
bool g_capture_invalid = false;
std::map<cudaStream_t, int> g_joined;  // joined stream -> work not yet waited for

bool in_capture(cudaStream_t stream) {
  return g_capture && stream && (stream == g_capturing || g_joined.count(stream));
}

// A call the device refuses on a capturing stream: it invalidates the capture.
cudaError_t refuse_in_capture(cudaStream_t stream) {
  if (!g_capture || (stream && !in_capture(stream))) return cudaSuccess;
  g_capture_invalid = true;
  return record(cudaErrorStreamCaptureUnsupported);
}

void log_op(dino::simt::StreamOp::Kind kind, cudaStream_t stream, cudaEvent_t event) {
  dino::simt::StreamOp op;
  op.kind = kind;
  op.stream = stream;
  op.event = event;
  dino::simt::log_stream_op(op);
}

}  // namespace

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnjoined: return "cudaErrorStreamCaptureUnjoined";
    case cudaErrorCapturedEvent: return "cudaErrorCapturedEvent";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInsufficientDriver: return "driver version is insufficient";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnjoined:
      return "capture sequence contains a fork that was not joined to the primary stream";
    case cudaErrorCapturedEvent:
      return "operation not permitted on an event last recorded in a capturing stream";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return record(device == 0 ? cudaSuccess : cudaErrorInvalidValue);
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return record(cudaErrorInvalidValue);
  *prop = cudaDeviceProp{};
  std::strcpy(prop->name, "simt host emulator");
  prop->major = 9;
  prop->minor = 0;
  // Few SMs: launchers that size grids by the SM count then make few blocks, which keeps the
  // emulation fast and still runs their grid-stride loops more than once.
  prop->multiProcessorCount = 2;
  prop->l2CacheSize = 50 << 20;
  prop->sharedMemPerBlockOptin = kOptinShared;
  prop->totalGlobalMem = size_t(16) << 30;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp prop;
  if (attr != cudaDevAttrMultiProcessorCount ||
      cudaGetDeviceProperties(&prop, device) != cudaSuccess)
    return record(cudaErrorInvalidValue);
  *value = prop.multiProcessorCount;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  // Distinct handles, so the stream log tells the streams apart; never destroyed (as the
  // context's streams are not).
  *stream = reinterpret_cast<cudaStream_t>(new char);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (const cudaError_t e = refuse_in_capture(stream)) return e;
  log_op(dino::simt::StreamOp::sync_stream, stream, nullptr);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
// Every call has completed when it returns, so every event has been reached already. An event
// recorded in the capture brings the waiting stream into it, or, waited on by the capturing
// stream, joins back the work recorded on its stream up to the record; outside the capture
// it is refused, as the device refuses it.
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (event->captured) {
    if (!g_capture) return record(cudaErrorCapturedEvent);
    if (stream == g_capturing) {
      auto joined = g_joined.find(event->stream);
      if (joined != g_joined.end() && joined->second == event->work) joined->second = 0;
    } else if (!in_capture(stream)) {
      g_joined[stream] = 0;
    }
  }
  log_op(dino::simt::StreamOp::wait, stream, event);
  return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int) {
  *pool = handle<CUmemPoolHandle_st>();
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
// Freed blocks go back to the host at once here: nothing is cached to trim.
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return cudaSuccess; }

cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t stream) {
  if (const cudaError_t e = refuse_in_capture(stream)) return e;
  // 256-byte aligned like the device allocator, but exactly `bytes` long: on the device a small
  // overrun lands in the pool's next allocation unnoticed; here AddressSanitizer sees it.
  if (posix_memalign(p, 256, bytes ? bytes : 1) != 0) *p = nullptr;
  return record(*p ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream) {
  if (const cudaError_t e = refuse_in_capture(stream)) return e;
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  const cudaError_t e = cudaMallocAsync(p, bytes, nullptr);
  if (e == cudaSuccess) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_pinned[static_cast<const char*>(*p)] = bytes;
  }
  return e;
}
cudaError_t cudaFreeHost(void* p) {
  {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_pinned.erase(static_cast<const char*>(p));
  }
  return cudaFreeAsync(p, nullptr);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (auto* graph = dino::simt::capture_of(stream)) {
    // A host side outside pinned memory would be read (or written) when captured, not when
    // the graph runs: refused, as the device refuses pageable copies in a capture.
    const bool host_src = kind == cudaMemcpyHostToDevice, host_dst = kind == cudaMemcpyDeviceToHost;
    if ((host_src && !dino::simt::is_pinned(src, bytes)) ||
        (host_dst && !dino::simt::is_pinned(dst, bytes)) || kind == cudaMemcpyDefault)
      return refuse_in_capture(stream);
    graph->push_back([=] {
      const dino::simt::TracedWork work(dino::simt::Activity::memcpy, "memcpy", bytes, kind);
      if (bytes && !dino::simt::host_only()) std::memmove(dst, src, bytes);
    });
  } else {
    const dino::simt::TracedWork work(dino::simt::Activity::memcpy, "memcpy", bytes, kind);
    if (bytes && !(dino::simt::host_only() && kind == cudaMemcpyDeviceToDevice))
      std::memmove(dst, src, bytes);
  }
  dino::simt::StreamOp op;
  op.kind = dino::simt::StreamOp::copy;
  op.stream = stream;
  op.direction = kind;
  op.dst = dst;
  op.src = src;
  op.bytes = bytes;
  dino::simt::log_stream_op(op);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  auto run = [=] {
    const dino::simt::TracedWork work(dino::simt::Activity::memset, "memset", bytes);
    if (bytes && !dino::simt::host_only()) std::memset(p, value, bytes);
  };
  if (auto* graph = dino::simt::capture_of(stream))
    graph->push_back(run);
  else
    run();
  return cudaSuccess;
}
// Not a stream operation: allowed during a (relaxed) capture, as on the device.
cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (posix_memalign(p, 256, bytes ? bytes : 1) != 0) *p = nullptr;
  return record(*p ? cudaSuccess : cudaErrorMemoryAllocation);
}
// cudaFree synchronises the device, which a capture in progress does not allow.
cudaError_t cudaFree(void* p) {
  if (g_capture) {
    g_capture_invalid = true;
    return record(cudaErrorStreamCaptureUnsupported);
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = *total_bytes = size_t(16) << 30;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st{};
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  return cudaEventCreate(event);
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  event->recorded = std::chrono::steady_clock::now();
  event->stream = stream;
  event->work = in_capture(stream) && g_joined.count(stream) ? g_joined[stream] : 0;
  event->captured = in_capture(stream);
  log_op(dino::simt::StreamOp::record, stream, event);
  return cudaSuccess;
}
// The host may not ask about an event recorded in a capture: it stands for no work yet.
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return event->captured ? record(cudaErrorCapturedEvent) : cudaSuccess;
}
struct CUgraph_st {
  std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> work;
};
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (g_capture || !stream) return record(cudaErrorInvalidValue);  // one capture at a time
  g_capturing = stream;
  g_capture = new std::vector<std::function<void()>>();
  g_capture_invalid = false;
  g_joined.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!g_capture || stream != g_capturing) return record(cudaErrorInvalidValue);
  std::unique_ptr<std::vector<std::function<void()>>> work(g_capture);
  g_capture = nullptr;
  g_capturing = nullptr;
  bool unjoined = false;
  for (const auto& [joined, left] : g_joined) unjoined |= left > 0;
  g_joined.clear();
  *graph = nullptr;
  if (g_capture_invalid) return record(cudaErrorStreamCaptureInvalidated);
  if (unjoined) return record(cudaErrorStreamCaptureUnjoined);
  *graph = new CUgraph_st{std::move(*work)};
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  *status = !in_capture(stream) ? cudaStreamCaptureStatusNone
            : g_capture_invalid ? cudaStreamCaptureStatusInvalidated
                                : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* count) {
  if (!graph || nodes) return record(cudaErrorInvalidValue);  // counting only
  *count = graph->work.size();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!graph) return record(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->work};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec || g_capture) return record(cudaErrorInvalidValue);
  log_op(dino::simt::StreamOp::kernel, stream, nullptr);  // the graph as one unit of work
  for (const auto& w : exec->work) w();
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event->captured) return record(cudaErrorCapturedEvent);
  log_op(dino::simt::StreamOp::sync_event, nullptr, event);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  *ms = std::chrono::duration<float, std::milli>(stop->recorded - start->recorded).count();
  return cudaSuccess;
}

namespace dino::simt {

void set_stream_log(bool on) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_log_on = on;
  g_log.clear();
}

std::vector<StreamOp> stream_log() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  return g_log;
}

void log_stream_op(const StreamOp& op) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_on) g_log.push_back(op);
}

bool is_pinned(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  const char* c = static_cast<const char*>(p);
  auto it = g_pinned.upper_bound(c);
  if (it == g_pinned.begin()) return false;
  --it;
  return c + bytes <= it->first + it->second;
}

std::vector<std::function<void()>>* capture_of(cudaStream_t stream) {
  if (!in_capture(stream)) return nullptr;
  if (stream != g_capturing) ++g_joined[stream];  // work the capturing stream must wait for
  return g_capture;
}

bool accept_launch(dim3 grid, dim3 block, size_t shared_bytes) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  const bool ok = grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u &&
                  grid.y <= 65535 && grid.z <= 65535 && threads >= 1 && threads <= 1024 &&
                  block.z <= 64 && shared_bytes <= kOptinShared;
  if (!ok) record(cudaErrorInvalidConfiguration);
  return ok;
}

}  // namespace dino::simt
