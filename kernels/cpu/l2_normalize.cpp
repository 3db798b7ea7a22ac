// Row-wise L2 normalisation as F.normalize does it: out = x / max(||x||, eps).
// The squared norm and the backward's dot product are accumulated in double.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/backend.h"

namespace dino::kernels::cpu {

namespace {

// out (N, C), norm (N) (the unclamped L2 norm) <- x (N, C)
template <class T>
void l2_normalize_forward(T* out, T* norm, const T* x, int64_t N, int64_t C, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) sq += double(xr[c]) * double(xr[c]);
    const double nrm = std::sqrt(sq);
    const double inv = 1.0 / std::max(nrm, eps);
    T* outr = out + r * C;
    for (int64_t c = 0; c < C; ++c) outr[c] = T(double(xr[c]) * inv);
    norm[r] = T(nrm);
  }
}

// dx (N, C) <- dout (N, C), x (N, C), norm (N)
// Above eps, with y = x / n: dx = (dout - y * dot(dout, y)) / n. At or below eps the
// divisor is the constant eps, so dx = dout / eps (clamp_min passes no gradient to n).
template <class T>
void l2_normalize_backward(T* dx, const T* dout, const T* x, const T* norm, int64_t N, int64_t C,
                           double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    const T* dr = dout + r * C;
    T* dxr = dx + r * C;
    const double n = norm[r];
    if (n > eps) {
      double dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += double(dr[c]) * double(xr[c]);
      const double k = dot / (n * n);  // dot(dout, y) / n, with y = x / n
      for (int64_t c = 0; c < C; ++c) dxr[c] = T((double(dr[c]) - double(xr[c]) * k) / n);
    } else {
      for (int64_t c = 0; c < C; ++c) dxr[c] = T(double(dr[c]) / eps);
    }
  }
}

}  // namespace

void CpuBackend::l2_normalize(const Tensor& out, const Tensor& norm, const Tensor& x,
                              double eps) const {
  dispatch_float("l2_normalize", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    l2_normalize_forward<T>(out.data<T>(), norm.data<T>(), x.data<T>(), rows_of(x), cols_of(x),
                            eps);
  });
}

void CpuBackend::l2_normalize_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                       const Tensor& norm, double eps) const {
  dispatch_float("l2_normalize", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::l2_normalize_backward<T>(dx.data<T>(), dout.data<T>(), x.data<T>(), norm.data<T>(),
                                  rows_of(x), cols_of(x), eps);
  });
}

}  // namespace dino::kernels::cpu
