// The optimizer steps of the CPU backend, for core/optim.cpp and models/multicrop.cpp: AdamW
// (torch.optim.AdamW's single-tensor arithmetic), the teacher's EMA, and gradient clipping
// (DINO's utils.clip_gradients per tensor, torch's clip_grad_norm_ globally). f32 or f64.
#include <cmath>

#include "kernels/cpu/backend.h"

namespace dino::kernels::cpu {

namespace {

// One parameter's update with its bias corrections formed. A worksharing loop without a
// barrier: every thread of the enclosing parallel region calls it, and elements are
// independent.
template <class T>
void adamw_elements(const AdamWUpdate& u, double b1, double b2, double eps) {
  const double bc1 = 1.0 - std::pow(b1, double(u.step));
  const double bc2 = 1.0 - std::pow(b2, double(u.step));
  const double step_size = u.lr / bc1, bc2_sqrt = std::sqrt(bc2);
  const double decay = 1.0 - u.lr * u.weight_decay;
  T* w = u.param.data<T>();
  const T* gp = u.grad.data<T>();
  T* m = u.exp_avg.data<T>();
  T* v = u.exp_avg_sq.data<T>();
  const int64_t n = u.param.numel();
#pragma omp for schedule(static) nowait
  for (int64_t i = 0; i < n; ++i) {
    w[i] = T(w[i] * decay);
    m[i] = T(b1 * m[i] + (1 - b1) * gp[i]);
    v[i] = T(b2 * v[i] + (1 - b2) * gp[i] * gp[i]);
    const double denom = std::sqrt(double(v[i])) / bc2_sqrt + eps;
    w[i] = T(w[i] - step_size * double(m[i]) / denom);
  }
}

double sq_norm(const Tensor& g) {
  double s = 0;
  dispatch_float("clip_grad", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = g.data<T>();
    const int64_t n = g.numel();
    double acc = 0;  // a SIMD reduction: its order is fixed by the build, not the thread count
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += double(p[i]) * double(p[i]);
    s = acc;
  });
  return s;
}

void scale_in_place(const Tensor& g, double f) {
  dispatch_float("clip_grad", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = g.data<T>();
    for (int64_t i = 0, n = g.numel(); i < n; ++i) p[i] = T(p[i] * f);
  });
}

}  // namespace

// Every parameter's update in ONE parallel region (a region per parameter cost a fork and a
// barrier per bias vector).
void CpuBackend::adamw(const std::vector<AdamWUpdate>& updates, double beta1, double beta2,
                       double eps) const {
#pragma omp parallel
  for (const AdamWUpdate& u : updates) {
    if (u.param.dtype() == DType::f32)
      adamw_elements<float>(u, beta1, beta2, eps);
    else
      adamw_elements<double>(u, beta1, beta2, eps);
  }
}

void CpuBackend::ema(const std::vector<EmaUpdate>& updates, double momentum) const {
  for (const EmaUpdate& u : updates) {
    float* a = u.teacher.data<float>();
    const float* b = u.student.data<float>();
    const int64_t n = u.teacher.numel();
    const float m = float(momentum), one_m = float(1.0 - momentum);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) a[j] = a[j] * m + one_m * b[j];
  }
}

void CpuBackend::clip_grads(std::vector<double>& norms, const std::vector<Tensor>& grads,
                            double max_norm, bool global, bool) const {
  norms.clear();
  if (global) {
    double total = 0;
    for (const Tensor& g : grads) total += sq_norm(g);
    total = std::sqrt(total);
    const double coef = max_norm / (total + 1e-6);  // torch.nn.utils.clip_grad_norm_
    if (coef < 1)
      for (const Tensor& g : grads) scale_in_place(g, coef);
    norms.push_back(total);
    return;
  }
  for (const Tensor& g : grads) {
    const double norm = std::sqrt(sq_norm(g));
    norms.push_back(norm);
    const double coef = max_norm / (norm + 1e-6);  // utils.clip_gradients
    if (coef < 1) scale_in_place(g, coef);
  }
}

}  // namespace dino::kernels::cpu
