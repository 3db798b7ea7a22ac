#pragma once
// Float64 central-difference gradient checks. The op's output is reduced with fixed random
// weights (loss = sum(out * W)), so every output element's gradient path is exercised.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"

namespace dino::testing {

inline Tensor random_f64(const Shape& shape, Rng& rng, double lo = -1.0, double hi = 1.0) {
  return Tensor::uniform(shape, rng, lo, hi, DType::f64);
}

// ||a - b|| / ||b|| over two host tensors of equal size (any float dtype).
inline double rel_error(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::cpu).to(DType::f64), y = b.to(Device::cpu).to(DType::f64);
  REQUIRE(x.numel() == y.numel());
  double num = 0, den = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = x.data<double>()[i] - y.data<double>()[i];
    num += d * d;
    den += y.data<double>()[i] * y.data<double>()[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

inline double l2_norm(const Tensor& t) {
  const Tensor x = t.to(Device::cpu).to(DType::f64);
  double s = 0;
  for (int64_t i = 0; i < x.numel(); ++i) s += x.data<double>()[i] * x.data<double>()[i];
  return std::sqrt(s);
}

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d(sum(f(inputs) * W))/d(input) against central differences for every input that
// requires grad. Returns the worst relative error.
inline double gradcheck(const OpFn& f, std::vector<Tensor> inputs, double eps = 1e-6) {
  Rng rng(1234);
  Tensor out = f(inputs);
  Tensor weights = random_f64(out.shape(), rng);
  auto loss_of = [&](const std::vector<Tensor>& in) {
    NoGradGuard ng;
    Tensor o = f(in);
    double s = 0;
    for (int64_t i = 0; i < o.numel(); ++i) s += o.data<double>()[i] * weights.data<double>()[i];
    return s;
  };
  for (Tensor& t : inputs) t.zero_grad();
  sum(mul(out, weights)).backward();
  double worst = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    REQUIRE(x.grad().defined());
    Tensor numeric = Tensor::empty(x.shape(), DType::f64);
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double saved = p[i];
      p[i] = saved + eps;
      const double up = loss_of(inputs);
      p[i] = saved - eps;
      const double down = loss_of(inputs);
      p[i] = saved;
      numeric.data<double>()[i] = (up - down) / (2 * eps);
    }
    // A small absolute floor: where the true gradient is exactly zero (LayerNorm over one
    // column) both sides are rounding noise.
    const double err = rel_error(x.grad(), numeric) * l2_norm(numeric) / (l2_norm(numeric) + 1e-9);
    INFO("input " << k << " " << shape_str(x.shape()) << " relative gradient error " << err);
    CHECK(err < 1e-6);
    worst = std::max(worst, err);
  }
  return worst;
}

}  // namespace dino::testing
