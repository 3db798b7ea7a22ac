// Autograd edge cases: reuse, diamonds, accumulation across backwards, NoGradGuard, freed
// buffers, views.
#include <catch2/catch.hpp>

#include "core/autograd.h"
#include "core/ops.h"

using namespace dino;

namespace {
Tensor leaf(std::vector<double> v) {
  Tensor t = Tensor::from_vector(v, {int64_t(v.size())});
  t.set_requires_grad();
  return t;
}
}  // namespace

TEST_CASE("a tensor used twice gets the sum of both gradients", "[autograd]") {
  Tensor x = leaf({1.5, -2.0, 3.0});
  sum(mul(x, x)).backward();  // d/dx sum(x^2) = 2x
  CHECK(x.grad().data<double>()[0] == 3.0);
  CHECK(x.grad().data<double>()[1] == -4.0);
  CHECK(x.grad().data<double>()[2] == 6.0);
}

TEST_CASE("diamond graphs sum the paths", "[autograd]") {
  Tensor x = leaf({2.0});
  Tensor a = scale(x, 3.0), b = exp(x);
  sum(add(mul(a, b), a)).backward();  // d/dx (3x e^x + 3x) = 3e^x + 3x e^x + 3
  const double e = std::exp(2.0);
  CHECK(x.grad().item() == Approx(3 * e + 6 * e + 3).epsilon(1e-14));
}

TEST_CASE("gradients accumulate across backward calls until cleared", "[autograd]") {
  Tensor x = leaf({1.0, 2.0});
  sum(scale(x, 2.0)).backward();
  sum(scale(x, 3.0)).backward();
  CHECK(x.grad().data<double>()[1] == 5.0);
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("the same gradient tensor handed to two leaves is not shared", "[autograd]") {
  Tensor a = leaf({1.0}), b = leaf({2.0});
  sum(add(a, b)).backward();
  a.grad().data<double>()[0] = 42.0;  // clipping scales .grad in place
  CHECK(b.grad().item() == 1.0);
}

TEST_CASE("NoGradGuard records nothing", "[autograd]") {
  Tensor x = leaf({1.0});
  Tensor y;
  {
    NoGradGuard ng;
    y = scale(x, 2.0);
  }
  CHECK_FALSE(y.requires_grad());
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("a second backward through freed buffers is a clear error", "[autograd]") {
  Tensor x = leaf({0.5, 0.25});
  Tensor loss = sum(exp(x));
  loss.backward();
  CHECK_THROWS_WITH(loss.backward(), Catch::Contains("second backward") && Catch::Contains("retain_graph"));
  Tensor loss2 = sum(exp(x));
  x.zero_grad();
  loss2.backward(Tensor(), true);
  loss2.backward();
  CHECK(x.grad().data<double>()[0] == Approx(2 * std::exp(0.5)));
}

TEST_CASE("backward of a non-scalar needs an explicit gradient", "[autograd]") {
  Tensor x = leaf({1.0, 2.0});
  Tensor y = scale(x, 2.0);
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("one-element"));
  y.backward(Tensor::from_vector(std::vector<double>{1.0, 10.0}, {2}));
  CHECK(x.grad().data<double>()[1] == 20.0);
}

TEST_CASE("views share storage and route gradients", "[autograd]") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2});
  x.set_requires_grad();
  Tensor mid = x.narrow(1, 1);
  CHECK(mid.data<double>()[0] == 3.0);
  CHECK(mid.raw_data() == static_cast<double*>(x.raw_data()) + 2);
  sum(scale(mid.reshape({2}), 4.0)).backward();
  const double* g = x.grad().data<double>();
  CHECK(g[0] == 0.0);
  CHECK(g[2] == 4.0);
  CHECK(g[3] == 4.0);
  CHECK(g[5] == 0.0);
}

TEST_CASE("detach cuts history but shares data", "[autograd]") {
  Tensor x = leaf({1.0});
  Tensor d = scale(x, 2.0).detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.item() == 2.0);
}
