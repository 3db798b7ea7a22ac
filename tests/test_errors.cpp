// User errors end in one message that names the op (ARCHITECTURE §2).
#include <catch2/catch.hpp>

#include "core/ops.h"
#include "core/rng.h"
#include "core/storage.h"

using namespace dino;

TEST_CASE("shape errors name the op and the sizes", "[errors]") {
  Rng rng(1);
  Tensor x = Tensor::randn({4, 384}, rng), w = Tensor::randn({383}, rng), b = Tensor::zeros({384});
  CHECK_THROWS_WITH(layer_norm(x, w, b, 1e-6),
                    "[layer_norm] weight has 383 elements, expected 384 (last dim of x)");
  CHECK_THROWS_WITH(add_layer_norm(x, Tensor::zeros({2, 383}), b, b, 1e-6),
                    "[add_layer_norm] branch (2, 383) does not match x (4, 384)");
  CHECK_THROWS_WITH(linear(x, Tensor::zeros({5, 100}), Tensor()), Catch::StartsWith("[linear]"));
  CHECK_THROWS_WITH(matmul(x, Tensor::zeros({5, 3})), Catch::StartsWith("[matmul] inner dims"));
  CHECK_THROWS_WITH(add(x, Tensor::zeros({3})), Catch::StartsWith("[add] shapes"));
  CHECK_THROWS_WITH(attention(Tensor::zeros({2, 5, 10}), 3), Catch::StartsWith("[attention]"));
  CHECK_THROWS_WITH(x.reshape({7, -1}), Catch::StartsWith("[reshape]"));
  CHECK_THROWS_WITH(x.narrow(3, 2), Catch::StartsWith("[narrow]"));
  CHECK_THROWS_WITH(add(x, x.to(DType::f64)), Catch::StartsWith("[add] mixes f32 and f64"));
  CHECK_THROWS_WITH(patchify(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({4, 1, 4, 4}), Tensor()),
                    Catch::StartsWith("[patchify] image has 3 channels"));
  CHECK_THROWS_WITH(
      dino_loss(Tensor::zeros({6, 8}), Tensor::zeros({4, 8}), Tensor::zeros({7}), 2, 0.1, 0.04),
      Catch::StartsWith("[dino_loss] center"));
}

TEST_CASE("CUDA requests without a usable GPU are clear errors", "[errors]") {
  if (cuda_available()) return;  // this check is about machines without a GPU
  CHECK_THROWS_WITH(Tensor::zeros({2}).to(Device::cuda), Catch::Contains("CUDA"));
}
