// The op table's CPU gradient check (testing/grad_check.h).
#include "testing/grad_check.h"

#include <cmath>
#include <exception>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"

namespace dino::testing {

namespace {

Tensor normal_f64(const Shape& shape, Rng& rng, double scale = 1.0, double shift = 0.0) {
  Tensor t = Tensor::empty(shape, DType::f64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = shift + scale * rng.normal();
  return t;
}

double dot(const Tensor& a, const Tensor& b) {
  const double* x = a.data<double>();
  const double* y = b.data<double>();
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += x[i] * y[i];
  return s;
}

// L = sum(f(inputs) * weights), without recording.
double weighted_sum(const OpCase& c, const Inputs& inputs, const Tensor& weights) {
  NoGradGuard no_grad;
  return dot(c.fn(inputs).to(DType::f64), weights);
}

void run(GradCheck& out, const OpCase& c, int directions) {
  Rng rng(case_seed(c) ^ 0x9e3779b97f4a7c15ull);
  Inputs inputs;
  for (const OpInput& in : c.inputs) {
    Tensor t = normal_f64(in.shape, rng, in.scale, in.shift);
    if (in.grad) t.set_requires_grad(true);
    inputs.push_back(t);
  }
  const Tensor y = c.fn(inputs);
  DINO_CHECK(y.dtype() == DType::f64, "the output is ", dtype_name(y.dtype()), ", not f64");
  const Tensor weights = normal_f64(y.shape(), rng);
  if (!y.requires_grad()) {
    out.error = "the output takes no gradient";
    return;
  }
  sum(mul(y, weights)).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!c.inputs[i].grad) continue;
    const Tensor g = inputs[i].grad();
    if (!g.defined()) continue;  // an input the output does not depend on
    const Tensor x = inputs[i];
    // The step: small against the input's values, large against float64's rounding of L.
    const double h = 1e-6 * std::max(1.0, std::abs(c.inputs[i].shift) + c.inputs[i].scale);
    for (int d = 0; d < directions; ++d) {
      const Tensor v = normal_f64(x.shape(), rng);
      Inputs moved = inputs;
      auto along = [&](double t) {
        Tensor xt = Tensor::empty(x.shape(), DType::f64);
        for (int64_t k = 0; k < x.numel(); ++k)
          xt.data<double>()[k] = x.data<double>()[k] + t * v.data<double>()[k];
        moved[i] = xt;
        return weighted_sum(c, moved, weights);
      };
      GradCheck::Direction r;
      r.input = i;
      r.analytic = dot(g.to(DType::f64), v);
      r.numeric = (along(h) - along(-h)) / (2 * h);
      const double scale = std::sqrt(dot(g.to(DType::f64), g.to(DType::f64)) * dot(v, v));
      r.error = std::abs(r.analytic - r.numeric) / std::max(scale, 1e-300);
      out.directions.push_back(r);
    }
  }
  if (out.directions.empty()) out.error = "no input took a gradient";
}

}  // namespace

bool takes_gradient(const OpCase& c) {
  for (const OpInput& in : c.inputs)
    if (in.grad) return true;
  return false;
}

bool GradCheck::pass() const {
  if (!error.empty()) return false;
  for (const Direction& d : directions)
    if (!(d.error <= tolerance)) return false;
  return true;
}

std::string GradCheck::describe() const {
  std::string s = error;
  for (const Direction& d : directions)
    s += str_cat(s.empty() ? "" : "; ", "input ", d.input, ": <grad, v> ", d.analytic,
                 " vs central difference ", d.numeric, " (error ", d.error, ", tolerance ",
                 tolerance, ")");
  return s;
}

GradCheck check_case_gradients(const OpCase& c, int directions, double tolerance) {
  GradCheck out;
  out.tolerance = tolerance;
  try {
    run(out, c, directions);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

}  // namespace dino::testing
