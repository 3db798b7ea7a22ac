// The per-step parameter updates over ALL parameters, one launch each: AdamW (with the bf16
// copies the GEMMs read), the teacher's EMA (with its bf16 copies) and per-parameter gradient
// L2 norms (for DINO's per-parameter clipping). A ViT-S/16 DINO model has ~150 parameter
// tensors, from 1 to ~17M elements; one launch per tensor would be ~150 launches of mostly
// tiny kernels, so each launch walks a device array of per-tensor descriptors instead.
//
// Work split (multi-tensor, no host-built chunk table): the tensors are cut into chunks of
// kChunk elements and chunk c of the concatenation goes to block c % gridDim.x, so every block
// gets an even share however the sizes fall. Each block reads all descriptors (a few KB, from
// L2) and visits only its own chunks. Within a chunk a thread handles 4 consecutive elements:
// 16-byte loads when all of the tensor's pointers are 16-byte aligned (bf16 copy 8-byte) and the
// chunk is full, scalar loads otherwise, so packed parameter buffers at any offset work.
//
// Arithmetic: AdamW is core/optim.cpp's, which is torch.optim.AdamW's single-tensor step done
// in double and rounded to float where it stores (w, m, v). Here too: double intermediates in
// the source's operation order, with _rn intrinsics so nvcc cannot contract a*b+c into an FMA.
// The CPU build may contract (g++ does in C++ with FMA hardware) and its pow may differ from
// CUDA's in the last bit; both change the double intermediates far below float resolution, so
// the stored floats agree with the CPU's but for a rare last-ulp difference. Double costs
// nothing here: the kernel is memory-bound on Hopper (~60 FP64 operations per 30 bytes).
// The EMA is float arithmetic, as in models/multicrop.cpp, also with _rn intrinsics.
//
// Bytes (minimum = actual): AdamW reads w, g, m, v and writes w, m, v (+ 2 bytes of bf16):
// 28-30 bytes per element; EMA reads teacher, student, writes teacher (+ bf16): 12-14; norms
// read the gradient once: 4, plus 4 bytes per (tensor, block) of partial sums.
//
// Norms: each block sums the squares of its chunks of each tensor in float (a fixed order per
// thread, then a fixed tree), writes one partial per (tensor, block) (0 where it owns none), and
// the last block to finish (an atomic counter) adds each tensor's partials in block order in
// double. Same inputs, same device: bit-identical norms, with no second launch.
//
// Clipping (scale_by_norms) follows grad_norms without a trip to the host: each block reads the
// norms (a few hundred bytes) and scales only the tensors that need it, in double as
// core/optim.cpp does: coef = max_norm / (norm + 1e-6), g = float(g * coef) when coef < 1. It
// reads and writes a clipped gradient once (8 bytes per element) and touches no other.
#include <cmath>
#include <vector>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int kChunk = kThreads * kPerThread;

__device__ __forceinline__ int64_t chunks_of(int64_t numel) {
  return (numel + kChunk - 1) / kChunk;
}

// The first chunk this block owns of a tensor whose first chunk is `base` in the concatenation
// (modulo gridDim.x); the block owns none when it is >= the tensor's chunk count.
__device__ __forceinline__ int64_t first_owned_chunk(int64_t base) {
  const int64_t grid = gridDim.x;
  return (int64_t(blockIdx.x) - base + grid) % grid;
}

// The next tensor's base.
__device__ __forceinline__ int64_t next_base(int64_t numel, int64_t base) {
  return (base + chunks_of(numel)) % gridDim.x;
}

// Calls f(begin, end) for each chunk of a tensor of numel elements that this block owns.
template <class F>
__device__ __forceinline__ void for_each_owned_chunk(int64_t numel, int64_t base, F f) {
  for (int64_t c = first_owned_chunk(base); c < chunks_of(numel); c += gridDim.x)
    f(c * kChunk, min(numel, (c + 1) * kChunk));
}

