// Bicubic resize of a channels-last (H, W, C) fp32 grid: DINO's position-embedding
// interpolation, F.interpolate(mode="bicubic", align_corners=False, scale_factor=...).
// The arithmetic is kernels/cpu/resize.cpp's: output index d samples the source coordinate
// src = (d + 0.5) / scale - 0.5 (the scale factor, not out/in, drives the sampling), the four
// taps floor(src) - 1 .. floor(src) + 2 are clamped to [0, in - 1] (src itself is not
// clamped), their weights are the cubic convolution coefficients (A = -0.75) of src's
// fractional part, computed in double, rounded to float and added into the clamped column.
//
// Shape: as on the CPU, the resize is separable and each axis is a small dense matrix,
// Wy (Ho, Hi) and Wx (Wo, Wi), built on the device (one thread per matrix row, taps added in
// tap order). Forward: rows = Wy · in (Ho, Wi·C), then out[oy] = Wx · rows[oy] (Wo, C).
// Backward, the exact adjoint with the same matrices: rows[oy] = Wxᵀ · dout[oy] (Wi, C), then
// din = Wyᵀ · rows (Hi, Wi·C). Every output element is one thread summing over the matrix's
// inner index in order: deterministic, no atomics. Grids are position-embedding sized
// (14x14x384 for ViT-S/16), so the dense matrices cost nothing.
//
// Bytes (minimum): read in, write out; plus the (Ho, Wi, C) intermediate once each way.
// FLOPs: 2·(Ho·Hi·Wi + Ho·Wo·Wi)·C forward, the same backward.
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr double kA = -0.75;

// PyTorch's cubic_convolution1 (|x| <= 1) and cubic_convolution2 (1 < |x| < 2).
__device__ __forceinline__ double cubic_near(double x) {
  return ((kA + 2) * x - (kA + 3)) * x * x + 1;
}
__device__ __forceinline__ double cubic_far(double x) {
  return ((kA * x - 5 * kA) * x + 8 * kA) * x - 4 * kA;
}

}  // namespace

// kernels

// w (out, in): row d holds output d's four tap weights, added into their clamped columns.
__global__ void bicubic_weights_kernel(float* w, int in, int out, double ratio) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= out) return;
  float* row = w + int64_t(d) * in;
  for (int i = 0; i < in; ++i) row[i] = 0.f;
  const double src = ratio * (double(d) + 0.5) - 0.5;
  const double base = floor(src);
  const double t = src - base;
  const double coeff[4] = {cubic_far(t + 1), cubic_near(t), cubic_near(1 - t), cubic_far(2 - t)};
  for (int j = 0; j < 4; ++j) {
    int64_t idx = int64_t(base) - 1 + j;
    idx = idx < 0 ? 0 : (idx > in - 1 ? in - 1 : idx);
    row[idx] += float(coeff[j]);
  }
}

// out (P, O, M) <- A, in (P, I, M): out[p, o, m] = Σ_i A(o, i) · in[p, i, m], i in order.
// A(o, i) = a[o * I + i] (a stored (O, I)) or, when trans, a[i * O + o] (a stored (I, O)).
__global__ void bicubic_apply_kernel(float* out, const float* a, const float* in, int P, int O,
                                     int I, int64_t M, bool trans) {
  const int64_t total = int64_t(P) * O * M;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = e % M;
    const int64_t po = e / M;
    const int o = int(po % O);
    const int64_t p = po / O;
    const float* src = in + p * I * M + m;
    float acc = 0.f;
    for (int i = 0; i < I; ++i) {
      const float w = trans ? a[int64_t(i) * O + o] : a[int64_t(o) * I + i];
      acc += w * src[int64_t(i) * M];
    }
    out[e] = acc;
  }
}

// launchers

