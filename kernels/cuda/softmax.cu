// Softmax and log-softmax over the last dim (C) of N rows, f32 or bf16 data, fp32 math.
//   forward:  lse = log Σ_c exp(x_c)  (max-shifted);  out = exp(x - lse)  or  out = x - lse
//   backward: y = exp(x - lse);  softmax:     dx = y * (dout - Σ dout·y)
//                                log_softmax: dx = dout - y * Σ dout
// The forward also writes lse (N, fp32) and the backward recomputes y from x and lse instead
// of reading the stored output: for bf16 data that keeps y at fp32 accuracy (a log-softmax
// output rounded to bf16 carries an absolute error of ~0.03 at -8, which exp would turn into
// a 3% error in y), for the same bytes (x instead of out).
//
// Shape: one block per row, blockDim = C rounded up to a warp, at most 512 threads, so short
// rows (197 keys, 33 classes) keep most threads busy and long ones (K = 65536) loop. Each pass
// re-reads the row; after the first read it sits in L1/L2. Block reductions combine the
// warps' partials in warp order: results are bit-identical run to run.
//
// Bytes (minimum, per element, s = dtype size): forward reads x and writes out: 2s; backward
// reads dout and x and writes dx: 3s. FLOPs ~5 per element (one exp each pass that needs it):
// memory-bound.
#include <cuda_bf16.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kMaxThreads = 512;

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Every thread of the block gets op over all threads' v, combined in a fixed order (butterfly
// within each warp, then the warps in order). scratch: 32 floats of shared memory; the leading
// __syncthreads lets consecutive calls reuse it.
template <class Op>
__device__ float block_reduce(float v, float* scratch, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < int(blockDim.x / 32); ++w) r = op(r, scratch[w]);
  return r;
}

int threads_for(int C) {
  const int t = (C + 31) / 32 * 32;
  return t < kMaxThreads ? t : kMaxThreads;
}

}  // namespace

// kernels

// grid (N), block threads_for(C). out (N, C), lse (N) <- x (N, C)
template <class T, bool kLog>
__global__ void softmax_forward_kernel(T* out, float* lse, const T* x, int C) {
  __shared__ float scratch[32];
  const int64_t off = int64_t(blockIdx.x) * C;
  const T* xr = x + off;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, to_float(xr[c]));
  m = block_reduce(m, scratch, MaxOp{});
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += expf(to_float(xr[c]) - m);
  s = block_reduce(s, scratch, SumOp{});
  const float l = m + logf(s);
  T* outr = out + off;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_float(xr[c]) - l;
    outr[c] = from_float<T>(kLog ? v : expf(v));
  }
  if (threadIdx.x == 0) lse[blockIdx.x] = l;
}

// grid (N), block threads_for(C). dx (N, C) <- dout (N, C), x (N, C), lse (N)
template <class T, bool kLog>
__global__ void softmax_backward_kernel(T* dx, const T* dout, const T* x, const float* lse, int C) {
  __shared__ float scratch[32];
  const int64_t off = int64_t(blockIdx.x) * C;
  const T* xr = x + off;
  const T* dr = dout + off;
  const float l = lse[blockIdx.x];
  float s = 0.f;  // softmax: Σ dout·y; log_softmax: Σ dout
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    s += kLog ? to_float(dr[c]) : to_float(dr[c]) * expf(to_float(xr[c]) - l);
  s = block_reduce(s, scratch, SumOp{});
  T* dxr = dx + off;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float y = expf(to_float(xr[c]) - l), d = to_float(dr[c]);
    dxr[c] = from_float<T>(kLog ? d - y * s : y * (d - s));
  }
}

// launchers

namespace {

template <class T, bool kLog>
void launch_forward(T* out, float* lse, const T* x, int64_t N, int C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  DINO_CHECK(N < (int64_t(1) << 31), "[softmax] ", N, " rows exceed the grid");
  softmax_forward_kernel<T, kLog><<<unsigned(N), threads_for(C), 0, stream>>>(out, lse, x, C);
  CUDA_CHECK(cudaGetLastError());
}

template <class T, bool kLog>
void launch_backward(T* dx, const T* dout, const T* x, const float* lse, int64_t N, int C,
                     cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  DINO_CHECK(N < (int64_t(1) << 31), "[softmax] ", N, " rows exceed the grid");
  softmax_backward_kernel<T, kLog><<<unsigned(N), threads_for(C), 0, stream>>>(dx, dout, x, lse, C);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void softmax_forward(float* out, float* lse, const float* x, int64_t N, int C,
                     cudaStream_t stream) {
  launch_forward<float, false>(out, lse, x, N, C, stream);
}
void softmax_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* x, int64_t N, int C,
                     cudaStream_t stream) {
  launch_forward<__nv_bfloat16, false>(out, lse, x, N, C, stream);
}
void log_softmax_forward(float* out, float* lse, const float* x, int64_t N, int C,
                         cudaStream_t stream) {
  launch_forward<float, true>(out, lse, x, N, C, stream);
}
void log_softmax_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* x, int64_t N, int C,
                         cudaStream_t stream) {
  launch_forward<__nv_bfloat16, true>(out, lse, x, N, C, stream);
}
void softmax_backward(float* dx, const float* dout, const float* x, const float* lse, int64_t N,
                      int C, cudaStream_t stream) {
  launch_backward<float, false>(dx, dout, x, lse, N, C, stream);
}
void softmax_backward(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* x,
                      const float* lse, int64_t N, int C, cudaStream_t stream) {
  launch_backward<__nv_bfloat16, false>(dx, dout, x, lse, N, C, stream);
}
void log_softmax_backward(float* dx, const float* dout, const float* x, const float* lse, int64_t N,
                          int C, cudaStream_t stream) {
  launch_backward<float, true>(dx, dout, x, lse, N, C, stream);
}
void log_softmax_backward(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* x,
                          const float* lse, int64_t N, int C, cudaStream_t stream) {
  launch_backward<__nv_bfloat16, true>(dx, dout, x, lse, N, C, stream);
}

void CudaBackend::softmax(const Tensor& out, const Tensor& lse, const Tensor& x,
                          bool log_space) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns(log_space ? "log_softmax" : "softmax", x);
  with_rows(x, [&](auto* px) {
    if (log_space)
      log_softmax_forward(same_type(out, px), f32_ptr(lse), px, N, C, op_stream());
    else
      softmax_forward(same_type(out, px), f32_ptr(lse), px, N, C, op_stream());
  });
}

void CudaBackend::softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                   const Tensor&, const Tensor& lse, bool log_space) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns(log_space ? "log_softmax" : "softmax", x);
  with_rows(x, [&](auto* px) {
    if (log_space)
      log_softmax_backward(same_type(dx, px), same_type(dout, px), px, f32_ptr(lse), N, C,
                           op_stream());
    else
      cuda::softmax_backward(same_type(dx, px), same_type(dout, px), px, f32_ptr(lse), N, C,
                             op_stream());
  });
}

}  // namespace dino::kernels::cuda
