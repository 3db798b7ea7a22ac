// Bicubic resize of a channels-last (H, W, C) grid, matching PyTorch's
// F.interpolate(mode="bicubic", align_corners=False, scale_factor=...) on the CPU.
//
// PyTorch maps output index d to the source coordinate src = (d + 0.5) / scale - 0.5 (the
// ratio is 1/scale whenever a scale factor is given, not in/out) and, for bicubic only, does
// NOT clamp src at 0: near the border the four taps floor(src)-1 .. floor(src)+2 are clamped
// to [0, in-1] instead, and their weights are the cubic convolution coefficients (A = -0.75)
// of the fractional part. Coordinates are computed in double for both T.
//
// The resize is separable, so it is written as two small matrices: Wy (Ho, Hi) and
// Wx (Wo, Wi), each row holding one output's four weights (clamped taps add up in the same
// column). Then out = Wy * in * Wx^T per channel, and the backward is the exact adjoint,
// din = Wy^T * dout * Wx. Position-embedding grids are tiny, so dense matrices cost nothing
// and make the adjoint obvious. The big row pass goes through gemm (fixed summation order
// whatever the thread count); the small per-row column passes are single-threaded Eigen
// products inside the parallel loop.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr double kA = -0.75;

// The cubic convolution kernel for |x| <= 1 and for 1 < |x| < 2 (PyTorch's
// cubic_convolution1 / cubic_convolution2).
double cubic_near(double x) { return ((kA + 2) * x - (kA + 3)) * x * x + 1; }
double cubic_far(double x) { return ((kA * x - 5 * kA) * x + 8 * kA) * x - 4 * kA; }

// The (out, in) interpolation matrix of one axis.
template <class T>
RowMat<T> interp_matrix(int64_t in, int64_t out, double scale) {
  RowMat<T> w = RowMat<T>::Zero(out, in);
  const double ratio = 1.0 / scale;
  for (int64_t d = 0; d < out; ++d) {
    const double src = ratio * (double(d) + 0.5) - 0.5;
    const double base = std::floor(src);
    const double t = src - base;
    const double coeff[4] = {cubic_far(t + 1), cubic_near(t), cubic_near(1 - t), cubic_far(2 - t)};
    for (int j = 0; j < 4; ++j) {
      const int64_t idx = std::clamp<int64_t>(int64_t(base) - 1 + j, 0, in - 1);
      w(d, idx) += T(coeff[j]);
    }
  }
  return w;
}

// PyTorch's F.interpolate(mode="bicubic", align_corners=False) with an explicit scale factor:
// src = (dst + 0.5) / scale - 0.5, cubic convolution with A = -0.75, taps clamped to the
// border. Passing scale_h = Ho / Hi reproduces the size-based call.
// out (Ho, Wo, C) <- in (Hi, Wi, C)
template <class T>
void bicubic_resize_forward(T* out, const T* in, int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo,
                            int64_t C, double scale_h, double scale_w) {
  const RowMat<T> wy = interp_matrix<T>(Hi, Ho, scale_h);
  const RowMat<T> wx = interp_matrix<T>(Wi, Wo, scale_w);
  // Rows first: (Ho, Wi*C) = Wy (Ho, Hi) * in (Hi, Wi*C).
  RowMat<T> rows(Ho, Wi * C);
  gemm<T>(rows.data(), wy.data(), in, Ho, Wi * C, Hi, false, false, T(1), T(0));
  // Then columns, one output row at a time: (Wo, C) = Wx (Wo, Wi) * rows[oy] (Wi, C).
#pragma omp parallel for schedule(static)
  for (int64_t oy = 0; oy < Ho; ++oy) {
    Eigen::Map<RowMat<T>>(out + oy * Wo * C, Wo, C).noalias() =
        wx * Eigen::Map<const RowMat<T>>(rows.data() + oy * Wi * C, Wi, C);
  }
}

// din (Hi, Wi, C) <- dout (Ho, Wo, C), with the same taps
template <class T>
void bicubic_resize_backward(T* din, const T* dout, int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo,
                             int64_t C, double scale_h, double scale_w) {
  const RowMat<T> wy = interp_matrix<T>(Hi, Ho, scale_h);
  const RowMat<T> wx = interp_matrix<T>(Wi, Wo, scale_w);
  // Adjoint of the column pass: rows[oy] (Wi, C) = Wx^T (Wi, Wo) * dout[oy] (Wo, C).
  RowMat<T> rows(Ho, Wi * C);
#pragma omp parallel for schedule(static)
  for (int64_t oy = 0; oy < Ho; ++oy) {
    Eigen::Map<RowMat<T>>(rows.data() + oy * Wi * C, Wi, C).noalias() =
        wx.transpose() * Eigen::Map<const RowMat<T>>(dout + oy * Wo * C, Wo, C);
  }
  // Adjoint of the row pass: din (Hi, Wi*C) = Wy^T (Hi, Ho) * rows (Ho, Wi*C).
  gemm<T>(din, wy.data(), rows.data(), Hi, Wi * C, Ho, true, false, T(1), T(0));
}

}  // namespace

void CpuBackend::resize_bicubic(const Tensor& out, const Tensor& grid, double scale_h,
                                double scale_w) const {
  dispatch_float("resize_bicubic", grid.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bicubic_resize_forward<T>(out.data<T>(), grid.data<T>(), grid.size(0), grid.size(1),
                              out.size(0), out.size(1), grid.size(2), scale_h, scale_w);
  });
}

void CpuBackend::resize_bicubic_backward(const Tensor& dgrid, const Tensor& dout, double scale_h,
                                         double scale_w) const {
  dispatch_float("resize_bicubic", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bicubic_resize_backward<T>(dgrid.data<T>(), dout.data<T>(), dgrid.size(0), dgrid.size(1),
                               dout.size(0), dout.size(1), dgrid.size(2), scale_h, scale_w);
  });
}

}  // namespace dino::kernels::cpu