__device__ __forceinline__ bool aligned(const void* p, int bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Four bf16 values, stored with one 8-byte write.
__device__ __forceinline__ void store_bf16x4(__nv_bfloat16* dst, float a, float b, float c,
                                             float d) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
  uint2 packed;
  packed.x = *reinterpret_cast<uint32_t*>(&lo);
  packed.y = *reinterpret_cast<uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(dst) = packed;
}

// One tensor's AdamW constants, as core/optim.cpp computes them per parameter:
// bc = 1 - beta^step, step_size = lr / bc1, decay = 1 - lr * wd.
struct AdamWScalars {
  double decay, step_size, bc2_sqrt;
};

__device__ AdamWScalars adamw_scalars(const AdamWTensor& d, double b1, double b2) {
  const double bc1 = 1.0 - pow(b1, double(d.step)), bc2 = 1.0 - pow(b2, double(d.step));
  return {__dsub_rn(1.0, __dmul_rn(d.lr, d.weight_decay)), __ddiv_rn(d.lr, bc1), __dsqrt_rn(bc2)};
}

// core/optim.cpp's element update, operation for operation (see the top comment).
__device__ __forceinline__ void adamw_element(float& w, float g, float& m, float& v,
                                              const AdamWScalars& s, double b1, double b2,
                                              double eps) {
  const double gd = g;
  const float wd = float(__dmul_rn(double(w), s.decay));
  m = float(__dadd_rn(__dmul_rn(b1, double(m)), __dmul_rn(1.0 - b1, gd)));
  v = float(__dadd_rn(__dmul_rn(b2, double(v)), __dmul_rn(__dmul_rn(1.0 - b2, gd), gd)));
  const double denom = __dadd_rn(__ddiv_rn(__dsqrt_rn(double(v)), s.bc2_sqrt), eps);
  w = float(__dsub_rn(double(wd), __ddiv_rn(__dmul_rn(s.step_size, double(m)), denom)));
}

__device__ __forceinline__ float ema_element(float t, float s, float m, float one_m) {
  return __fadd_rn(__fmul_rn(t, m), __fmul_rn(one_m, s));  // models/multicrop.cpp: t*m + (1-m)*s
}

// Sum over the block, in a fixed tree order; the result is valid in thread 0.
__device__ float block_sum(float x) {
  __shared__ float warp_sums[kThreads / 32];
  x = warp_sum(x);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = x;
  __syncthreads();
  float total = 0.f;
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
  __syncthreads();  // warp_sums may be reused by the next call
  return total;
}

}  // namespace

// kernels

// The scalars' two pows cost more than a chunk's arithmetic, so one thread per block computes
// them, only for tensors the block owns chunks of, and shares them through shared memory
// (double-buffered: one barrier per tensor).
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const AdamWTensor* tensors, int n, double b1, double b2, double eps) {
  __shared__ AdamWScalars shared_scalars[2];
  int parity = 0;
  int64_t base = 0;
  for (int t = 0; t < n; ++t) {
    const AdamWTensor d = tensors[t];
    if (d.skip) continue;  // no gradient this step: nothing read or written, no chunks counted
    if (first_owned_chunk(base) >= chunks_of(d.numel)) {  // uniform over the block
      base = next_base(d.numel, base);
      continue;
    }
    if (threadIdx.x == 0) shared_scalars[parity] = adamw_scalars(d, b1, b2);
    __syncthreads();
    const AdamWScalars s = shared_scalars[parity];
    parity ^= 1;
    const bool vec = aligned(d.param, 16) && aligned(d.grad, 16) && aligned(d.exp_avg, 16) &&
                     aligned(d.exp_avg_sq, 16) && aligned(d.param_bf16, 8);
    for_each_owned_chunk(d.numel, base, [&](int64_t begin, int64_t end) {
      if (vec && end - begin == kChunk) {
        const int64_t i = begin + int64_t(threadIdx.x) * kPerThread;
        float4 w = *reinterpret_cast<const float4*>(d.param + i);
        const float4 g = *reinterpret_cast<const float4*>(d.grad + i);
        float4 m = *reinterpret_cast<const float4*>(d.exp_avg + i);
        float4 v = *reinterpret_cast<const float4*>(d.exp_avg_sq + i);
        adamw_element(w.x, g.x, m.x, v.x, s, b1, b2, eps);
        adamw_element(w.y, g.y, m.y, v.y, s, b1, b2, eps);
        adamw_element(w.z, g.z, m.z, v.z, s, b1, b2, eps);
        adamw_element(w.w, g.w, m.w, v.w, s, b1, b2, eps);
        *reinterpret_cast<float4*>(d.param + i) = w;
        *reinterpret_cast<float4*>(d.exp_avg + i) = m;
        *reinterpret_cast<float4*>(d.exp_avg_sq + i) = v;
        if (d.param_bf16) store_bf16x4(d.param_bf16 + i, w.x, w.y, w.z, w.w);
      } else {
        for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
          float w = d.param[i], m = d.exp_avg[i], v = d.exp_avg_sq[i];
          adamw_element(w, d.grad[i], m, v, s, b1, b2, eps);
          d.param[i] = w, d.exp_avg[i] = m, d.exp_avg_sq[i] = v;
          if (d.param_bf16) d.param_bf16[i] = __float2bfloat16_rn(w);
        }
      }
    });
    base = next_base(d.numel, base);
  }
}

