#pragma once
// Emulated CUDA runtime for host builds (tests/simt/README.md): the device-code surface our
// kernels use (qualifiers, built-in indices, vector types, intrinsics), the runtime API calls
// the backend makes (host memory, synchronous copies, always-complete events and streams),
// and the launch that replaces `kernel<<<grid, block, shared, stream>>>(args)` in the
// translation units tests/simt/emulate_cu.py generates from kernels/cuda/*.cu.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include "tests/simt/simt.h"

// ---- device code -----------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Blocks run one after another on one OS thread, so a function-local static is the block's
// shared variable.
#define __shared__ static
#define threadIdx (::dino::simt::thread_idx())
#define blockIdx (::dino::simt::block_idx())
#define blockDim (::dino::simt::block_dim())
#define gridDim (::dino::simt::grid_dim())

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(8) float2 {
  float x, y;
};  // CUDA's vector types are aligned to their size
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) uint2 {
  uint32_t x, y;
};
struct alignas(16) uint4 {
  uint32_t x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(uint32_t x, uint32_t y) { return {x, y}; }
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }

inline void __syncthreads() { ::dino::simt::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::dino::simt::sync_warp(); }
// Fibers switch only at barriers and collectives: everything in between is atomic already.
inline void __threadfence() {}
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);
double __shfl_xor_sync(unsigned mask, double v, int lane_mask);
template <class T>
T atomicAdd(T* address, T v) {
  const T old = *address;
  *address = old + v;
  return old;
}
template <class T>
T __ldcg(const T* p) {
  return *p;
}
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
using std::isfinite;
inline float __expf(float x) { return std::exp(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }

// ---- runtime API -----------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorNotReady = 600,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnjoined = 904,
  cudaErrorCapturedEvent = 907,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 };

struct CUstream_st;
struct CUevent_st;
struct CUmemPoolHandle_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
typedef CUmemPoolHandle_st* cudaMemPool_t;
// A captured graph and its instance: the work the stream recorded, as host closures.
struct CUgraph_st;
struct CUgraphExec_st;
struct CUgraphNode_st;
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;
typedef CUgraphNode_st* cudaGraphNode_t;
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};

constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0;

struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount, l2CacheSize;
  size_t sharedMemPerBlockOptin, totalGlobalMem;
};

const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value);
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t min_bytes_to_keep);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
// Events hold the host time of their record: every call has finished by then.
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop);
// Stream capture as the runtime defines it, for one stream at a time: between begin and end the
// stream's kernels, copies, memsets and GEMMs are recorded, not run; a launch of the instance
// runs them in order. On a capturing stream a synchronisation, a stream-ordered allocation or
// free, and a copy from or to pageable host memory fail and invalidate the capture (the device
// refuses the first two; the last would be baked into the graph, or wait).
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* count);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

namespace dino::simt {
// The order in which the host queued work on the streams. Every call completes before it
// returns here, so a test of stream ordering checks this order instead: which stream each copy
// and kernel went to, which events were recorded after them and which streams waited on those
// events before their next work. Off (and empty) until a test turns it on.
struct StreamOp {
  // sync_stream: the host waits for a stream (cudaStreamSynchronize)
  enum Kind { copy, kernel, record, wait, sync_event, sync_stream } kind;
  cudaStream_t stream = nullptr;                 // copy, kernel, record, wait, sync_stream
  cudaEvent_t event = nullptr;                   // record, wait, sync_event
  cudaMemcpyKind direction = cudaMemcpyDefault;  // copy
  const void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
};
void set_stream_log(bool on);  // clears the log either way
std::vector<StreamOp> stream_log();
void log_stream_op(const StreamOp& op);
// Whether [p, p + bytes) lies inside one block from cudaHostAlloc not yet freed.
bool is_pinned(const void* p, size_t bytes);

// Checks a launch as the runtime would (block size, grid limits, dynamic shared memory within
// the device's per-block maximum); a bad one becomes the sticky last error and does not run.
// Not checked: the per-kernel opt-in above 48 KiB (the launch does not know which kernel
// template instance it calls).
bool accept_launch(dim3 grid, dim3 block, size_t shared_bytes);
// The closures of the graph `stream` is capturing, or nullptr when it is not capturing.
std::vector<std::function<void()>>* capture_of(cudaStream_t stream);

// For the CUPTI stand-in (include/cupti.h, cupti_emu.cpp): a piece of device work alive for
// as long as it runs (when it runs: a captured one at each launch of its graph). While CUPTI
// tracing of its kind is on, it reports its host-clock interval as an activity record. `name`
// must outlive the trace (a string literal).
enum class Activity { kernel, memcpy, memset };
class TracedWork {
 public:
  TracedWork(Activity kind, const char* name, size_t bytes = 0,
             cudaMemcpyKind direction = cudaMemcpyDefault);
  TracedWork(const char* kernel, const Dim3& grid, const Dim3& block);  // a launch
  ~TracedWork();
  TracedWork(const TracedWork&) = delete;
  TracedWork& operator=(const TracedWork&) = delete;

 private:
  Activity kind_;
  const char* name_;
  size_t bytes_;
  cudaMemcpyKind direction_;
  Dim3 grid_{0, 0, 0}, block_{0, 0, 0};
  bool on_ = false;
  uint64_t start_ns_ = 0;
};

// `kernel<<<grid, block, shared, stream>>>(args...)` becomes
// `Launch(grid, block, shared, stream).run("kernel", [=] { kernel(args...); })`: every
// emulated thread makes the call, converting the arguments to the kernel's parameters as a
// launch does; the first argument, the launch's text, names it in a trace.
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t shared = 0, cudaStream_t stream = nullptr)
      : grid_(grid), block_(block), shared_(shared), stream_(stream) {}
  template <class Body>
  void run(const char* name, const Body& body) const {
    if (!accept_launch(grid_, block_, shared_)) return;
    StreamOp op;
    op.kind = StreamOp::kernel;
    op.stream = stream_;
    log_stream_op(op);
    const Dim3 grid{grid_.x, grid_.y, grid_.z}, block{block_.x, block_.y, block_.z};
    const size_t shared = shared_;
    auto traced = [=] {
      TracedWork work(name, grid, block);
      launch(grid, block, shared, body);
    };
    if (auto* graph = capture_of(stream_))  // the body holds copies of the arguments
      graph->push_back(traced);
    else
      traced();
  }
  template <class Body>
  void run(const Body& body) const {
    run("kernel", body);
  }

 private:
  dim3 grid_, block_;
  size_t shared_;
  cudaStream_t stream_;
};

}  // namespace dino::simt

template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel*, cudaFuncAttribute, int value) {
  return value >= 0 && value <= 227 * 1024 ? cudaSuccess : cudaErrorInvalidValue;
}
template <class Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel*, int, size_t) {
  *blocks = 2;
  return cudaSuccess;
}
template <class T>
cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t stream) {
  return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, stream);
}
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <class T>
cudaError_t cudaHostAlloc(T** p, size_t bytes, unsigned flags) {
  return cudaHostAlloc(reinterpret_cast<void**>(p), bytes, flags);
}

// CUDA's device-side min and max, for any pair of arithmetic types.
template <class A, class B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <class A, class B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
