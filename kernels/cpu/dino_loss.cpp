// The DINO loss in the fused form of ARCHITECTURE §4: instead of one cross-entropy per
// (teacher view, student view) pair, each student row needs only its own log-sum-exp and its
// dot product with the sum of the teacher distributions of the other global views,
//   L = 1/(n*B) sum_b sum_v [ m_v * lse(s_vb / tau_s) - (1/tau_s) (Q_b - [v<G] q_vb) . s_vb ].
// Q_b - [v<G] q_vb is formed as the sum over g != v of q_gb rather than as a difference, so
// nothing cancels.
//
// Precision: logits are centred, divided by the temperature (0.04 for the teacher amplifies
// any rounding 25x) and max-shifted in double; exp runs in T (for float, the vectorisable
// fast::exp, within 2 ulp: its rounding is that of the T result anyway), and every sum and
// dot is in double. The row loops are SIMD reductions, whose order is fixed by the build.
// The loss is a sum of per-row terms added in row order, so it does not depend on the
// thread count. The teacher probabilities are rounded to T once, in q, and both passes read
// that same q.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {

// With z = (x - shift) / tau (shift may be null): fills e with exp(z - max z), sets sum to
// sum(e) and returns max z, so lse(z) = max z + log(sum).
inline float exp_t(float v) { return fast::exp(v); }
inline double exp_t(double v) { return std::exp(v); }

template <class T>
double scaled_exp(std::vector<double>& e, double& sum, const T* x, const T* shift, int64_t K,
                  double tau) {
  double m = -INFINITY;
  double* pe = e.data();
  if (shift) {
#pragma omp simd reduction(max : m)
    for (int64_t k = 0; k < K; ++k) {
      pe[k] = (double(x[k]) - double(shift[k])) / tau;
      m = std::max(m, pe[k]);
    }
  } else {
#pragma omp simd reduction(max : m)
    for (int64_t k = 0; k < K; ++k) {
      pe[k] = double(x[k]) / tau;
      m = std::max(m, pe[k]);
    }
  }
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t k = 0; k < K; ++k) {
    pe[k] = exp_t(T(pe[k] - m));
    total += pe[k];
  }
  sum = total;
  return m;
}

}  // namespace

template <class T>
T dino_loss_forward(T* q, const T* student, const T* teacher, const T* center, int64_t G, int64_t V,
                    int64_t B, int64_t K, double tau_s, double tau_t) {
#pragma omp parallel
  {
    std::vector<double> e(K);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < G * B; ++r) {
      double sum;
      scaled_exp(e, sum, teacher + r * K, center, K, tau_t);
      T* qr = q + r * K;
      for (int64_t k = 0; k < K; ++k) qr[k] = T(e[k] / sum);
    }
  }

  std::vector<double> term(V * B);
#pragma omp parallel
  {
    std::vector<double> e(K);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < V * B; ++r) {
      const int64_t v = r / B, b = r % B;
      const T* s = student + r * K;
      double sum;
      const double m = scaled_exp<T>(e, sum, s, nullptr, K, tau_s);
      const double lse = m + std::log(sum);
      double cross = 0;  // (Q_b - [v<G] q_vb) . s_vb
      for (int64_t g = 0; g < G; ++g) {
        if (g == v) continue;
        const T* qg = q + (g * B + b) * K;
        double dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t k = 0; k < K; ++k) dot += double(qg[k]) * double(s[k]);
        cross += dot;
      }
      const double m_v = v < G ? double(G - 1) : double(G);
      term[r] = m_v * lse - cross / tau_s;
    }
  }
  double total = 0;
  for (int64_t r = 0; r < V * B; ++r) total += term[r];
  const double n_pairs = double(G * V - G);
  return T(total / (n_pairs * double(B)));
}

// dstudent_vb = dloss / (n*B*tau_s) * (m_v * softmax(s_vb / tau_s) - sum_{g != v} q_gb)
template <class T>
void dino_loss_backward(T* dstudent, const T* student, const T* q, int64_t G, int64_t V, int64_t B,
                        int64_t K, double tau_s, double dloss) {
  const double coef = dloss / (double(G * V - G) * double(B) * tau_s);
#pragma omp parallel
  {
    std::vector<double> e(K), qsum(K);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < V * B; ++r) {
      const int64_t v = r / B, b = r % B;
      double sum;
      scaled_exp<T>(e, sum, student + r * K, nullptr, K, tau_s);
      std::fill(qsum.begin(), qsum.end(), 0.0);
      for (int64_t g = 0; g < G; ++g) {  // sum_{g != v} q_gb, added in g order
        if (g == v) continue;
        const T* qg = q + (g * B + b) * K;
        for (int64_t k = 0; k < K; ++k) qsum[k] += double(qg[k]);
      }
      const double m_v = v < G ? double(G - 1) : double(G);
      T* dr = dstudent + r * K;
      for (int64_t k = 0; k < K; ++k) dr[k] = T(coef * (m_v * e[k] / sum - qsum[k]));
    }
  }
}

