// The core ops' elementwise maps on the GPU (core/ops_elementwise.cpp): add, sub, mul, div
// with numpy broadcasting and mixed f32/bf16 operands, the unary maps (scale, add_scalar, exp,
// log, sqrt, exact-erf GELU) forward and backward, and a bf16 fill for Tensor::fill.
//
// Shape: grid-stride loops, one element per thread per iteration, 64-bit indices. The
// broadcast kernel walks the OUTPUT index space row-major; the host collapses the shapes first
// (size-1 dims dropped, adjacent dims merged where both operands stay contiguous across them),
// so same-shape operands reach the kernel as one dim and skip the index arithmetic; only a
// real broadcast pays for the div/mod per dim. Operands are f32 or bf16 independently (a
// runtime flag, uniform across the grid, picks the instantiation); all math is f32 and the
// result is rounded once to the output's dtype, as PyTorch's bf16 autocast does.
//
// Bytes (minimum, per output element): binary reads a and b (2..4 B each, less under
// broadcast: the broadcast operand stays in L1/L2) and writes out (2..4 B); unary reads x and
// writes out; unary backward reads dout and x and writes dx. A few FLOPs per element (GELU:
// one erff, its backward one erff and one expf): memory-bound everywhere.
#include <cuda_bf16.h>

#include <algorithm>
#include <array>

#include "kernels/broadcast.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the device, at least one.
int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(context().sm_count) * 16;
  return int(std::max<int64_t>(1, std::min(blocks, cap)));
}

}  // namespace

// kernels

template <class To, class Ta, class Tb>
__global__ void broadcast_binary_kernel(To* out, const Ta* a, const Tb* b, BroadcastGeom g,
                                        int64_t n, BinaryOp op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t ia = 0, ib = 0;
    if (g.nd == 1) {
      ia = i * g.stride_a[0];
      ib = i * g.stride_b[0];
    } else {
      int64_t rem = i;
#pragma unroll
      for (int d = 4; d >= 0; --d) {  // innermost dim first
        if (d < g.nd) {
          const int64_t idx = rem % g.size[d];
          rem /= g.size[d];
          ia += idx * g.stride_a[d];
          ib += idx * g.stride_b[d];
        }
      }
    }
    const float x = load_f(a, ia), y = load_f(b, ib);
    float r;
    switch (op) {
      case BinaryOp::add: r = x + y; break;
      case BinaryOp::sub: r = x - y; break;
      case BinaryOp::mul: r = x * y; break;
      default: r = x / y; break;
    }
    store_f(out, i, r);
  }
}

template <class T>
__global__ void unary_forward_kernel(T* out, const T* x, int64_t n, UnaryOp op, float s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = load_f(x, i);
    float r;
    switch (op) {
      case UnaryOp::scale: r = s * v; break;
      case UnaryOp::add_scalar: r = v + s; break;
      case UnaryOp::exp: r = expf(v); break;
      case UnaryOp::log: r = logf(v); break;
      case UnaryOp::sqrt: r = sqrtf(v); break;
      default: r = gelu_f(v); break;
    }
    store_f(out, i, r);
  }
}

// The derivative is formed from x (not from the rounded output), so a bf16 result is rounded
// once.
template <class T>
__global__ void unary_backward_kernel(T* dx, const T* dout, const T* x, int64_t n, UnaryOp op,
                                      float s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = load_f(dout, i);
    float r;
    switch (op) {
      case UnaryOp::scale: r = g * s; break;
      case UnaryOp::add_scalar: r = g; break;
      case UnaryOp::exp: r = g * expf(load_f(x, i)); break;
      case UnaryOp::log: r = g / load_f(x, i); break;
      case UnaryOp::sqrt: r = 0.5f * g / sqrtf(load_f(x, i)); break;
      default: r = g * gelu_grad_f(load_f(x, i)); break;
    }
    store_f(dx, i, r);
  }
}

