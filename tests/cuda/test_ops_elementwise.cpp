// The elementwise ops on CUDA beyond the op table's comparisons (tests/cuda/test_op_table.cpp):
// the sums are bit-identical across runs, bf16 zeros and full write every element, and the ops
// refuse what they cannot take with errors that name them.
#include <cmath>
#include <cstring>

#include "core/ops.h"
#include "core/ops_util.h"  // detail::sum_to
#include "tests/cuda/test_util.h"

using namespace dino;
using namespace dino::test;

namespace {

constexpr DType F = DType::f32, H = DType::bf16;

}  // namespace

TEST_CASE("sum, mean, sum_last and sum_to on CUDA are bit-identical across runs",
          "[ops][elementwise][reduce]") {
  Rng rng(800);
  for (DType dt : {F, H}) {
    INFO(dtype_name(dt));
    const int64_t n = 3 * (1 << 20) + 123;
    Tensor x = Tensor::from_vector(random_floats(rng, size_t(n)), {n}).to(Device::cuda).to(dt);
    Tensor rows = x.narrow(0, 3000 * 1000).reshape({3000, 1000});
    auto bits = [](const Tensor& t) {
      const std::vector<float> v = t.to_vector();
      std::vector<uint32_t> b(v.size());
      std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
      return b;
    };
    CHECK(bits(sum(x)) == bits(sum(x)));
    CHECK(bits(mean(x)) == bits(mean(x)));
    CHECK(bits(sum_last(rows)) == bits(sum_last(rows)));
    CHECK(bits(detail::sum_to(rows, {1, 1000})) == bits(detail::sum_to(rows, {1, 1000})));
    CHECK(bits(detail::sum_to(rows, {1})) == bits(detail::sum_to(rows, {1})));
    // And the value is the sum (f32 accumulation against the double reference).
    const std::vector<float> h = x.to_vector();
    double ref = 0;
    for (float v : h) ref += double(v);
    CHECK(std::fabs(sum(x).item() - ref) <= 1e-4 * std::sqrt(double(n)));
  }
}

TEST_CASE("bf16 zeros and full on CUDA", "[ops][elementwise]") {
  cu::set_poison_allocations(true);
  Tensor z = Tensor::zeros({37, 33}, H, Device::cuda);
  Tensor f = Tensor::full({197}, -1.5, H, Device::cuda);
  cu::set_poison_allocations(false);
  for (float v : z.to_vector()) REQUIRE(v == 0.f);
  for (float v : f.to_vector()) REQUIRE(v == -1.5f);
}

TEST_CASE("elementwise ops on CUDA reject what they cannot take", "[ops][elementwise]") {
  Tensor a = Tensor::full({3}, 1.0, F, Device::cuda);
  Tensor host = Tensor::full({3}, 1.0, F, Device::cpu);
  Tensor ints = Tensor::empty({3}, DType::i32, Device::cuda);
  CHECK_THROWS_WITH(add(a, host), Catch::Contains("[add]"));
  CHECK_THROWS_WITH(mul(a, ints), Catch::Contains("[mul] b must be f32 or bf16"));
  CHECK_THROWS_WITH(add(a, Tensor::full({4}, 1.0, F, Device::cuda)),
                    Catch::Contains("do not broadcast"));
  CHECK_THROWS_WITH(exp(ints), Catch::Contains("[exp]"));
  CHECK_THROWS_WITH(sum(ints), Catch::Contains("[sum]"));
}