// Column sums over the R teacher rows, by blocks of columns so each column is summed in row
// order by a single thread.
template <class T>
void dino_teacher_colsum(double* colsum, const T* teacher, int64_t R, int64_t K) {
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (K + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t k0 = blk * kBlock, k1 = std::min(K, k0 + kBlock);
    double acc[kBlock] = {};
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k = k0; k < k1; ++k) acc[k - k0] += teacher[r * K + k];
    for (int64_t k = k0; k < k1; ++k) colsum[k] = acc[k - k0];
  }
}

template <class T>
void dino_center_update(T* center, const double* colsum, int64_t rows, int64_t K, double momentum) {
  for (int64_t k = 0; k < K; ++k)
    center[k] = T(momentum * double(center[k]) + (1 - momentum) * colsum[k] / double(rows));
}

void dino_teacher_stats(double* stats, double loss, const double* q, int64_t R, int64_t K) {
  std::vector<double> mean_q(size_t(K), 0.0);
  double h_sum = 0;
  for (int64_t r = 0; r < R; ++r) {
    double h = 0;
    for (int64_t k = 0; k < K; ++k) {
      const double v = q[r * K + k];
      if (v > 0) h -= v * std::log(v);
      mean_q[size_t(k)] += v / double(R);
    }
    h_sum += h;
  }
  double hb = 0;
  for (double v : mean_q)
    if (v > 0) hb -= v * std::log(v);
  stats[0] = loss;
  stats[1] = h_sum / double(R);
  stats[2] = hb;
}

template float dino_loss_forward<float>(float*, const float*, const float*, const float*, int64_t,
                                        int64_t, int64_t, int64_t, double, double);
template double dino_loss_forward<double>(double*, const double*, const double*, const double*,
                                          int64_t, int64_t, int64_t, int64_t, double, double);
template void dino_loss_backward<float>(float*, const float*, const float*, int64_t, int64_t,
                                        int64_t, int64_t, double, double);
template void dino_loss_backward<double>(double*, const double*, const double*, int64_t, int64_t,
                                         int64_t, int64_t, double, double);
template void dino_teacher_colsum<float>(double*, const float*, int64_t, int64_t);
template void dino_teacher_colsum<double>(double*, const double*, int64_t, int64_t);
template void dino_center_update<float>(float*, const double*, int64_t, int64_t, double);
template void dino_center_update<double>(double*, const double*, int64_t, int64_t, double);

// ---- the CPU backend's DINO loss (core/ops_dino.cpp, losses/dino_loss.cpp): logits in the
// op's one dtype; the teacher's column sums and the collapse statistics in double. The backward
// reads the teacher probabilities q the forward kept, and the upstream gradient from the host.
void CpuBackend::dino_loss(const Tensor& loss, const Tensor& q, const Tensor& teacher_colsum,
                           Tensor& saved, const Tensor& student, const Tensor& teacher,
                           const Tensor& center, int64_t G, double tau_s,
                           const Tensor& tau_t_tensor) const {
  DINO_CHECK(tau_t_tensor.dtype() == DType::f64 && tau_t_tensor.numel() == 1,
             "[dino_loss] the teacher temperature must be one f64 on the CPU, got ",
             tau_t_tensor.str());
  const double tau_t = *tau_t_tensor.data<double>();
  const int64_t K = student.size(1), B = teacher.size(0) / G, V = student.size(0) / B;
  const Tensor probs = q.defined() ? q : Tensor::empty({G * B, K}, student.dtype());
  dispatch_float("dino_loss", student.dtype(), [&](auto tag) {
    using T = decltype(tag);
    *loss.data<T>() = dino_loss_forward<T>(probs.data<T>(), student.data<T>(), teacher.data<T>(),
                                           center.data<T>(), G, V, B, K, tau_s, tau_t);
    if (teacher_colsum.defined())
      dino_teacher_colsum<T>(teacher_colsum.data<double>(), teacher.data<T>(), G * B, K);
  });
  saved = probs;
}

void CpuBackend::dino_loss_backward(const Tensor& dstudent, const Tensor& dloss,
                                    const Tensor& saved, const Tensor& student, int64_t G,
                                    double tau_s) const {
  const int64_t K = student.size(1), B = saved.size(0) / G, V = student.size(0) / B;
  const double g = dloss.item();
  dispatch_float("dino_loss", student.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::dino_loss_backward<T>(dstudent.data<T>(), student.data<T>(), saved.data<T>(), G, V, B, K,
                               tau_s, g);
  });
}

void CpuBackend::dino_teacher_stats(const Tensor& stats, const Tensor& loss,
                                    const Tensor& q) const {
  const Tensor qh = q.to(DType::f64);
  cpu::dino_teacher_stats(stats.data<double>(), loss.item(), qh.data<double>(), q.size(0),
                          q.size(1));
}

void CpuBackend::dino_center_update(const Tensor& center, const Tensor& teacher_colsum,
                                    int64_t rows, double momentum) const {
  dispatch_float("dino_loss", center.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::dino_center_update<T>(center.data<T>(), teacher_colsum.data<double>(), rows,
                               center.numel(), momentum);
  });
}

}  // namespace dino::kernels::cpu
