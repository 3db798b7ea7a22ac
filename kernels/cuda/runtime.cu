// The CUDA runtime layer: device discovery, the per-device context (stream, memory pool,
// cuBLASLt handle), stream-ordered memory, copies and element-wise dtype conversions.
//
// Memory: cudaMallocAsync from the device's default pool with its release threshold raised
// to UINT64_MAX, so freed blocks stay in the pool and a steady-state training step never
// calls the driver (ARCHITECTURE §2). Uploads stage through pinned blocks the context keeps
// (copy_h2d), so they wait for neither the stream nor the transfer. Conversions are memory-bound
// grid-stride loops: f32 -> bf16 moves 6 bytes per element, bf16 -> f32 6 bytes, fill 4 bytes; no
// arithmetic to speak of.
#include <cuda_bf16.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

// kernels

__global__ void convert_f32_to_bf16_kernel(__nv_bfloat16* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void convert_bf16_to_f32_kernel(float* dst, const __nv_bfloat16* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}

__global__ void fill_f32_kernel(float* dst, float value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

// launchers

namespace {

Context* create_context(int device) {
  auto ctx = std::make_unique<Context>();
  ctx->device = device;
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  ctx->name = prop.name;
  ctx->cc_major = prop.major;
  ctx->cc_minor = prop.minor;
  ctx->sm_count = prop.multiProcessorCount;
  ctx->l2_bytes = prop.l2CacheSize;
  ctx->smem_per_block_optin = prop.sharedMemPerBlockOptin;
  ctx->total_global_mem = prop.totalGlobalMem;
  CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->copy_stream, cudaStreamNonBlocking));
  cudaMemPool_t pool;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t threshold = UINT64_MAX;
  CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  return ctx.release();
}

int grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  const int64_t cap = int64_t(context().sm_count) * 16;
  return int(blocks < cap ? (blocks > 0 ? blocks : 1) : cap);
}

}  // namespace

cublasLtHandle_t Context::lt() {
  std::lock_guard<std::mutex> lock(lt_mutex_);
  if (!lt_) {
    CUDA_CHECK(cudaSetDevice(device));
    CUBLAS_CHECK(cublasLtCreate(&lt_));
    CUDA_CHECK(cudaMallocAsync(&lt_workspace_, kLtWorkspaceBytes, stream));
  }
  return lt_;
}

Context& context() {
  static std::mutex mutex;
  static std::vector<Context*> contexts;  // one per device, never freed (see context.h)
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  if (contexts.empty()) {
    int count = 0;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    contexts.assign(size_t(count), nullptr);
  }
  DINO_CHECK(device >= 0 && size_t(device) < contexts.size(), "[cuda] current device ", device,
             " is out of range (", contexts.size(), " devices)");
  if (!contexts[size_t(device)]) contexts[size_t(device)] = create_context(device);
  return *contexts[size_t(device)];
}

bool available() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it, so the next cudaGetLastError does not report it
    return false;
  }
  return count > 0;
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

void set_device(int index) { CUDA_CHECK(cudaSetDevice(index)); }

std::string device_description() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return str_cat("no CUDA device (", cudaGetErrorName(err), ": ", cudaGetErrorString(err), ")");
  }
  if (count == 0) return "no CUDA device (cudaGetDeviceCount reports 0 devices)";
  const Context& ctx = context();
  const double gib = double(ctx.total_global_mem) / double(size_t(1) << 30);
  return str_cat(ctx.name, " (sm_", ctx.cc_major, ctx.cc_minor, ", ", ctx.sm_count, " SMs, ",
                 int64_t(std::lround(gib)), " GB)");
}

namespace {
std::atomic<bool> poison_allocations{false};
}  // namespace

void set_poison_allocations(bool on) { poison_allocations = on; }

void* alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  const cudaStream_t s = context().stream;
  void* p = arena_alloc(bytes);
  if (!p) CUDA_CHECK(cudaMallocAsync(&p, bytes, s));
  if (poison_allocations) CUDA_CHECK(cudaMemsetAsync(p, 0xFF, bytes, s));
  return p;
}

void free(void* p) {
  if (p && !arena_free(p)) CUDA_CHECK(cudaFreeAsync(p, context().stream));
}

void* scratch_alloc(size_t bytes, void* stream) {
  if (bytes == 0) return nullptr;
  void* p = arena_alloc(bytes);
  if (!p) CUDA_CHECK(cudaMallocAsync(&p, bytes, static_cast<cudaStream_t>(stream)));
  return p;
}

void scratch_free(void* p, void* stream) {
  if (p && !arena_free(p)) CUDA_CHECK(cudaFreeAsync(p, static_cast<cudaStream_t>(stream)));
}

