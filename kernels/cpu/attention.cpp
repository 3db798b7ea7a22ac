// Multi-head softmax attention on timm's packed qkv layout, forward and a flash-style
// backward that recomputes the probabilities from the saved log-sum-exp.
//
// Each (batch, head) pair is independent, so the (b, h) loop is split across threads and
// each thread owns its scratch matrices. A head's q, k, v are strided inside qkv (row stride
// 3*H*Dh), so they are first gathered into contiguous (N, Dh) matrices; the matmuls then run
// through Eigen, which stays single-threaded inside the parallel region.
//
// Precision: the row sum of exp is accumulated in double. The probabilities are formed as
// exp(s - lse) with lse already rounded to T, in both passes, so the backward recomputes
// exactly the probabilities the forward produced.
#include "kernels/cpu/kernels.h"

#include <Eigen/Core>
#include <cmath>

namespace dino::kernels::cpu {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// dst (N, Dh) <- N rows of Dh values, `stride` elements apart
template <class T>
void gather_head(RowMat<T>& dst, const T* src, int64_t stride) {
  for (int64_t n = 0; n < dst.rows(); ++n)
    for (int64_t d = 0; d < dst.cols(); ++d) dst(n, d) = src[n * stride + d];
}

template <class T>
void scatter_head(T* dst, const RowMat<T>& src, int64_t stride) {
  for (int64_t n = 0; n < src.rows(); ++n)
    for (int64_t d = 0; d < src.cols(); ++d) dst[n * stride + d] = src(n, d);
}

// s (N, N) holds scaled scores on entry and probabilities exp(s - lse) on exit.
template <class T>
void probs_from_lse(RowMat<T>& s, const T* lse) {
  for (int64_t i = 0; i < s.rows(); ++i)
    for (int64_t j = 0; j < s.cols(); ++j) s(i, j) = std::exp(s(i, j) - lse[i]);
}

}  // namespace

template <class T>
void attention_forward(T* out, T* lse, T* probs, const T* qkv, int64_t B, int64_t N, int64_t H,
                       int64_t Dh) {
  const int64_t D = H * Dh, row = 3 * D;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
#pragma omp parallel
  {
    RowMat<T> q(N, Dh), k(N, Dh), v(N, Dh), s(N, N), o(N, Dh);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const T* base = qkv + b * N * row + h * Dh;
      gather_head(q, base, row);
      gather_head(k, base + D, row);
      gather_head(v, base + 2 * D, row);
      s.noalias() = scale * q * k.transpose();
      T* lse_bh = lse + bh * N;
      for (int64_t i = 0; i < N; ++i) {
        const T m = s.row(i).maxCoeff();
        double sum = 0;
        for (int64_t j = 0; j < N; ++j) sum += std::exp(s(i, j) - m);
        lse_bh[i] = T(double(m) + std::log(sum));
      }
      probs_from_lse(s, lse_bh);
      o.noalias() = s * v;
      scatter_head(out + b * N * D + h * Dh, o, D);
      if (probs) Eigen::Map<RowMat<T>>(probs + bh * N * N, N, N) = s;
    }
  }
}

// With P = softmax(scale * q k^T) and O = P v:
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)),
//   dQ = scale * dS K,  dK = scale * dS^T Q.
// rowsum(dO * O) equals rowsum(P * dP) and needs only Dh products per row.
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                        int64_t B, int64_t N, int64_t H, int64_t Dh) {
  const int64_t D = H * Dh, row = 3 * D;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
#pragma omp parallel
  {
    RowMat<T> q(N, Dh), k(N, Dh), v(N, Dh), o(N, Dh), dO(N, Dh);
    RowMat<T> p(N, N), ds(N, N), dq(N, Dh), dk(N, Dh), dv(N, Dh);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const T* base = qkv + b * N * row + h * Dh;
      gather_head(q, base, row);
      gather_head(k, base + D, row);
      gather_head(v, base + 2 * D, row);
      gather_head(o, out + b * N * D + h * Dh, D);
      gather_head(dO, dout + b * N * D + h * Dh, D);

      p.noalias() = scale * q * k.transpose();
      probs_from_lse(p, lse + bh * N);
      ds.noalias() = dO * v.transpose();
      for (int64_t i = 0; i < N; ++i) {
        double delta = 0;
        for (int64_t d = 0; d < Dh; ++d) delta += double(dO(i, d)) * double(o(i, d));
        for (int64_t j = 0; j < N; ++j) ds(i, j) = p(i, j) * (ds(i, j) - T(delta));
      }
      dq.noalias() = scale * ds * k;
      dk.noalias() = scale * ds.transpose() * q;
      dv.noalias() = p.transpose() * dO;

      T* dbase = dqkv + b * N * row + h * Dh;
      scatter_head(dbase, dq, row);
      scatter_head(dbase + D, dk, row);
      scatter_head(dbase + 2 * D, dv, row);
    }
  }
}

template void attention_forward<float>(float*, float*, float*, const float*, int64_t, int64_t,
                                       int64_t, int64_t);
template void attention_forward<double>(double*, double*, double*, const double*, int64_t,
                                        int64_t, int64_t, int64_t);
template void attention_backward<float>(float*, const float*, const float*, const float*,
                                        const float*, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<double>(double*, const double*, const double*, const double*,
                                         const double*, int64_t, int64_t, int64_t, int64_t);

}  // namespace dino::kernels::cpu
