// The KoLeo regulariser (losses/koleo.h) on CUDA against the CPU in float64
// (tests/cuda/op_check.h), forward and backward: f32 features, and bf16 features as the CUDA
// backbone hands them over (the op then works in f32). Odd sizes next to the training size.
#include "losses/koleo.h"
#include "tests/cuda/op_check.h"

using namespace dino;
using namespace dino::test;

namespace {

OpCase koleo_case(const Shape& x, DType dt) {
  return {str_cat("koleo ", shape_str(x), " ", dtype_name(dt)),
          {{x, dt, true}},
          [](const std::vector<Tensor>& in) { return koleo_loss(in[0]); },
          DType::f32};
}

}  // namespace

TEST_CASE("koleo on CUDA", "[ops][koleo]") {
  uint64_t seed = 7100;
  check_op(koleo_case({2, 3}, DType::f32), seed++);
  check_op(koleo_case({37, 33}, DType::f32), seed++);
  check_op(koleo_case({37, 33}, DType::bf16), seed++);
  check_op(koleo_case({64, 128}, DType::bf16), seed++);
}
