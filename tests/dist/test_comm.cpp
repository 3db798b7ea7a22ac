// The MPI communicator on any number of ranks: every collective against the result computed
// from every rank's inputs (which each rank regenerates), and the ranks' results against each
// other (all ranks must hold the same bits).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "tests/dist/dist_fixture.h"

using namespace dino;
using namespace dino::test;
using dist::ReduceOp;

namespace {

// Every rank's copy of t, gathered: (size, n) on the host.
Tensor gathered(dist::Communicator& c, const Tensor& t) {
  Tensor out = Tensor::empty({int64_t(c.size()) * t.numel()}, t.dtype());
  c.all_gather(out, t.reshape({t.numel()}));
  return out;
}

std::vector<double> as_doubles(const Tensor& t) {
  const Tensor d = t.to(DType::f64);
  return std::vector<double>(d.data<double>(), d.data<double>() + d.numel());
}

void require_same_on_every_rank(dist::Communicator& c, const Tensor& t) {
  const Tensor all = gathered(c, t);
  const size_t bytes = t.nbytes();
  const auto* p = static_cast<const unsigned char*>(all.raw_data());
  for (int r = 1; r < c.size(); ++r) REQUIRE(std::memcmp(p, p + size_t(r) * bytes, bytes) == 0);
}

}  // namespace

TEST_CASE("all_reduce sums and averages f32 and f64 over the ranks", "[dist]") {
  dist::Communicator& c = host_comm();
  const DType dtype = GENERATE(DType::f32, DType::f64);
  const int64_t n = GENERATE(1, 7, 100003);
  const ReduceOp op = GENERATE(ReduceOp::sum, ReduceOp::mean);
  const uint64_t tag = 11 + uint64_t(n) * 3 + (dtype == DType::f64) + 2 * (op == ReduceOp::mean);
  Tensor t = rank_data(tag, c.rank(), n, dtype);
  c.all_reduce(t, op);
  const std::vector<double> got = as_doubles(t);
  std::vector<double> want(size_t(n), 0.0), magnitude(size_t(n), 0.0);
  for (int r = 0; r < c.size(); ++r) {
    const std::vector<double> x = as_doubles(rank_data(tag, r, n, dtype));
    for (int64_t i = 0; i < n; ++i) {
      want[size_t(i)] += x[size_t(i)];
      magnitude[size_t(i)] += std::fabs(x[size_t(i)]);
    }
  }
  const double div = op == ReduceOp::mean ? c.size() : 1.0;
  const double eps = dtype == DType::f32 ? 6e-8 : 1.2e-16;
  for (int64_t i = 0; i < n; ++i) {
    // f32 inputs are rounded once, then every partial sum rounds: (size + 1) eps x the sum of |x|.
    const double tol = (c.size() + 1) * eps * magnitude[size_t(i)] / div + 1e-30;
    REQUIRE(std::fabs(got[size_t(i)] - want[size_t(i)] / div) <= tol);
  }
  require_same_on_every_rank(c, t);
}

TEST_CASE("collectives started together can be waited for in any order", "[dist]") {
  dist::Communicator& c = host_comm();
  Tensor a = Tensor::full({1000}, double(c.rank() + 1)), b = Tensor::full({3}, 2.0, DType::f64);
  auto pa = c.start_all_reduce(a, ReduceOp::sum);
  auto pb = c.start_all_reduce(b, ReduceOp::mean);
  pb->wait();
  pa->wait();
  const double n = c.size();
  CHECK(a.to_vector()[999] == float(n * (n + 1) / 2));
  CHECK(b.to_vector()[2] == 2.0f);
}

TEST_CASE("broadcast copies the root's tensor to every rank, any dtype", "[dist]") {
  dist::Communicator& c = host_comm();
  const int root = c.size() - 1;
  Tensor f = rank_data(21, c.rank(), 513, DType::f32);
  c.broadcast(f, root);
  CHECK(f.to_vector() == rank_data(21, root, 513, DType::f32).to_vector());
  Tensor bytes = Tensor::empty({5}, DType::u8);
  for (int i = 0; i < 5; ++i) bytes.data<uint8_t>()[i] = uint8_t(c.rank() * 10 + i);
  c.broadcast(bytes, root);
  CHECK(int(bytes.data<uint8_t>()[4]) == root * 10 + 4);
}

TEST_CASE("all_gather places each rank's tensor at its rank", "[dist]") {
  dist::Communicator& c = host_comm();
  Tensor mine = rank_data(31, c.rank(), 37, DType::f64).reshape({37, 1});
  Tensor all = Tensor::empty({int64_t(c.size()) * 37, 1}, DType::f64);
  c.all_gather(all, mine);
  for (int r = 0; r < c.size(); ++r)
    CHECK(all.narrow(r * 37, 37).to_vector() == rank_data(31, r, 37, DType::f64).to_vector());
  CHECK_THROWS_WITH(c.all_gather(Tensor::empty({36, 1}, DType::f64), mine),
                    Catch::Contains("must hold"));
  c.barrier();
}

TEST_CASE("the MPI communicator refuses what it cannot reduce", "[dist]") {
  dist::Communicator& c = host_comm();
  CHECK_THROWS_WITH(c.all_reduce(Tensor::zeros({2}, DType::bf16), ReduceOp::sum),
                    Catch::Contains("f32 or f64"));
  CHECK_THROWS_WITH(c.all_reduce(Tensor(), ReduceOp::sum), Catch::Contains("undefined"));
}
