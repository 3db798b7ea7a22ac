#include "core/optim.h"

#include <cmath>

#include "core/ops_util.h"

namespace dino {

using namespace detail;

AdamW::AdamW(std::vector<ParamGroup> groups, double beta1, double beta2, double eps)
    : groups_(std::move(groups)), beta1_(beta1), beta2_(beta2), eps_(eps) {
  for (auto& group : groups_)
    for (auto& [name, p] : group.params) {
      DINO_CHECK(!state_.count(name), "[adamw] parameter '", name, "' is in two groups");
      state_[name] = AdamWState{Tensor::zeros(p.shape(), p.dtype(), p.device()),
                                Tensor::zeros(p.shape(), p.dtype(), p.device()), 0};
    }
}

void AdamW::step() {
  NoGradGuard no_grad;
  for (auto& group : groups_) {
    for (auto& [name, p] : group.params) {
      const Tensor& g = p.grad();
      if (!g.defined()) continue;  // frozen this step: no step count, no moments, no decay
      require_cpu("adamw", p);
      AdamWState& st = state_.at(name);
      st.step += 1;
      const double bc1 = 1.0 - std::pow(beta1_, double(st.step));
      const double bc2 = 1.0 - std::pow(beta2_, double(st.step));
      const double step_size = group.lr / bc1, bc2_sqrt = std::sqrt(bc2);
      const double decay = 1.0 - group.lr * group.weight_decay;
      const double b1 = beta1_, b2 = beta2_, eps = eps_;
      dispatch_float("adamw", p.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* w = p.data<T>();
        const T* gp = g.data<T>();
        T* m = st.exp_avg.data<T>();
        T* v = st.exp_avg_sq.data<T>();
        const int64_t n = p.numel();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) {  // torch.optim.AdamW's single-tensor arithmetic
          w[i] = T(w[i] * decay);
          m[i] = T(b1 * m[i] + (1 - b1) * gp[i]);
          v[i] = T(b2 * v[i] + (1 - b2) * gp[i] * gp[i]);
          const double denom = std::sqrt(double(v[i])) / bc2_sqrt + eps;
          w[i] = T(w[i] - step_size * double(m[i]) / denom);
        }
      });
    }
  }
}

namespace {

double grad_sq_norm(const Tensor& g) {
  double s = 0;
  dispatch_float("clip_grad", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = g.data<T>();
    for (int64_t i = 0, n = g.numel(); i < n; ++i) s += double(p[i]) * double(p[i]);
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

std::vector<double> clip_grad_per_param(const std::vector<Tensor>& params, double max_norm) {
  std::vector<double> norms;
  for (const Tensor& p : params) {
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    require_cpu("clip_grad", g);
    const double norm = std::sqrt(grad_sq_norm(g));
    norms.push_back(norm);
    const double coef = max_norm / (norm + 1e-6);  // utils.clip_gradients
    if (coef < 1) scale_in_place(g, coef);
  }
  return norms;
}

double clip_grad_global_norm(const std::vector<Tensor>& params, double max_norm) {
  double total = 0;
  for (const Tensor& p : params)
    if (p.grad().defined()) {
      require_cpu("clip_grad", p.grad());
      total += grad_sq_norm(p.grad());
    }
  total = std::sqrt(total);
  const double coef = max_norm / (total + 1e-6);  // torch.nn.utils.clip_grad_norm_
  if (coef < 1)
    for (const Tensor& p : params)
      if (p.grad().defined()) scale_in_place(p.grad(), coef);
  return total;
}

}  // namespace dino
