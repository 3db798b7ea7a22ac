// The KoLeo regulariser (losses/koleo.h): its value against the definition written out in
// double loops, its gradient against central differences, duplicate rows, and its refusals.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "losses/koleo.h"
#include "tests/gradcheck.h"

using namespace dino;
using namespace dino::testing;

namespace {

// DINOv2's KoLeoLoss on a (B, D) f64 tensor, spelt out: F.normalize(eps=1e-8), the first
// argmax of the dot products with the diagonal excluded, PairwiseDistance(eps=1e-8) (eps added
// to the difference), then -mean(log(d + 1e-8)).
double koleo_by_definition(const Tensor& x) {
  const int64_t B = x.size(0), D = x.size(1);
  const double* v = x.data<double>();
  std::vector<double> z(size_t(B * D));
  for (int64_t i = 0; i < B; ++i) {
    double n = 0;
    for (int64_t d = 0; d < D; ++d) n += v[i * D + d] * v[i * D + d];
    n = std::max(std::sqrt(n), 1e-8);
    for (int64_t d = 0; d < D; ++d) z[size_t(i * D + d)] = v[i * D + d] / n;
  }
  double total = 0;
  for (int64_t i = 0; i < B; ++i) {
    int64_t best = -1;
    double best_dot = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < B; ++j) {
      if (j == i) continue;
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += z[size_t(i * D + d)] * z[size_t(j * D + d)];
      if (dot > best_dot) best_dot = dot, best = j;
    }
    double s = 0;
    for (int64_t d = 0; d < D; ++d) {
      const double e = z[size_t(i * D + d)] - z[size_t(best * D + d)] + 1e-8;
      s += e * e;
    }
    total += std::log(std::sqrt(s) + 1e-8);
  }
  return -total / double(B);
}

}  // namespace

TEST_CASE("koleo: value equals DINOv2's definition, odd sizes", "[koleo]") {
  Rng rng(71);
  for (auto [B, D] : {std::pair<int64_t, int64_t>{2, 1}, {5, 3}, {13, 7}, {64, 33}}) {
    Tensor x = random_f64({B, D}, rng);
    INFO("B " << B << " D " << D);
    const double got = koleo_loss(x).item();
    CHECK(got == Approx(koleo_by_definition(x)).epsilon(1e-12));
  }
}

TEST_CASE("koleo: f32 agrees with f64", "[koleo]") {
  Rng rng(72);
  Tensor x = random_f64({37, 19}, rng);
  CHECK(koleo_loss(x.to(DType::f32)).item() == Approx(koleo_loss(x).item()).epsilon(1e-5));
}

TEST_CASE("grad: koleo (through the normalisation, both ends of each pair)", "[grad][koleo]") {
  Rng rng(73);
  for (auto [B, D] : {std::pair<int64_t, int64_t>{2, 3}, {7, 5}, {11, 4}}) {
    Tensor x = random_f64({B, D}, rng);
    x.set_requires_grad();
    gradcheck([](auto& in) { return koleo_loss(in[0]); }, {x});
  }
}

TEST_CASE("koleo: duplicate rows give a large finite value and finite gradients", "[koleo]") {
  // Two identical rows are each other's neighbour at distance ~ eps * sqrt(D): the eps inside
  // the difference keeps the square root's gradient finite, as in DINOv2.
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 1, 2, 3, -1, 0, 2}, {3, 3});
  x.set_requires_grad();
  Tensor loss = koleo_loss(x);
  REQUIRE(std::isfinite(loss.item()));
  CHECK(loss.item() > 10);
  loss.backward();
  for (float g : x.grad().to_vector()) CHECK(std::isfinite(g));
}

namespace {

// KoLeo as it was first written: neighbours searched on the host from the features read back,
// gathered as one-row views and concatenated (each row's gradient reaching its neighbour
// through narrow's backward, summed by autograd).
Tensor koleo_gathered_on_host(const Tensor& x) {
  const int64_t B = x.size(0), D = x.size(1);
  Tensor z = l2_normalize(x, 1e-8);
  const std::vector<float> v = z.to_vector();
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < B; ++i) {
    int64_t best = 0;
    double best_dot = -2;
    for (int64_t j = 0; j < B; ++j) {
      if (j == i) continue;
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += double(v[size_t(i * D + d)]) * v[size_t(j * D + d)];
      if (dot > best_dot) best_dot = dot, best = j;
    }
    rows.push_back(z.narrow(best, 1));
  }
  Tensor diff = add_scalar(sub(z, concat(rows)), 1e-8);
  Tensor dist = sqrt(sum_last(mul(diff, diff), false));
  return scale(mean(log(add_scalar(dist, 1e-8))), -1.0);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("koleo: f32 loss and gradient have the bits of the host search and row gather",
          "[koleo]") {
  // 128 rows in 8 dims: rows that are the neighbour of several others (whose gradient sums
  // several rows, in autograd's order) are certain.
  Rng rng(75);
  for (auto [B, D] : {std::pair<int64_t, int64_t>{2, 3}, {37, 7}, {128, 8}}) {
    INFO("B " << B << " D " << D);
    const Tensor x = random_f64({B, D}, rng).to(DType::f32);
    Tensor a = x.clone(), b = x.clone();
    a.set_requires_grad();
    b.set_requires_grad();
    Tensor index;
    nearest_row_diff(l2_normalize(x, 1e-8), &index);
    std::vector<int> chosen(size_t(B), 0);
    for (int64_t i = 0; i < B; ++i) ++chosen[size_t(index.data<int32_t>()[i])];
    if (B == 128) CHECK(*std::max_element(chosen.begin(), chosen.end()) >= 3);
    Tensor la = koleo_loss(a), lb = koleo_gathered_on_host(b);
    la.backward();
    lb.backward();
    CHECK(same_bits(la, lb));
    CHECK(same_bits(a.grad(), b.grad()));
  }
}

TEST_CASE("koleo: refuses fewer than two rows or a non-matrix", "[koleo]") {
  Rng rng(74);
  CHECK_THROWS_WITH(koleo_loss(random_f64({1, 4}, rng)), Catch::Contains("[koleo]"));
  CHECK_THROWS_WITH(koleo_loss(random_f64({2, 3, 4}, rng)), Catch::Contains("[koleo]"));
}
