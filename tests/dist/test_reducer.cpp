// The gradient reducer on any number of ranks: a small MLP whose ranks see different batches;
// after finish() every rank's gradients equal the average of the gradients every rank's batch
// gives alone (computed here, rank by rank), over several steps, with buckets small enough
// that some start during the backward.
#include <catch2/catch.hpp>

#include "core/autograd.h"
#include "core/ops.h"
#include "dist/reducer.h"
#include "tests/dist/dist_fixture.h"

using namespace dino;
using namespace dino::test;

namespace {

using Named = std::vector<std::pair<std::string, Tensor>>;

Named make_mlp(uint64_t seed) {
  Rng rng(seed);
  Named m{{"fc1.weight", Tensor::randn({17, 9}, rng, 0.3, DType::f64)},
          {"fc1.bias", Tensor::randn({17}, rng, 0.1, DType::f64)},
          {"fc2.weight", Tensor::randn({5, 17}, rng, 0.3, DType::f64)},
          {"fc2.bias", Tensor::randn({5}, rng, 0.1, DType::f64)}};
  for (auto& [name, p] : m) p.set_requires_grad();
  return m;
}

Tensor loss_of(const Named& m, const Tensor& x) {
  const Tensor h = gelu(linear(x, m[0].second, m[1].second));
  const Tensor y = linear(h, m[2].second, m[3].second);
  return mean(mul(y, y));
}

Tensor batch_of(int rank, int step) {
  return rank_data(41 + uint64_t(step), rank, 6 * 9, DType::f64).reshape({6, 9});
}

// The average over the ranks of the gradient each rank's batch gives at these weights.
std::vector<double> as_doubles(const Tensor& t) {
  return std::vector<double>(t.data<double>(), t.data<double>() + t.numel());
}

std::vector<std::vector<double>> expected_grads(const Named& at, int ranks, int step) {
  std::vector<std::vector<double>> sum(at.size());
  for (int r = 0; r < ranks; ++r) {
    Named copy;
    for (const auto& [name, p] : at) {
      Tensor c = p.detach().clone();
      c.set_requires_grad();
      copy.push_back({name, c});
    }
    loss_of(copy, batch_of(r, step)).backward();
    for (size_t i = 0; i < copy.size(); ++i) {
      const std::vector<double> g = as_doubles(copy[i].second.grad());
      sum[i].resize(g.size(), 0.0);
      for (size_t j = 0; j < g.size(); ++j) sum[i][j] += g[j] / ranks;
    }
  }
  return sum;
}

}  // namespace

TEST_CASE("the reducer averages every gradient over the ranks, bucket by bucket", "[dist]") {
  dist::Communicator& c = host_comm();
  Named mlp = make_mlp(5);
  // 300 bytes: fc1.weight and fc2.weight get buckets of their own, the biases share one.
  dist::GradReducer reducer(c, mlp, 300);
  REQUIRE(reducer.buckets().size() >= 3);
  for (int step = 0; step < 3; ++step) {
    for (auto& [name, p] : mlp) p.zero_grad();
    reducer.prepare();
    const int64_t before = c.bytes_communicated();
    loss_of(mlp, batch_of(c.rank(), step)).backward();
    // The first bucket in backward order was complete long before the backward ended.
    CHECK(c.bytes_communicated() > before);
    reducer.finish();
    const auto want = expected_grads(mlp, c.size(), step);
    for (size_t i = 0; i < mlp.size(); ++i) {
      const std::vector<double> got = as_doubles(mlp[i].second.grad());
      REQUIRE(got.size() == want[i].size());
      INFO("step " << step << " " << mlp[i].first);
      for (size_t j = 0; j < got.size(); ++j)
        REQUIRE(got[j] == Approx(want[i][j]).epsilon(1e-12).margin(1e-15));
    }
    NoGradGuard no_grad;
    for (auto& [name, p] : mlp) {  // SGD, so the next step's gradients differ
      const std::vector<double> g = as_doubles(p.grad());
      double* w = p.data<double>();
      for (size_t j = 0; j < g.size(); ++j) w[j] -= 0.1 * g[j];
    }
  }
  CHECK(reducer.bytes_per_step() == int64_t((17 * 9 + 17 + 5 * 17 + 5) * sizeof(double)));
}

TEST_CASE("the reducer names a parameter the backward left without a gradient", "[dist]") {
  dist::Communicator& c = host_comm();
  Named mlp = make_mlp(6);
  Tensor unused = Tensor::zeros({3}, DType::f64);
  unused.set_requires_grad();
  Named with_unused = mlp;
  with_unused.push_back({"head.unused", unused});
  dist::GradReducer reducer(c, with_unused, 1 << 20);
  reducer.prepare();
  loss_of(mlp, batch_of(c.rank(), 0)).backward();
  CHECK_THROWS_WITH(reducer.finish(), Catch::Contains("head.unused"));
}