__global__ void __launch_bounds__(kThreads)
    ema_kernel(const EmaTensor* tensors, int n, float m, float one_m) {
  int64_t base = 0;
  for (int t = 0; t < n; ++t) {
    const EmaTensor d = tensors[t];
    const bool vec = aligned(d.teacher, 16) && aligned(d.student, 16) && aligned(d.teacher_bf16, 8);
    for_each_owned_chunk(d.numel, base, [&](int64_t begin, int64_t end) {
      if (vec && end - begin == kChunk) {
        const int64_t i = begin + int64_t(threadIdx.x) * kPerThread;
        float4 a = *reinterpret_cast<const float4*>(d.teacher + i);
        const float4 b = *reinterpret_cast<const float4*>(d.student + i);
        a.x = ema_element(a.x, b.x, m, one_m), a.y = ema_element(a.y, b.y, m, one_m);
        a.z = ema_element(a.z, b.z, m, one_m), a.w = ema_element(a.w, b.w, m, one_m);
        *reinterpret_cast<float4*>(d.teacher + i) = a;
        if (d.teacher_bf16) store_bf16x4(d.teacher_bf16 + i, a.x, a.y, a.z, a.w);
      } else {
        for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
          const float a = ema_element(d.teacher[i], d.student[i], m, one_m);
          d.teacher[i] = a;
          if (d.teacher_bf16) d.teacher_bf16[i] = __float2bfloat16_rn(a);
        }
      }
    });
    base = next_base(d.numel, base);
  }
}

// partial (n, gridDim.x): each block's sum of squares per tensor; counter: zero on entry.
__global__ void __launch_bounds__(kThreads)
    grad_norms_kernel(float* norms, float* partial, unsigned* counter, const TensorSpan* tensors,
                      int n) {
  int64_t base = 0;
  for (int t = 0; t < n; ++t) {
    const TensorSpan d = tensors[t];
    float* out = partial + int64_t(t) * gridDim.x + blockIdx.x;
    if (first_owned_chunk(base) >= chunks_of(d.numel)) {  // uniform: no reduction needed
      if (threadIdx.x == 0) *out = 0.f;
      base = next_base(d.numel, base);
      continue;
    }
    const bool vec = aligned(d.data, 16);
    float sq = 0.f;
    for_each_owned_chunk(d.numel, base, [&](int64_t begin, int64_t end) {
      if (vec && end - begin == kChunk) {
        const float4 g =
            *reinterpret_cast<const float4*>(d.data + begin + int64_t(threadIdx.x) * kPerThread);
        sq += g.x * g.x + g.y * g.y + g.z * g.z + g.w * g.w;
      } else {
        for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) sq += d.data[i] * d.data[i];
      }
    });
    const float total = block_sum(sq);
    if (threadIdx.x == 0) *out = total;
    base = next_base(d.numel, base);
  }

  // The last block to get here sums the partials; the fence publishes this block's partials
  // before its increment.
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  // One warp per tensor: lane l adds blocks l, l + 32, ... in double, then a fixed shuffle tree.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int t = warp; t < n; t += kThreads / 32) {
    const float* p = partial + int64_t(t) * gridDim.x;
    double s = 0;
    for (int b = lane; b < int(gridDim.x); b += 32) s += double(__ldcg(p + b));
