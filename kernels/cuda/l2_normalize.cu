// Row-wise L2 normalisation as F.normalize does it, f32 or bf16 data, fp32 math:
//   forward:  n = ||x||, out = x / max(n, eps), norm = n (fp32, unclamped, for the backward)
//   backward: n > eps: dx = (dout - x * (dout·x) / n²) / n;  else dx = dout / eps
// (kernels/cpu/l2_normalize.cpp is the reference.) In the DINO head it normalises the 256-wide
// bottleneck rows before the weight-normalised last layer.
//
// Shape: one block per row, blockDim = C rounded up to a warp, at most 512 threads; a second
// read of the row hits L1. Block reductions combine warps in order (deterministic).
// Bytes (minimum, per element, s = dtype size): forward 2s, backward 3s; ~3 FLOPs per element:
// memory-bound.
#include <cuda_bf16.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kMaxThreads = 512;

// The block's sum of v, in every thread, in a fixed order. scratch: 32 floats of shared memory.
__device__ float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < int(blockDim.x / 32); ++w) r += scratch[w];
  return r;
}

int threads_for(int C) {
  const int t = (C + 31) / 32 * 32;
  return t < kMaxThreads ? t : kMaxThreads;
}

}  // namespace

// kernels

// grid (N), block threads_for(C). out (N, C), norm (N) <- x (N, C)
template <class T>
__global__ void l2_normalize_forward_kernel(T* out, float* norm, const T* x, int C, float eps) {
  __shared__ float scratch[32];
  const int64_t off = int64_t(blockIdx.x) * C;
  const T* xr = x + off;
  float sq = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_float(xr[c]);
    sq += v * v;
  }
  const float n = sqrtf(block_sum(sq, scratch));
  const float inv = 1.f / fmaxf(n, eps);
  T* outr = out + off;
  for (int c = threadIdx.x; c < C; c += blockDim.x) outr[c] = from_float<T>(to_float(xr[c]) * inv);
  if (threadIdx.x == 0) norm[blockIdx.x] = n;
}

// grid (N), block threads_for(C). dx (N, C) <- dout (N, C), x (N, C), norm (N)
template <class T>
__global__ void l2_normalize_backward_kernel(T* dx, const T* dout, const T* x, const float* norm,
                                             int C, float eps) {
  __shared__ float scratch[32];
  const int64_t off = int64_t(blockIdx.x) * C;
  const T* xr = x + off;
  const T* dr = dout + off;
  T* dxr = dx + off;
  const float n = norm[blockIdx.x];
  if (n > eps) {  // uniform across the block: every thread takes the same branch
    float dot = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += to_float(dr[c]) * to_float(xr[c]);
    const float k = block_sum(dot, scratch) / (n * n);
    const float inv = 1.f / n;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
      dxr[c] = from_float<T>((to_float(dr[c]) - to_float(xr[c]) * k) * inv);
  } else {
    const float inv = 1.f / eps;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dxr[c] = from_float<T>(to_float(dr[c]) * inv);
  }
}

// launchers

namespace {

// out (N, C), norm (N) (the unclamped norm) <- x (N, C)
template <class T>
void launch_forward(T* out, float* norm, const T* x, int64_t N, int C, double eps,
                    cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  DINO_CHECK(N < (int64_t(1) << 31), "[l2_normalize] ", N, " rows exceed the grid");
  l2_normalize_forward_kernel<T>
      <<<unsigned(N), threads_for(C), 0, stream>>>(out, norm, x, C, float(eps));
  CUDA_CHECK(cudaGetLastError());
}

// dx (N, C) <- dout (N, C), x (N, C), norm (N)
template <class T>
void launch_backward(T* dx, const T* dout, const T* x, const float* norm, int64_t N, int C,
                     double eps, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  DINO_CHECK(N < (int64_t(1) << 31), "[l2_normalize] ", N, " rows exceed the grid");
  l2_normalize_backward_kernel<T>
      <<<unsigned(N), threads_for(C), 0, stream>>>(dx, dout, x, norm, C, float(eps));
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void CudaBackend::l2_normalize(const Tensor& out, const Tensor& norm, const Tensor& x,
                               double eps) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns("l2_normalize", x);
  with_rows(x, [&](auto* px) {
    launch_forward(same_type(out, px), f32_ptr(norm), px, N, C, eps, op_stream());
  });
}

void CudaBackend::l2_normalize_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                        const Tensor& norm, double eps) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns("l2_normalize", x);
  with_rows(x, [&](auto* px) {
    launch_backward(same_type(dx, px), same_type(dout, px), px, f32_ptr(norm), N, C, eps,
                    op_stream());
  });
}

}  // namespace dino::kernels::cuda