namespace {

void weights(float* w, int in, int out, double scale, cudaStream_t stream) {
  bicubic_weights_kernel<<<(out + kThreads - 1) / kThreads, kThreads, 0, stream>>>(w, in, out,
                                                                                   1.0 / scale);
  CUDA_CHECK(cudaGetLastError());
}

void apply(float* out, const float* a, const float* in, int P, int O, int I, int64_t M, bool trans,
           cudaStream_t stream) {
  const int64_t total = int64_t(P) * O * M;
  if (total <= 0) return;
  const int64_t want = (total + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(8) * context().sm_count;
  bicubic_apply_kernel<<<int(want < cap ? want : cap), kThreads, 0, stream>>>(out, a, in, P, O, I,
                                                                              M, trans);
  CUDA_CHECK(cudaGetLastError());
}

// Scratch for Wy (Ho, Hi), Wx (Wo, Wi) and the (Ho, Wi, C) intermediate, one allocation,
// stream-ordered from the pool; the caller frees base.
struct Scratch {
  float *base, *wy, *wx, *rows;
};
Scratch alloc_scratch(int Hi, int Wi, int Ho, int Wo, int C, cudaStream_t stream) {
  const size_t ny = size_t(Ho) * Hi, nx = size_t(Wo) * Wi, nr = size_t(Ho) * Wi * C;
  Scratch s{};
  s.base = static_cast<float*>(scratch_alloc((ny + nx + nr) * sizeof(float), stream));
  s.wy = s.base;
  s.wx = s.base + ny;
  s.rows = s.base + ny + nx;
  return s;
}

}  // namespace

void bicubic_resize_forward(float* out, const float* in, int Hi, int Wi, int Ho, int Wo, int C,
                            double scale_h, double scale_w, cudaStream_t stream) {
  if (Hi <= 0 || Wi <= 0 || Ho <= 0 || Wo <= 0 || C <= 0) return;
  const Scratch s = alloc_scratch(Hi, Wi, Ho, Wo, C, stream);
  weights(s.wy, Hi, Ho, scale_h, stream);
  weights(s.wx, Wi, Wo, scale_w, stream);
  // rows (1, Ho, Wi*C) = Wy (Ho, Hi) · in (1, Hi, Wi*C)
  apply(s.rows, s.wy, in, 1, Ho, Hi, int64_t(Wi) * C, false, stream);
  // out (Ho, Wo, C) = per oy: Wx (Wo, Wi) · rows (Ho, Wi, C)
  apply(out, s.wx, s.rows, Ho, Wo, Wi, C, false, stream);
  scratch_free(s.base, stream);
}

void bicubic_resize_backward(float* din, const float* dout, int Hi, int Wi, int Ho, int Wo, int C,
                             double scale_h, double scale_w, cudaStream_t stream) {
  if (Hi <= 0 || Wi <= 0 || Ho <= 0 || Wo <= 0 || C <= 0) return;
  const Scratch s = alloc_scratch(Hi, Wi, Ho, Wo, C, stream);
  weights(s.wy, Hi, Ho, scale_h, stream);
  weights(s.wx, Wi, Wo, scale_w, stream);
  // rows (Ho, Wi, C) = per oy: Wx^T (Wi, Wo) · dout (Ho, Wo, C)
  apply(s.rows, s.wx, dout, Ho, Wi, Wo, C, true, stream);
  // din (1, Hi, Wi*C) = Wy^T (Hi, Ho) · rows (1, Ho, Wi*C)
  apply(din, s.wy, s.rows, 1, Hi, Ho, int64_t(Wi) * C, true, stream);
  scratch_free(s.base, stream);
}

void CudaBackend::resize_bicubic(const Tensor& out, const Tensor& grid, double scale_h,
                                 double scale_w) const {
  bicubic_resize_forward(
      f32_ptr(out), f32_ptr(grid), as_int("resize_bicubic", grid.size(0), "rows"),
      as_int("resize_bicubic", grid.size(1), "columns"),
      as_int("resize_bicubic", out.size(0), "output rows"),
      as_int("resize_bicubic", out.size(1), "output columns"),
      as_int("resize_bicubic", grid.size(2), "channels"), scale_h, scale_w, op_stream());
}

void CudaBackend::resize_bicubic_backward(const Tensor& dgrid, const Tensor& dout, double scale_h,
                                          double scale_w) const {
  bicubic_resize_backward(f32_ptr(dgrid), f32_ptr(dout), int(dgrid.size(0)), int(dgrid.size(1)),
                          int(dout.size(0)), int(dout.size(1)), int(dgrid.size(2)), scale_h,
                          scale_w, op_stream());
}

}  // namespace dino::kernels::cuda