#pragma unroll
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) norms[t] = float(sqrt(s));
  }
}

// The norms' clip coefficients: per tensor (DINO's utils.clip_gradients), or one for all tensors
// from the joint norm (torch.nn.utils.clip_grad_norm_), whose sum runs in tensor order in every
// block, so every block gets the same coefficient.
__global__ void __launch_bounds__(kThreads)
    scale_by_norms_kernel(const TensorSpan* tensors, const float* norms, int n, double max_norm,
                          int global) {
  __shared__ double shared_coef;
  if (global) {
    if (threadIdx.x == 0) {
      double total = 0;
      for (int t = 0; t < n; ++t) total += double(norms[t]) * double(norms[t]);
      shared_coef = max_norm / (sqrt(total) + 1e-6);
    }
    __syncthreads();
  }
  const double global_coef = global ? shared_coef : 0.0;
  int64_t base = 0;
  for (int t = 0; t < n; ++t) {
    const TensorSpan d = tensors[t];
    const int64_t this_base = base;
    base = next_base(d.numel, base);
    // The same value in every thread of every block: the branch is uniform.
    const double coef = global ? global_coef : max_norm / (double(norms[t]) + 1e-6);
    if (!(coef < 1.0)) continue;  // as the CPU: no scaling (also for a NaN norm)
    // The gradients were handed in as const for grad_norms; this launch owns them for writing.
    float* g = const_cast<float*>(d.data);
    const bool vec = aligned(g, 16);
    for_each_owned_chunk(d.numel, this_base, [&](int64_t begin, int64_t end) {
      if (vec && end - begin == kChunk) {
        const int64_t i = begin + int64_t(threadIdx.x) * kPerThread;
        float4 x = *reinterpret_cast<const float4*>(g + i);
        x.x = float(__dmul_rn(double(x.x), coef)), x.y = float(__dmul_rn(double(x.y), coef));
        x.z = float(__dmul_rn(double(x.z), coef)), x.w = float(__dmul_rn(double(x.w), coef));
        *reinterpret_cast<float4*>(g + i) = x;
      } else {
        for (int64_t i = begin + threadIdx.x; i < end; i += kThreads)
          g[i] = float(__dmul_rn(double(g[i]), coef));
      }
    });
  }
}

// launchers

namespace {

// As many blocks as fit on the device at once (the kernel's occupancy from its register use):
// every block gets an equal share, so a grid that needed a second wave would take twice as long.
template <class Kernel>
int multi_tensor_grid(Kernel kernel) {
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  return context().sm_count * (per_sm > 0 ? per_sm : 1);
}

}  // namespace

void adamw_step(const AdamWTensor* tensors, int n, double beta1, double beta2, double eps,
                cudaStream_t stream) {
  if (n <= 0) return;
  adamw_kernel<<<multi_tensor_grid(adamw_kernel), kThreads, 0, stream>>>(tensors, n, beta1, beta2,
                                                                         eps);
  CUDA_CHECK(cudaGetLastError());
}

void ema_update(const EmaTensor* tensors, int n, double momentum, cudaStream_t stream) {
  if (n <= 0) return;
  // models/multicrop.cpp rounds both factors to float once, from the double momentum.
  ema_kernel<<<multi_tensor_grid(ema_kernel), kThreads, 0, stream>>>(tensors, n, float(momentum),
                                                                     float(1.0 - momentum));
  CUDA_CHECK(cudaGetLastError());
}

