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
#include "kernels/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/fast_math.h"

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
T dino_loss_forward(T* q, const T* student, const T* teacher, const T* center, int64_t G,
                    int64_t V, int64_t B, int64_t K, double tau_s, double tau_t) {
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
void dino_loss_backward(T* dstudent, const T* student, const T* q, int64_t G, int64_t V,
                        int64_t B, int64_t K, double tau_s, double dloss) {
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
void dino_center_update(T* center, const T* teacher, int64_t R, int64_t K, double momentum) {
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (K + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t k0 = blk * kBlock, k1 = std::min(K, k0 + kBlock);
    double acc[kBlock] = {};
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k = k0; k < k1; ++k) acc[k - k0] += teacher[r * K + k];
    for (int64_t k = k0; k < k1; ++k)
      center[k] = T(momentum * double(center[k]) + (1 - momentum) * acc[k - k0] / double(R));
  }
}

template float dino_loss_forward<float>(float*, const float*, const float*, const float*,
                                        int64_t, int64_t, int64_t, int64_t, double, double);
template double dino_loss_forward<double>(double*, const double*, const double*, const double*,
                                          int64_t, int64_t, int64_t, int64_t, double, double);
template void dino_loss_backward<float>(float*, const float*, const float*, int64_t, int64_t,
                                        int64_t, int64_t, double, double);
template void dino_loss_backward<double>(double*, const double*, const double*, int64_t,
                                         int64_t, int64_t, int64_t, double, double);
template void dino_center_update<float>(float*, const float*, int64_t, int64_t, double);
template void dino_center_update<double>(double*, const double*, int64_t, int64_t, double);

}  // namespace dino::kernels::cpu
