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
#include "kernels/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dino::kernels::cpu {

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                       int64_t N, int64_t C, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += xr[c];
    const double mu = sum / double(C);
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double d = double(xr[c]) - mu;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq / double(C) + eps);
    T* outr = out + r * C;
    for (int64_t c = 0; c < C; ++c)
      outr[c] = T((double(xr[c]) - mu) * rs * double(weight[c]) + double(bias[c]));
    mean[r] = T(mu);
    rstd[r] = T(rs);
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
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int64_t,
                                        int64_t);
template void layernorm_backward<double>(double*, double*, double*, const double*,
                                         const double*, const double*, const double*,
                                         const double*, int64_t, int64_t);

}  // namespace dino::kernels::cpu
