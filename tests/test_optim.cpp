// AdamW, gradient clipping and schedules against hand-computed values.
#include <catch2/catch.hpp>
#include <cmath>

#include "core/optim.h"
#include "core/schedule.h"

using namespace dino;

namespace {
Tensor param(std::vector<double> v) {
  Tensor t = Tensor::from_vector(v, {int64_t(v.size())});
  t.set_requires_grad();
  return t;
}
}  // namespace

TEST_CASE("AdamW matches torch.optim.AdamW's formulas over two steps", "[optim]") {
  Tensor w = param({1.0, -2.0});
  AdamW opt({ParamGroup{{{"w", w}}, 0.1, 0.5}}, 0.9, 0.999, 1e-8);
  const double g1[2] = {0.5, -1.0}, g2[2] = {-0.25, 2.0};
  double theta[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int step = 1; step <= 2; ++step) {
    const double* g = step == 1 ? g1 : g2;
    w.set_grad(Tensor::from_vector(std::vector<double>{g[0], g[1]}, {2}));
    opt.step();
    for (int i = 0; i < 2; ++i) {
      theta[i] *= 1 - 0.1 * 0.5;
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(0.9, step)), vh = v[i] / (1 - std::pow(0.999, step));
      theta[i] -= 0.1 * mh / (std::sqrt(vh) + 1e-8);
      CHECK(w.data<double>()[i] == Approx(theta[i]).epsilon(1e-12));
    }
  }
  CHECK(opt.state().at("w").step == 2);
}

TEST_CASE("AdamW skips a parameter without a gradient: no step, no moments, no decay", "[optim]") {
  Tensor a = param({1.0}), b = param({3.0});
  AdamW opt({ParamGroup{{{"a", a}, {"b", b}}, 0.01, 0.1}});
  a.set_grad(Tensor::from_vector(std::vector<double>{1.0}, {1}));
  opt.step();
  CHECK(b.item() == 3.0);
  CHECK(opt.state().at("b").step == 0);
  CHECK(opt.state().at("a").step == 1);
  // b's first real step is bias-corrected as step 1: |delta| = lr (Adam's first step).
  b.set_grad(Tensor::from_vector(std::vector<double>{-5.0}, {1}));
  opt.step();
  CHECK(b.item() == Approx(3.0 * (1 - 0.01 * 0.1) + 0.01).epsilon(1e-9));
}

TEST_CASE("per-parameter clipping scales each gradient on its own", "[optim]") {
  Tensor a = param({0, 0}), b = param({0});
  a.set_grad(Tensor::from_vector(std::vector<double>{3.0, 4.0}, {2}));  // norm 5
  b.set_grad(Tensor::from_vector(std::vector<double>{0.5}, {1}));       // norm 0.5
  auto norms = clip_grad_per_param({a, b}, 1.0);
  CHECK(norms[0] == Approx(5.0));
  CHECK(a.grad().data<double>()[0] == Approx(3.0 / (5.0 + 1e-6)));
  CHECK(b.grad().item() == 0.5);  // under the threshold: untouched
}

TEST_CASE("global-norm clipping scales all gradients together", "[optim]") {
  Tensor a = param({0, 0}), b = param({0});
  a.set_grad(Tensor::from_vector(std::vector<double>{3.0, 0.0}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<double>{4.0}, {1}));
  CHECK(clip_grad_global_norm({a, b}, 2.5) == Approx(5.0));
  CHECK(a.grad().data<double>()[0] == Approx(3.0 * 2.5 / (5.0 + 1e-6)));
  CHECK(b.grad().item() == Approx(4.0 * 2.5 / (5.0 + 1e-6)));
}

TEST_CASE("cosine schedule follows utils.cosine_scheduler", "[schedule]") {
  // base 1, final 0, warmup 2 epochs of 5 iterations from 0, 10 epochs in all.
  CosineSchedule s{1.0, 0.0, 0.0, 2.0, 10.0, 5};
  CHECK(s.at(0) == 0.0);
  CHECK(s.at(9) == Approx(1.0));  // linspace reaches base on the last warmup iteration
  CHECK(s.at(4) == Approx(4.0 / 9.0));
  CHECK(s.at(10) == Approx(1.0));  // cosine starts at base
  CHECK(s.at(30) == Approx(0.5 * (1 + std::cos(M_PI * 20.0 / 40.0))));
  CHECK(s.at(49) == Approx(0.5 * (1 + std::cos(M_PI * 39.0 / 40.0))));
  CHECK(s.at(1000) == 0.0);
  // Fractional epochs keep the shape of a long run in a short one.
  CosineSchedule frac{0.996, 1.0, 0.0, 0.0, 0.5, 100};
  CHECK(frac.at(0) == Approx(0.996));
  CHECK(frac.at(25) == Approx(0.998));
}

TEST_CASE("teacher temperature warmup is linear then constant", "[schedule]") {
  LinearWarmup t{0.04, 0.07, 1.5, 10};
  CHECK(t.at(0) == 0.04);
  CHECK(t.at(5) == Approx(0.05));
  CHECK(t.at(15) == 0.07);
  CHECK(t.at(100) == 0.07);
}
