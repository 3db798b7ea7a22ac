#pragma once
// Device-side helpers the element-wise, reduction and row kernels share: f32/bf16 loads and
// stores that do their math in f32 (ARCHITECTURE §3), full-warp reductions and strided indexing.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

__device__ __forceinline__ float load_f(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void store_f(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}

// Exact (erf) GELU and its derivative, shared by the unary maps (elementwise.cu) and
// linear_gelu's backward (linear_gelu.cu), so both give the same bits.
__device__ __forceinline__ float gelu_f(float x) {
  return 0.5f * x * (1.f + erff(x * 0.70710678118654752440f));
}
// d/dx gelu = Phi(x) + x * phi(x)
__device__ __forceinline__ float gelu_grad_f(float x) {
  const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752440f));
  const float pdf = expf(-0.5f * x * x) * 0.39894228040143267794f;
  return cdf + x * pdf;
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Every lane gets the warp's sum / max (butterfly: the same order on every run).
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Σ over p of partial[p * cols + c], c = blockIdx.x * 32 + threadIdx.x % 32, for a block of
// 32 x 32 threads: thread row y = threadIdx.x / 32 adds p = y, y + 32, ... (32 loads in flight
// per column instead of a serial walk), then a fixed tree over y through `tree`. The result is
// valid in threads with threadIdx.x < 32 (and c < cols); every thread must call it. The
// second kernel of the column sums that end in per-block partial rows (LayerNorm's dweight and
// dbias, the bias gradient): deterministic, no atomics.
constexpr int kPartialColumnThreads = 32 * 32;
__device__ __forceinline__ float sum_partial_column(const float* partial, int parts, int64_t cols,
                                                    float (&tree)[32][33]) {
  const int tx = int(threadIdx.x) % 32, ty = int(threadIdx.x) / 32;
  const int64_t c = int64_t(blockIdx.x) * 32 + tx;
  float s = 0.f;
  if (c < cols) {
#pragma unroll 4
    for (int p = ty; p < parts; p += 32) s += partial[int64_t(p) * cols + c];
  }
  __syncthreads();  // `tree` may still be read by a previous call
  tree[ty][tx] = s;
  __syncthreads();
  for (int half = 16; half > 0; half /= 2) {
    if (ty < half) tree[ty][tx] += tree[ty + half][tx];
    __syncthreads();
  }
  return tree[0][tx];
}

// The end of the first pass of those column sums over chunks of rows (the bias gradient,
// linear_gelu's bias gradient): each warp of the block holds, per lane, its rows' sums of
// kColumnsPerLane adjacent columns in acc; the warps are added in order through shared memory
// into row blockIdx.y of partial (chunks, cols), one column per thread. The block is
// 32 * kColumnsPerLane threads, kColumnsPerLane warps.
template <int kColumnsPerLane>
__device__ __forceinline__ void write_column_partials(
    float* partial, const float (&acc)[kColumnsPerLane], int64_t cols,
    float (&warp_sums)[kColumnsPerLane][32 * kColumnsPerLane]) {
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
#pragma unroll
  for (int e = 0; e < kColumnsPerLane; ++e) warp_sums[warp][lane * kColumnsPerLane + e] = acc[e];
  __syncthreads();
  const int64_t c = int64_t(blockIdx.x) * (32 * kColumnsPerLane) + threadIdx.x;
  if (c < cols) {
    float sum = 0.f;
    for (int w = 0; w < kColumnsPerLane; ++w) sum += warp_sums[w][threadIdx.x];
    partial[int64_t(blockIdx.y) * cols + c] = sum;
  }
}

// Element offset of flat index i (row-major over d.size) with d.stride.
__device__ __forceinline__ int64_t offset_of(int64_t i, const StridedDims& d) {
  int64_t off = 0;
#pragma unroll
  for (int k = 4; k >= 0; --k) {
    if (k < d.nd) {
      off += (i % d.size[k]) * d.stride[k];
      i /= d.size[k];
    }
  }
  return off;
}

}  // namespace dino::kernels::cuda
