// LayerNorm over the last dim: out = (x - mean) * rstd * weight + bias, biased variance,
// rstd = 1 / sqrt(var + eps).
//
// Precision: row statistics and the backward's row sums are accumulated in double, and the
// variance is a second pass over (x - mean)^2 rather than E[x^2] - mean^2, which cancels
// badly when |mean| >> std (the residual stream). The per-row math is done in double too and
// rounded once into T.
//
// Parallelism: rows are independent and split across threads. dweight and dbias are sums
// over rows, so they are split by column blocks instead: each column is summed over rows
// 0..N-1 in order by one thread, whatever the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {

// One row: out = LN(x), its mean and rstd.
template <class T>
void normalize_row(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t C,
                   double eps) {
  double sum = 0;
  for (int64_t c = 0; c < C; ++c) sum += x[c];
  const double mu = sum / double(C);
  double sq = 0;
  for (int64_t c = 0; c < C; ++c) {
    const double d = double(x[c]) - mu;
    sq += d * d;
  }
  const double rs = 1.0 / std::sqrt(sq / double(C) + eps);
  for (int64_t c = 0; c < C; ++c)
    out[c] = T((double(x[c]) - mu) * rs * double(weight[c]) + double(bias[c]));
  *mean = T(mu);
  *rstd = T(rs);
}

}  // namespace

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                       int64_t N, int64_t C, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r)
    normalize_row(out + r * C, mean + r, rstd + r, x + r * C, weight, bias, C, eps);
}

// The sum is rounded to T before it is normalised, as the unfused add then layer_norm do, so
// both give the same bits; the row is still in cache when the norm reads it back.
template <class T>
void residual_layernorm_forward(T* x_out, T* out, T* mean, T* rstd, const T* x, const T* branch,
                                const T* weight, const T* bias, int64_t N, int64_t C, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    T* sr = x_out + r * C;
    for (int64_t c = 0; c < C; ++c) sr[c] = x[r * C + c] + branch[r * C + c];
    normalize_row(out + r * C, mean + r, rstd + r, sr, weight, bias, C, eps);
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * weight,
// dweight = sum_rows dout * xhat, dbias = sum_rows dout.
template <class T>
void layernorm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* mean,
                        const T* rstd, const T* weight, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    const T* dr = dout + r * C;
    const double mu = mean[r], rs = rstd[r];
    double sum_g = 0, sum_gx = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double g = double(dr[c]) * double(weight[c]);
      sum_g += g;
      sum_gx += g * (double(xr[c]) - mu) * rs;
    }
    const double mean_g = sum_g / double(C), mean_gx = sum_gx / double(C);
    T* dxr = dx + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const double g = double(dr[c]) * double(weight[c]);
      const double xhat = (double(xr[c]) - mu) * rs;
      dxr[c] = T(rs * (g - mean_g - xhat * mean_gx));
    }
  }

  // A block of 64 columns keeps the row-by-row walk over memory contiguous.
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    double dw[kBlock] = {}, db[kBlock] = {};
    for (int64_t r = 0; r < N; ++r) {
      const double mu = mean[r], rs = rstd[r];
      for (int64_t c = c0; c < c1; ++c) {
        const double d = dout[r * C + c];
        dw[c - c0] += d * (double(x[r * C + c]) - mu) * rs;
        db[c - c0] += d;
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      dweight[c] = T(dw[c - c0]);
      dbias[c] = T(db[c - c0]);
    }
  }
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*,
                                       const float*, int64_t, int64_t, double);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*,
                                        const double*, int64_t, int64_t, double);
template void residual_layernorm_forward<float>(float*, float*, float*, float*, const float*,
                                                const float*, const float*, const float*, int64_t,
                                                int64_t, double);
template void residual_layernorm_forward<double>(double*, double*, double*, double*, const double*,
                                                 const double*, const double*, const double*,
                                                 int64_t, int64_t, double);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int64_t, int64_t);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*,
                                         const double*, const double*, const double*, int64_t,
                                         int64_t);

void CpuBackend::layer_norm(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                            const Tensor& x, const Tensor& weight, const Tensor& bias,
                            double eps) const {
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    layernorm_forward<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(),
                         weight.data<T>(), bias.data<T>(), rows_of(x), cols_of(x), eps);
  });
}

void CpuBackend::add_layer_norm(const Tensor& sum, const Tensor& out, const Tensor& mean,
                                const Tensor& rstd, const Tensor& x, const Tensor& branch,
                                const Tensor& weight, const Tensor& bias, double eps) const {
  dispatch_float("add_layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    residual_layernorm_forward<T>(sum.data<T>(), out.data<T>(), mean.data<T>(), rstd.data<T>(),
                                  x.data<T>(), branch.data<T>(), weight.data<T>(), bias.data<T>(),
                                  rows_of(x), cols_of(x), eps);
  });
}

void CpuBackend::layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                     const Tensor& dout, const Tensor& x, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& weight) const {
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    layernorm_backward<T>(dx.data<T>(), dweight.data<T>(), dbias.data<T>(), dout.data<T>(),
                          x.data<T>(), mean.data<T>(), rstd.data<T>(), weight.data<T>(), rows_of(x),
                          cols_of(x));
  });
}

}  // namespace dino::kernels::cpu
