// The GEMM-backed ops on CUDA beyond the op table's comparisons (tests/cuda/test_op_table.cpp):
// a Linear weight written in place is re-read, and weight_norm_linear and patchify refuse what
// they cannot take with errors that name them.
#include "core/ops.h"
#include "core/rng.h"
#include "tests/cuda/test_util.h"

using namespace dino;
using namespace dino::test;

TEST_CASE("linear on CUDA: the weight is re-read after an in-place update", "[ops][linear]") {
  // The GEMM reads the cached bf16 copy of W; writing W through copy_from must make the next
  // linear see the new values (a stale copy would still give the first product).
  Rng rng(511);
  const std::vector<float> x = random_floats(rng, 5 * 33), w1 = random_floats(rng, 65 * 33, 0.05),
                           w2 = random_floats(rng, 65 * 33, 0.05);
  const Tensor xg = Tensor::from_vector(x, {5, 33}).to(Device::cuda).to(DType::bf16);
  Tensor wg = Tensor::from_vector(w1, {65, 33}).to(Device::cuda);
  const Tensor y1 = linear(xg, wg, Tensor());
  wg.copy_from(Tensor::from_vector(w2, {65, 33}));
  const Tensor y2 = linear(xg, wg, Tensor());
  for (int k = 0; k < 2; ++k) {
    const std::vector<float>& w = k ? w2 : w1;
    std::vector<float> wr(w.size()), xr(x.size());
    for (size_t i = 0; i < w.size(); ++i) wr[i] = round_bf16(w[i]);
    for (size_t i = 0; i < x.size(); ++i) xr[i] = round_bf16(x[i]);
    const Tensor ref = linear(Tensor::from_vector(to_double(xr), {5, 33}),
                              Tensor::from_vector(to_double(wr), {65, 33}), Tensor());
    const std::vector<double> r = host_doubles(ref);
    expect_close(k ? "after the update" : "before the update", host_doubles(k ? y2 : y1), r,
                 2 * bf16_output_error(r) + 1e-3);
  }
}

TEST_CASE("weight_norm_linear on CUDA: validation", "[ops][linear]") {
  const Tensor x = Tensor::zeros({4, 33}).to(Device::cuda).to(DType::bf16);
  const Tensor v = Tensor::full({65, 33}, 1.0).to(Device::cuda);
  const Tensor g = Tensor::full({65, 1}, 1.0).to(Device::cuda);
  CHECK_THROWS_WITH(weight_norm_linear(x, v.to(DType::bf16), g),
                    Catch::StartsWith("[weight_norm_linear] v must be f32"));
  CHECK_THROWS_WITH(weight_norm_linear(x, v, Tensor::full({64, 1}, 1.0).to(Device::cuda)),
                    Catch::StartsWith("[weight_norm_linear] g has 64"));
  CHECK_THROWS_WITH(weight_norm_linear(x, Tensor::full({65, 32}, 1.0).to(Device::cuda), g),
                    Catch::StartsWith("[weight_norm_linear] x has 33"));
  CHECK_THROWS_WITH(weight_norm_linear(x, v.to(Device::cpu), g),
                    Catch::StartsWith("[weight_norm_linear] mixes cuda and cpu"));
}

TEST_CASE("patchify on CUDA: an image that requires grad is refused", "[ops][linear]") {
  Tensor img = Tensor::zeros({1, 3, 8, 8}).to(Device::cuda);
  img.set_requires_grad(true);
  const Tensor w = Tensor::zeros({4, 3, 4, 4}).to(Device::cuda);
  const Tensor b = Tensor::zeros({4}).to(Device::cuda);
  CHECK_THROWS_WITH(patchify(img, w, b), Catch::StartsWith("[patchify] img requires grad"));
  CHECK_THROWS_WITH(patchify(img.detach().to(DType::bf16), w, b),
                    Catch::StartsWith("[patchify] img must be f32"));
  CHECK_THROWS_WITH(patchify(img.detach(), w.to(Device::cpu), b),
                    Catch::StartsWith("[patchify] mixes cuda and cpu"));
}