__global__ void fill_bf16_kernel(__nv_bfloat16* dst, __nv_bfloat16 value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

// launchers

namespace {

template <class To, class Ta, class Tb>
void launch_binary(void* out, const void* a, const void* b, const BroadcastGeom& g, int64_t n,
                   BinaryOp op, cudaStream_t stream) {
  broadcast_binary_kernel<To, Ta, Tb><<<grid_for(n), kThreads, 0, stream>>>(
      static_cast<To*>(out), static_cast<const Ta*>(a), static_cast<const Tb*>(b), g, n, op);
  CUDA_CHECK(cudaGetLastError());
}

template <class To, class Ta>
void launch_binary_b(void* out, const void* a, const void* b, bool b_bf16, const BroadcastGeom& g,
                     int64_t n, BinaryOp op, cudaStream_t stream) {
  if (b_bf16)
    launch_binary<To, Ta, __nv_bfloat16>(out, a, b, g, n, op, stream);
  else
    launch_binary<To, Ta, float>(out, a, b, g, n, op, stream);
}

template <class To>
void launch_binary_ab(void* out, const void* a, bool a_bf16, const void* b, bool b_bf16,
                      const BroadcastGeom& g, int64_t n, BinaryOp op, cudaStream_t stream) {
  if (a_bf16)
    launch_binary_b<To, __nv_bfloat16>(out, a, b, b_bf16, g, n, op, stream);
  else
    launch_binary_b<To, float>(out, a, b, b_bf16, g, n, op, stream);
}

}  // namespace

void broadcast_binary(void* out, bool out_bf16, const void* a, bool a_bf16, const void* b,
                      bool b_bf16, const BroadcastGeom& geom, BinaryOp op, cudaStream_t stream) {
  int64_t n = 1;
  for (int d = 0; d < geom.nd; ++d) n *= geom.size[d];
  if (n <= 0) return;
  if (out_bf16)
    launch_binary_ab<__nv_bfloat16>(out, a, a_bf16, b, b_bf16, geom, n, op, stream);
  else
    launch_binary_ab<float>(out, a, a_bf16, b, b_bf16, geom, n, op, stream);
}

void unary_forward(void* out, const void* x, bool bf16, int64_t n, UnaryOp op, float s,
                   cudaStream_t stream) {
  if (n <= 0) return;
  if (bf16)
    unary_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(x), n, op, s);
  else
    unary_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<float*>(out), static_cast<const float*>(x), n, op, s);
  CUDA_CHECK(cudaGetLastError());
}

void unary_backward(void* dx, const void* dout, const void* x, bool bf16, int64_t n, UnaryOp op,
                    float s, cudaStream_t stream) {
  if (n <= 0) return;
  if (bf16)
    unary_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<__nv_bfloat16*>(dx), static_cast<const __nv_bfloat16*>(dout),
        static_cast<const __nv_bfloat16*>(x), n, op, s);
  else
    unary_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<float*>(dx), static_cast<const float*>(dout), static_cast<const float*>(x), n,
        op, s);
  CUDA_CHECK(cudaGetLastError());
}

void fill_bf16(__nv_bfloat16* dst, float value, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  fill_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(dst, __float2bfloat16_rn(value), n);
  CUDA_CHECK(cudaGetLastError());
}

namespace {

// The broadcast's output index space with size-1 dims dropped and adjacent dims merged where
// both operands stay contiguous across them (same shapes collapse to one dim).
BroadcastGeom broadcast_geom(const Shape& sa, const Shape& sb, const Shape& so) {
  const auto st_a = broadcast_strides(sa, so), st_b = broadcast_strides(sb, so);
  BroadcastGeom g;
  int nd = 0;
  for (size_t d = 0; d < so.size(); ++d) {
    if (so[d] == 1) continue;
    if (nd > 0 && g.stride_a[nd - 1] == st_a[d] * so[d] && g.stride_b[nd - 1] == st_b[d] * so[d]) {
      g.size[nd - 1] *= so[d];
      g.stride_a[nd - 1] = st_a[d];
      g.stride_b[nd - 1] = st_b[d];
    } else {
      g.size[nd] = so[d];
      g.stride_a[nd] = st_a[d];
      g.stride_b[nd] = st_b[d];
      ++nd;
    }
  }
  if (nd == 0) {  // one element
    g.size[0] = 1;
    g.stride_a[0] = g.stride_b[0] = 0;
    nd = 1;
  }
  g.nd = nd;
  return g;
}

}  // namespace

void CudaBackend::binary(const Tensor& out, BinaryOp op, const Tensor& a, const Tensor& b) const {
  broadcast_binary(out.raw_data(), is_bf16(out), a.raw_data(), is_bf16(a), b.raw_data(), is_bf16(b),
                   broadcast_geom(a.shape(), b.shape(), out.shape()), op, op_stream());
}

void CudaBackend::unary(const Tensor& out, UnaryOp op, const Tensor& x, double s) const {
  unary_forward(out.raw_data(), x.raw_data(), is_bf16(x), x.numel(), op, float(s), op_stream());
}

void CudaBackend::unary_backward(const Tensor& dx, UnaryOp op, const Tensor& dout, const Tensor& x,
                                 const Tensor&, double s) const {
  // The derivative reads x (not y), except for scale and add_scalar, which read neither.
  cuda::unary_backward(dx.raw_data(), dout.raw_data(), x.raw_data(), is_bf16(dx), dout.numel(), op,
                       float(s), op_stream());
}

}  // namespace dino::kernels::cuda