void grad_norms(float* norms, const TensorSpan* tensors, int n, cudaStream_t stream) {
  if (n <= 0) return;
  const int grid = multi_tensor_grid(grad_norms_kernel);
  // One allocation: the partials, then the counter.
  const size_t partial_bytes = size_t(n) * grid * sizeof(float);
  char* scratch = static_cast<char*>(scratch_alloc(partial_bytes + sizeof(unsigned), stream));
  unsigned* counter = reinterpret_cast<unsigned*>(scratch + partial_bytes);
  CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned), stream));
  grad_norms_kernel<<<grid, kThreads, 0, stream>>>(norms, reinterpret_cast<float*>(scratch),
                                                   counter, tensors, n);
  CUDA_CHECK(cudaGetLastError());
  scratch_free(scratch, stream);
}

void scale_by_norms(const TensorSpan* tensors, const float* norms, int n, double max_norm,
                    bool global, cudaStream_t stream) {
  if (n <= 0) return;
  scale_by_norms_kernel<<<multi_tensor_grid(scale_by_norms_kernel), kThreads, 0, stream>>>(
      tensors, norms, n, max_norm, global ? 1 : 0);
  CUDA_CHECK(cudaGetLastError());
}

// ---- the CUDA backend's optimizer steps (core/optim.cpp, models/multicrop.cpp): each one
// launch over every tensor, from a device array of per-tensor descriptors the host builds and
// uploads (freed stream-ordered after the launch that reads it).
namespace {

// The descriptors in device memory, for one launch.
template <class D>
Tensor upload(const std::vector<D>& desc) {
  const size_t bytes = desc.size() * sizeof(D);
  Tensor t = Tensor::empty({int64_t(bytes)}, DType::u8, Device::cuda);
  copy_h2d(t.raw_data(), desc.data(), bytes);
  return t;
}

__nv_bfloat16* bf16_or_null(const Tensor& t) { return t.defined() ? bf16_ptr(t) : nullptr; }

}  // namespace

void CudaBackend::adamw(const std::vector<AdamWUpdate>& updates, double beta1, double beta2,
                        double eps) const {
  std::vector<AdamWTensor> desc;
  for (const AdamWUpdate& u : updates)
    desc.push_back(AdamWTensor{f32_ptr(u.param), f32_ptr(u.grad), f32_ptr(u.exp_avg),
                               f32_ptr(u.exp_avg_sq), bf16_or_null(u.param_bf16), u.param.numel(),
                               u.lr, u.weight_decay, u.step, 0});
  const Tensor d = upload(desc);
  adamw_step(static_cast<const AdamWTensor*>(d.raw_data()), int(desc.size()), beta1, beta2, eps,
             op_stream());
}

void CudaBackend::ema(const std::vector<EmaUpdate>& updates, double momentum) const {
  std::vector<EmaTensor> desc;
  for (const EmaUpdate& u : updates)
    desc.push_back(
        {f32_ptr(u.teacher), f32_ptr(u.student), bf16_or_null(u.teacher_bf16), u.teacher.numel()});
  const Tensor d = upload(desc);
  ema_update(static_cast<const EmaTensor*>(d.raw_data()), int(desc.size()), momentum, op_stream());
}

// The norms (one launch) and the clipping (one launch) on the device; the norms come to the
// host only when asked for (the global norm always: it is the result).
void CudaBackend::clip_grads(std::vector<double>& out, const std::vector<Tensor>& grads,
                             double max_norm, bool global, bool read_norms) const {
  out.clear();
  std::vector<TensorSpan> spans;
  for (const Tensor& g : grads) spans.push_back({f32_ptr(g), g.numel()});
  const Tensor d = upload(spans);
  Tensor norms = Tensor::empty({int64_t(spans.size())}, DType::f32, Device::cuda);
  const auto* dd = static_cast<const TensorSpan*>(d.raw_data());
  grad_norms(f32_ptr(norms), dd, int(spans.size()), op_stream());
  scale_by_norms(dd, f32_ptr(norms), int(spans.size()), max_norm, global, op_stream());
  if (global) {
    // The same sum the kernel forms for its coefficient, from the same float norms.
    double total = 0;
    for (float v : norms.to_vector()) total += double(v) * double(v);
    out.push_back(std::sqrt(total));
  } else if (read_norms) {
    for (float v : norms.to_vector()) out.push_back(v);
  }
}

}  // namespace dino::kernels::cuda