namespace {

// A pinned block of at least `bytes` whose last copy has completed, or nullptr when the pool
// is at its cap and every block that fits is busy. Blocks are powers of two (at least 64 KiB),
// so the steps' repeating upload sizes find their blocks again and allocate nothing.
Context::StagingBlock* free_staging_block(Context& ctx, size_t bytes) {
  Context::StagingBlock* best = nullptr;
  size_t pinned = 0;
  for (Context::StagingBlock& b : ctx.staging) {
    pinned += b.bytes;
    if (b.bytes < bytes || (best && best->bytes <= b.bytes)) continue;
    const cudaError_t done = cudaEventQuery(b.copied);
    if (done == cudaErrorNotReady) continue;
    CUDA_CHECK(done);
    best = &b;
  }
  if (best) return best;
  size_t size = size_t(64) << 10;
  while (size < bytes) size *= 2;
  if (pinned + size > Context::kMaxStagingBytes) return nullptr;
  Context::StagingBlock b;
  b.bytes = size;
  CUDA_CHECK(cudaHostAlloc(&b.host, size, cudaHostAllocDefault));
  CUDA_CHECK(cudaEventCreateWithFlags(&b.copied, cudaEventDisableTiming));
  ctx.staging.push_back(b);
  return &ctx.staging.back();
}

}  // namespace

// Through pinned staging: the bytes are copied into a pinned block, whose DMA is queued on the
// stream, so the call neither waits for the kernels queued before it (a pageable copy may
// synchronise the stream) nor for the transfer, and `src` is free again on return. The next
// step's crops thus upload while this step's backward still runs.
void copy_h2d(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  DINO_CHECK(!capturing(), "[cuda graph] an upload of ", bytes,
             " bytes inside a captured step: "
             "the graph would replay this step's data; write per-step values before the launch");
  Context& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.staging_mutex);
  Context::StagingBlock* b = free_staging_block(ctx, bytes);
  if (!b) {  // past the cap: the plain copy, waited for
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    return;
  }
  std::memcpy(b->host, src, bytes);
  CUDA_CHECK(cudaMemcpyAsync(dst, b->host, bytes, cudaMemcpyHostToDevice, ctx.stream));
  CUDA_CHECK(cudaEventRecord(b->copied, ctx.stream));
}

void copy_d2h(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  DINO_CHECK(!capturing(), "[cuda graph] a read-back of ", bytes,
             " bytes inside a captured step: read results after the launch");
  const cudaStream_t s = context().stream;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_d2d(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, context().stream));
}

void synchronize() {
  DINO_CHECK(!capturing(), "[cuda graph] a synchronisation inside a captured step");
  CUDA_CHECK(cudaStreamSynchronize(context().stream));
}

void* stream() { return static_cast<void*>(context().stream); }

void* copy_stream() { return static_cast<void*>(context().copy_stream); }

void* alloc_pinned(size_t bytes) {
  if (bytes == 0) return nullptr;
  context();  // the device's primary context exists before the driver pins anything
  void* p = nullptr;
  CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  return p;
}

void free_pinned(void* p) {
  if (p) CUDA_CHECK(cudaFreeHost(p));
}

void* event_create(bool timing) {
  context();
  cudaEvent_t e = nullptr;
  if (timing)
    CUDA_CHECK(cudaEventCreate(&e));
  else
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return static_cast<void*>(e);
}

void event_destroy(void* event) {
  if (event) CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

void event_record(void* event, void* stream) {
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
}

void stream_wait_event(void* stream, void* event) {
  CUDA_CHECK(
      cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0));
}

void event_synchronize(void* event) {
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

double event_elapsed_ms(void* start, void* end) {
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  float ms = 0;
  CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

void copy_h2d_async(void* dst, const void* pinned_src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, pinned_src, bytes, cudaMemcpyHostToDevice,
                             static_cast<cudaStream_t>(stream)));
}

void copy_d2h_async(void* pinned_dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(pinned_dst, src, bytes, cudaMemcpyDeviceToHost,
                             static_cast<cudaStream_t>(stream)));
}

void convert_f32_to_bf16(void* dst, const void* src, int64_t n) {
  if (n <= 0) return;
  convert_f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, context().stream>>>(
      static_cast<__nv_bfloat16*>(dst), static_cast<const float*>(src), n);
  CUDA_CHECK(cudaGetLastError());
}

void convert_bf16_to_f32(void* dst, const void* src, int64_t n) {
  if (n <= 0) return;
  convert_bf16_to_f32_kernel<<<grid_for(n, 256), 256, 0, context().stream>>>(
      static_cast<float*>(dst), static_cast<const __nv_bfloat16*>(src), n);
  CUDA_CHECK(cudaGetLastError());
}

void fill_f32(void* dst, float value, int64_t n) {
  if (n <= 0) return;
  fill_f32_kernel<<<grid_for(n, 256), 256, 0, context().stream>>>(static_cast<float*>(dst), value,
                                                                  n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace dino::kernels::cuda
