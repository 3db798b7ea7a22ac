// The data-movement ops on CUDA beyond the op table's comparisons (tests/cuda/test_op_table.cpp):
// they refuse what they cannot take with errors that name them.
#include "core/ops.h"
#include "tests/cuda/test_util.h"

using namespace dino;
using namespace dino::test;

namespace {

constexpr DType F = DType::f32, H = DType::bf16;

}  // namespace

TEST_CASE("shape ops on CUDA reject what they cannot take", "[ops][shape]") {
  Tensor x = Tensor::full({2, 3, 4}, 1.0, F, Device::cuda);
  CHECK_THROWS_WITH(permute(x, {0, 0, 1}), Catch::Contains("[permute]"));
  CHECK_THROWS_WITH(prepend_token(x, Tensor::full({1, 1, 4}, 1.0, H, Device::cuda)),
                    Catch::Contains("[prepend_token]"));
  CHECK_THROWS_WITH(select_token(x, 3), Catch::Contains("[select_token]"));
  CHECK_THROWS_WITH(permute(Tensor::empty({2, 3}, DType::u8, Device::cuda), {1, 0}),
                    Catch::Contains("[permute]"));
}
