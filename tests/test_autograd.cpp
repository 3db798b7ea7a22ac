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
  CHECK_THROWS_WITH(loss.backward(),
                    Catch::Contains("second backward") && Catch::Contains("retain_graph"));
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

TEST_CASE("a grad-ready hook fires once, after the leaf's last gradient has arrived",
          "[autograd]") {
  // x feeds two branches; w only the second. The walk reaches w's only edge before x's last.
  Tensor x = leaf({1.0, 2.0}), w = leaf({3.0, -1.0}), unused = leaf({5.0});
  std::vector<std::string> fired;
  std::vector<double> x_grad_seen;
  add_grad_ready_hook(x, [&](const Tensor& t) {
    fired.push_back("x");
    x_grad_seen = {t.grad().data<double>()[0], t.grad().data<double>()[1]};
  });
  add_grad_ready_hook(w, [&](const Tensor&) { fired.push_back("w"); });
  add_grad_ready_hook(unused, [&](const Tensor&) { fired.push_back("unused"); });
  Tensor a = mul(x, x);                   // d/dx: 2x
  Tensor b = mul(exp(scale(x, 0.5)), w);  // d/dx: 0.5 e^{x/2} w
  sum(add(a, b)).backward();
  REQUIRE(fired == std::vector<std::string>{"w", "x"});
  // The hook saw the complete gradient, not a partial sum.
  CHECK(x_grad_seen[0] == Approx(2 * 1.0 + 0.5 * std::exp(0.5) * 3.0).epsilon(1e-14));
  CHECK(x_grad_seen[1] == Approx(2 * 2.0 - 0.5 * std::exp(1.0)).epsilon(1e-14));
  // Once per walk; a second backward fires again; cleared hooks do not.
  sum(mul(w, w)).backward();
  CHECK(fired.size() == 3);
  clear_grad_ready_hooks(w);
  sum(mul(w, w)).backward();
  CHECK(fired.size() == 3);
}

TEST_CASE("a grad-ready hook does not fire for a leaf whose edges passed no gradient",
          "[autograd]") {
  // An op whose backward gives x nothing (as the DINO loss gives its teacher input).
  Tensor x = leaf({1.0, 4.0}), y = leaf({2.0});
  int x_fired = 0, y_fired = 0;
  add_grad_ready_hook(x, [&](const Tensor&) { ++x_fired; });
  add_grad_ready_hook(y, [&](const Tensor&) { ++y_fired; });
  Tensor out = Tensor::from_vector(std::vector<double>{2.0}, {1});
  record(out, "only_y", {x, y}, [](const Tensor& g) { return std::vector<Tensor>{Tensor(), g}; });
  sum(out).backward();
  CHECK_FALSE(x.grad().defined());
  CHECK(x_fired == 0);
  CHECK(y_fired == 1);
  CHECK_THROWS_WITH(add_grad_ready_hook(scale(x, 2.0), [](const Tensor&) {}),
                    Catch::Contains("leaf"));
}
