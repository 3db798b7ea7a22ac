// linear_gelu's fused GELU backward + bias gradient (kernels/cuda/linear_gelu.cu), launched
// alone, on what the op check (tests/cuda/test_op_table.cpp) cannot see: dpre has the bits of
// the unfused GELU backward (the unary op's kernel), the bias gradient is the column sum of
// that stored dpre (f32 accumulation against a double reference), and a second launch gives
// the same bits. Outputs are poisoned with NaN, sizes odd (O = 33, 37, 65: the element path;
// O = 256: the 16-byte path), rows 1 to 197.
#include <cmath>
#include <cstring>

#include "core/backend.h"
#include "tests/cuda/test_util.h"

using namespace dino;
using namespace dino::test;

namespace {

std::vector<uint16_t> bits_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu);
  std::vector<uint16_t> b(size_t(h.numel()));
  std::memcpy(b.data(), h.raw_data(), b.size() * sizeof(uint16_t));
  return b;
}

}  // namespace

TEST_CASE("gelu_bias_backward: unfused dpre bits, column sums, deterministic", "[linear_gelu]") {
  const Backend& be = backend(Device::cuda);
  Rng rng(1531);
  const std::pair<int64_t, int64_t> shapes[] = {{1, 33}, {37, 65}, {197, 37}, {64, 256}};
  for (const auto& [R, O] : shapes) {
    INFO("R = " << R << ", O = " << O);
    const Tensor dout = Tensor::from_vector(random_floats(rng, size_t(R * O)), {R, O})
                            .to(DType::bf16)
                            .to(Device::cuda);
    const Tensor pre = Tensor::from_vector(random_floats(rng, size_t(R * O), 2.0), {R, O})
                           .to(DType::bf16)
                           .to(Device::cuda);
    cu::set_poison_allocations(true);
    const Tensor dpre = Tensor::empty({R, O}, DType::bf16, Device::cuda);
    const Tensor db = Tensor::empty({O}, DType::f32, Device::cuda);
    const Tensor dpre2 = Tensor::empty({R, O}, DType::bf16, Device::cuda);
    const Tensor db2 = Tensor::empty({O}, DType::f32, Device::cuda);
    const Tensor unfused = Tensor::empty({R, O}, DType::bf16, Device::cuda);
    const Tensor dpre_only = Tensor::empty({R, O}, DType::bf16, Device::cuda);
    cu::set_poison_allocations(false);
    be.gelu_bias_backward(dpre, db, dout, pre);
    be.gelu_bias_backward(dpre2, db2, dout, pre);
    be.gelu_bias_backward(dpre_only, Tensor(), dout, pre);  // no bias gradient wanted
    be.unary_backward(unfused, UnaryOp::gelu, dout, pre, Tensor(), 0.0);

    const std::vector<uint16_t> d = bits_of(dpre);
    CHECK(d == bits_of(unfused));
    CHECK(d == bits_of(dpre2));
    CHECK(d == bits_of(dpre_only));
    const std::vector<float> s = db.to_vector(), s2 = db2.to_vector();
    CHECK(std::memcmp(s.data(), s2.data(), s.size() * sizeof(float)) == 0);

    const std::vector<float> dh = dpre.to_vector();
    std::vector<double> ref(size_t(O), 0.0), got(s.begin(), s.end());
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < O; ++c) ref[size_t(c)] += double(dh[size_t(r * O + c)]);
    for (float v : dh) REQUIRE(std::isfinite(v));
    expect_close("db", got, ref, 1e-5);
  }
}
