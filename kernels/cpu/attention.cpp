// Multi-head softmax attention on timm's packed qkv layout, forward and a flash-style
// backward that recomputes the probabilities from the saved log-sum-exp.
//
// Each (batch, head) pair is independent, so the (b, h) loop is split across threads and
// each thread owns its scratch matrices. A head's q, k, v (and o, dO, dq, dk, dv) are read
// and written in place inside the packed rows through strided maps: Eigen packs its GEMM
// operands anyway, so a separate gather would only copy them twice. The matmuls run through
// Eigen, which stays single-threaded inside the parallel region.
//
// The DINO recipe's heads are tiny (N = 10 or 50 tokens, head dim 32), so the exponentials,
// not the products, dominated: the float path uses the vectorisable fast::exp over each
// contiguous score row (the double path, for references and gradient checks, uses the C
// library).
//
// Precision: the row sum of exp is accumulated in double. The probabilities are formed as
// exp(s - lse) with lse already rounded to T, in both passes, so the backward recomputes
// exactly the probabilities the forward produced.
#include <Eigen/Core>
#include <cmath>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// N rows of Dh values inside a packed buffer, `stride` elements apart.
template <class T>
using HeadIn = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using HeadOut = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

inline float exp_t(float v) { return fast::exp(v); }
inline double exp_t(double v) { return std::exp(v); }

template <class T>
HeadIn<T> head_in(const T* p, int64_t N, int64_t Dh, int64_t stride) {
  return HeadIn<T>(p, N, Dh, Eigen::OuterStride<>(stride));
}

template <class T>
HeadOut<T> head_out(T* p, int64_t N, int64_t Dh, int64_t stride) {
  return HeadOut<T>(p, N, Dh, Eigen::OuterStride<>(stride));
}

// log(sum_j exp(row_j)), the sum taken in double.
template <class T>
T row_lse(const T* row, int64_t n) {
  T m = row[0];
  for (int64_t j = 1; j < n; ++j) m = row[j] > m ? row[j] : m;
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += double(exp_t(row[j] - m));
  return T(double(m) + std::log(sum));
}

// s (N, N) holds scaled scores on entry and probabilities exp(s - lse) on exit.
template <class T>
void probs_from_lse(RowMat<T>& s, const T* lse) {
  const int64_t n = s.cols();
  for (int64_t i = 0; i < s.rows(); ++i) {
    T* row = s.data() + i * n;
    const T l = lse[i];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] = exp_t(row[j] - l);
  }
}

}  // namespace

template <class T>
void attention_forward(T* out, T* lse, T* probs, const T* qkv, int64_t B, int64_t N, int64_t H,
                       int64_t Dh) {
  const int64_t D = H * Dh, row = 3 * D;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
#pragma omp parallel
  {
    RowMat<T> s(N, N);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const T* base = qkv + b * N * row + h * Dh;
      const HeadIn<T> q = head_in(base, N, Dh, row), k = head_in(base + D, N, Dh, row),
                      v = head_in(base + 2 * D, N, Dh, row);
      s.noalias() = scale * q * k.transpose();
      T* lse_bh = lse + bh * N;
      for (int64_t i = 0; i < N; ++i) lse_bh[i] = row_lse(s.data() + i * N, N);
      probs_from_lse(s, lse_bh);
      head_out(out + b * N * D + h * Dh, N, Dh, D).noalias() = s * v;
      if (probs) Eigen::Map<RowMat<T>>(probs + bh * N * N, N, N) = s;
    }
  }
}

// With P = softmax(scale * q k^T) and O = P v:
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)),
//   dQ = scale * dS K,  dK = scale * dS^T Q.
// rowsum(dO * O) equals rowsum(P * dP) and needs only Dh products per row.
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int64_t B,
                        int64_t N, int64_t H, int64_t Dh) {
  const int64_t D = H * Dh, row = 3 * D;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
#pragma omp parallel
  {
    RowMat<T> p(N, N), ds(N, N);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const T* base = qkv + b * N * row + h * Dh;
      const HeadIn<T> q = head_in(base, N, Dh, row), k = head_in(base + D, N, Dh, row),
                      v = head_in(base + 2 * D, N, Dh, row);
      const HeadIn<T> o = head_in(out + b * N * D + h * Dh, N, Dh, D),
                      dO = head_in(dout + b * N * D + h * Dh, N, Dh, D);

      p.noalias() = scale * q * k.transpose();
      probs_from_lse(p, lse + bh * N);
      ds.noalias() = dO * v.transpose();
      for (int64_t i = 0; i < N; ++i) {
        const T* o_i = o.data() + i * D;
        const T* dO_i = dO.data() + i * D;
        double delta = 0;
        for (int64_t d = 0; d < Dh; ++d) delta += double(dO_i[d]) * double(o_i[d]);
        const T dt = T(delta);
        T* ds_i = ds.data() + i * N;
        const T* p_i = p.data() + i * N;
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) ds_i[j] = p_i[j] * (ds_i[j] - dt);
      }
      T* dbase = dqkv + b * N * row + h * Dh;
      head_out(dbase, N, Dh, row).noalias() = scale * ds * k;
      head_out(dbase + D, N, Dh, row).noalias() = scale * ds.transpose() * q;
      head_out(dbase + 2 * D, N, Dh, row).noalias() = p.transpose() * dO;
    }
  }
}

template void attention_forward<float>(float*, float*, float*, const float*, int64_t, int64_t,
                                       int64_t, int64_t);
template void attention_forward<double>(double*, double*, double*, const double*, int64_t, int64_t,
                                        int64_t, int64_t);
template void attention_backward<float>(float*, const float*, const float*, const float*,
                                        const float*, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<double>(double*, const double*, const double*, const double*,
                                         const double*, int64_t, int64_t, int64_t, int64_t);

// The reference kernels are the CPU's only attention.
void CpuBackend::select_attention(const std::string& name) const {
  DINO_CHECK(name == "ours", "[attention] attention=", name,
             " runs only on the GPU; the CPU "
             "has its reference kernels (attention=ours)");
}

void CpuBackend::attention(const Tensor& out, const Tensor& lse, const Tensor& probs,
                           const Tensor& qkv, int64_t heads) const {
  const int64_t B = qkv.size(0), N = qkv.size(1), Dh = qkv.size(2) / (3 * heads);
  dispatch_float("attention", qkv.dtype(), [&](auto tag) {
    using T = decltype(tag);
    attention_forward<T>(out.data<T>(), lse.data<T>(), probs.defined() ? probs.data<T>() : nullptr,
                         qkv.data<T>(), B, N, heads, Dh);
  });
}

void CpuBackend::attention_backward(const Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                                    const Tensor& out, const Tensor& lse, int64_t heads) const {
  const int64_t B = qkv.size(0), N = qkv.size(1), Dh = qkv.size(2) / (3 * heads);
  dispatch_float("attention", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_backward<T>(dqkv.data<T>(), dout.data<T>(), qkv.data<T>(), out.data<T>(),
                               lse.data<T>(), B, N, heads, Dh);
  });
}

}  // namespace dino::kernels::cpu
