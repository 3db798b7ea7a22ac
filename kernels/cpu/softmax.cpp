// Softmax and log-softmax over the last dim, one row at a time.
//
// The row max is subtracted before exp so nothing overflows. exp itself runs in T (it is
// elementwise and the costly part), while the row sums that normalise it, and the dot
// products of the backward, are accumulated in double so a wide row (K = 65536) keeps full
// float accuracy. Rows are independent and split across threads.
#include <cmath>

#include "kernels/cpu/backend.h"

namespace dino::kernels::cpu {

namespace {

template <class T>
T row_max(const T* x, int64_t C) {
  T m = x[0];
  for (int64_t c = 1; c < C; ++c) m = x[c] > m ? x[c] : m;
  return m;
}

// out (N, C) <- x (N, C)
template <class T>
void softmax_forward(T* out, const T* x, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    T* outr = out + r * C;
    const T m = row_max(xr, C);
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      outr[c] = std::exp(xr[c] - m);
      sum += outr[c];
    }
    const T inv = T(1.0 / sum);
    for (int64_t c = 0; c < C; ++c) outr[c] *= inv;
  }
}

// dx (N, C) <- dout (N, C), out (N, C): dx = out * (dout - sum(dout * out))
template <class T>
void softmax_backward(T* dx, const T* dout, const T* out, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* dr = dout + r * C;
    const T* yr = out + r * C;
    double dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += double(dr[c]) * double(yr[c]);
    T* dxr = dx + r * C;
    for (int64_t c = 0; c < C; ++c) dxr[c] = T(double(yr[c]) * (double(dr[c]) - dot));
  }
}

// out (N, C) <- x (N, C)
template <class T>
void log_softmax_forward(T* out, const T* x, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    const T m = row_max(xr, C);
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(xr[c] - m);
    const double lse = double(m) + std::log(sum);
    T* outr = out + r * C;
    for (int64_t c = 0; c < C; ++c) outr[c] = T(double(xr[c]) - lse);
  }
}

// dx (N, C) <- dout (N, C), out (N, C) (the log-probabilities): dx = dout - exp(out) * sum(dout)
template <class T>
void log_softmax_backward(T* dx, const T* dout, const T* out, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* dr = dout + r * C;
    const T* yr = out + r * C;
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += dr[c];
    T* dxr = dx + r * C;
    for (int64_t c = 0; c < C; ++c) dxr[c] = T(double(dr[c]) - std::exp(double(yr[c])) * sum);
  }
}

}  // namespace

void CpuBackend::softmax(const Tensor& out, const Tensor&, const Tensor& x, bool log_space) const {
  dispatch_float(log_space ? "log_softmax" : "softmax", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    (log_space ? log_softmax_forward<T> : softmax_forward<T>)(out.data<T>(), x.data<T>(),
                                                              rows_of(x), cols_of(x));
  });
}

void CpuBackend::softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor&,
                                  const Tensor& out, const Tensor&, bool log_space) const {
  dispatch_float(log_space ? "log_softmax" : "softmax", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    (log_space ? log_softmax_backward<T> : cpu::softmax_backward<T>)(dx.data<T>(), dout.data<T>(),
                                                                     out.data<T>(), rows_of(out),
                                                                     cols_of(out));
  });
}

}  // namespace dino::kernels::cpu
