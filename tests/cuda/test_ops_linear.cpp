// The GEMM-backed ops on CUDA (linear, matmul, weight_norm, weight_norm_linear, patchify)
// against the CPU in float64, forward and backward, through tests/cuda/op_check.h.
//
// Precision (ARCHITECTURE §3): linear and matmul write bf16; weight_norm_linear
// writes f32 logits; patchify writes the f32 residual stream. Every GEMM reads bf16, so the
// f32 inputs a GEMM reads (weights, f32 activations, the images) are marked bf16_operand and
// the reference multiplies the same rounded values; a product of exact bf16 values summed in
// fp32 is then far inside the default f32_tol of 1e-5.
//
// Two places round values the reference cannot see, and those cases state a looser f32_tol:
//  - an f32 upstream gradient (weight_norm_linear's logits, patchify's tokens) is rounded to
//    bf16 on the device before its GEMMs;
//  - weight_norm_linear's w = g v / ||v|| is computed in f32 on the device and rounded to bf16.
// Rounding one factor of every product to bf16 (8 significant bits, relative error uniform in
// about ±2^-9 and sign-random) leaves a relative L2 error of about 1.6e-3 in the sums, two
// rounded factors about 2.4e-3 (measured with numpy for these shapes: 1.57e-3 .. 1.67e-3 and
// 2.39e-3 .. 2.49e-3). Those results get f32_tol = 6e-3, 2.5x the two-rounding error and
// still ~4x below what a wrong transpose or a missed row would give (O(1)).
#include <catch2/catch.hpp>

#include "core/ops.h"
#include "tests/cuda/op_check.h"

using namespace dino;
using namespace dino::test;

namespace {

// The relative error of an f32 result built from bf16-rounded factors the reference does not
// round (see the top of the file).
constexpr double kRoundedFactorTol = 6e-3;

OpCase linear_case(const Shape& x_shape, int64_t out, DType x_dtype, bool with_bias,
                   bool weight_grad = true) {
  const int64_t in = x_shape.back();
  OpCase c;
  c.name = str_cat("linear x ", shape_str(x_shape), " ", dtype_name(x_dtype), " w (", out, ", ",
                   in, ")", with_bias ? " + b" : "", weight_grad ? "" : ", frozen w");
  // x: N(0, 1); W: trunc-normal-like scale 0.05 (a ViT Linear); b: 0.5. The GPU reads all
  // three as bf16 (the bias too: cuBLASLt's bias epilogue has the output's type).
  c.inputs.push_back({x_shape, x_dtype, true, 1.0, 0.0, /*bf16_operand=*/true});
  c.inputs.push_back({{out, in}, DType::f32, weight_grad, 0.05, 0.0, true});
  if (with_bias) c.inputs.push_back({{out}, DType::f32, true, 0.5, 0.0, true});
  c.fn = [with_bias](const std::vector<Tensor>& t) {
    return linear(t[0], t[1], with_bias ? t[2] : Tensor());
  };
  c.out_dtype = DType::bf16;
  return c;
}

}  // namespace

TEST_CASE("linear on CUDA: bf16 out, f32 and bf16 x, 2-D and 3-D, odd and ViT sizes",
          "[ops][linear]") {
  uint64_t seed = 501;
  // Odd sizes: in = 33, out = 65 (no 16-byte alignment anywhere), rows 1, 37, 197.
  for (const int64_t rows : {1, 37, 197}) {
    check_op(linear_case({rows, 33}, 65, DType::f32, true), seed++);
    check_op(linear_case({rows, 33}, 65, DType::bf16, true), seed++);
  }
  check_op(linear_case({37, 33}, 65, DType::f32, false), seed++);
  check_op(linear_case({2, 37, 33}, 65, DType::bf16, true), seed++);
  check_op(linear_case({3, 1, 33}, 65, DType::f32, true), seed++);
  // A frozen weight: only dx and db (db still from the bias-gradient epilogue).
  check_op(linear_case({37, 33}, 65, DType::bf16, true, /*weight_grad=*/false), seed++);
  // ViT-S qkv: 384 -> 1152 on a 224-pixel crop's 197 tokens, 2-D f32 and 3-D bf16 (2 images).
  check_op(linear_case({197, 384}, 1152, DType::f32, true), seed++);
  check_op(linear_case({2, 197, 384}, 1152, DType::bf16, true), seed++);
  // MLP fc2 (1536 -> 384) on 96-pixel crops' 37 tokens.
  check_op(linear_case({4, 37, 1536}, 384, DType::bf16, true), seed++);
}

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

TEST_CASE("matmul on CUDA: bf16 out, batched, strided and shared right operand",
          "[ops][linear]") {
  uint64_t seed = 521;
  auto mm = [](const std::vector<Tensor>& t) { return matmul(t[0], t[1]); };
  struct MatmulShape {
    Shape a, b;
    DType dtype;
  };
  const MatmulShape shapes[] = {
      {{37, 33}, {33, 65}, DType::bf16},                 // plain 2-D, odd sizes
      {{3, 37, 33}, {3, 33, 65}, DType::bf16},           // strided batch
      {{2, 3, 37, 32}, {2, 3, 32, 37}, DType::bf16},     // attention-like scores (B, H, N, N)
      {{2, 3, 50, 50}, {2, 3, 50, 32}, DType::f32},      // probs @ v, f32 inputs
      {{3, 37, 33}, {33, 65}, DType::f32},               // shared b: the batch folds into rows
      {{2, 1, 33}, {33, 1}, DType::bf16},                // one row, one column
  };
  for (const MatmulShape& s : shapes) {
    OpCase c;
    c.name = str_cat("matmul ", shape_str(s.a), " @ ", shape_str(s.b), " ", dtype_name(s.dtype));
    c.inputs = {{s.a, s.dtype, true, 1.0, 0.0, true}, {s.b, s.dtype, true, 1.0, 0.0, true}};
    c.fn = mm;
    c.out_dtype = DType::bf16;
    check_op(c, seed++);
  }
  // Mixed dtypes: an f32 left operand and a bf16 right one.
  OpCase c;
  c.name = "matmul (3, 37, 33) f32 @ (3, 33, 65) bf16";
  c.inputs = {{{3, 37, 33}, DType::f32, true, 1.0, 0.0, true},
              {{3, 33, 65}, DType::bf16, true}};
  c.fn = mm;
  c.out_dtype = DType::bf16;
  check_op(c, seed++);
}

TEST_CASE("weight_norm on CUDA: f32 out, dv and dg", "[ops][linear]") {
  uint64_t seed = 531;
  for (const Shape& v : {Shape{65, 33}, Shape{1, 7}, Shape{300, 256}}) {
    OpCase c;
    c.name = str_cat("weight_norm v ", shape_str(v));
    c.inputs = {{v, DType::f32, true}, {{v[0], 1}, DType::f32, true, 0.5, 1.0}};
    c.fn = [](const std::vector<Tensor>& t) { return weight_norm(t[0], t[1]); };
    c.out_dtype = DType::f32;
    check_op(c, seed++);  // all f32 arithmetic: the default 1e-5
  }
}

TEST_CASE("weight_norm_linear on CUDA: f32 logits, frozen and trained gain", "[ops][linear]") {
  uint64_t seed = 541;
  struct WnlShape {
    Shape x;
    int64_t K;
    DType x_dtype;
    bool g_trained;
  };
  const WnlShape shapes[] = {
      {{37, 33}, 65, DType::bf16, false},    // norm_last_layer: g frozen at 1
      {{37, 33}, 65, DType::bf16, true},     // g trained
      {{1, 33}, 65, DType::f32, true},       // one row, f32 x
      {{2, 5, 33}, 65, DType::f32, false},   // 3-D x
      {{64, 256}, 4096, DType::bf16, false}, // the head's real shape (K = 4096 recipe), B = 64
  };
  for (const WnlShape& s : shapes) {
    const int64_t C = s.x.back();
    OpCase c;
    c.name = str_cat("weight_norm_linear x ", shape_str(s.x), " ", dtype_name(s.x_dtype), " v (",
                     s.K, ", ", C, ")", s.g_trained ? ", g trained" : ", g frozen at 1");
    // x: unit-scale rows (the head's input is l2-normalised; scale does not matter here).
    c.inputs.push_back({s.x, s.x_dtype, true, 1.0, 0.0, /*bf16_operand=*/true});
    // v: PyTorch's default init scale does not matter either: w is normalised per row.
    c.inputs.push_back({{s.K, C}, DType::f32, true});
    // g: exactly 1 (scale 0, shift 1) when frozen, as norm_last_layer keeps it.
    c.inputs.push_back(s.g_trained ? OpInput{{s.K, 1}, DType::f32, true, 0.5, 1.0}
                                   : OpInput{{s.K, 1}, DType::f32, false, 0.0, 1.0});
    c.fn = [](const std::vector<Tensor>& t) { return weight_norm_linear(t[0], t[1], t[2]); };
    c.out_dtype = DType::f32;
    // The logits multiply x by bf16(w) (w computed on the device): one rounded factor the
    // reference does not see; dx multiplies bf16(dy) by bf16(w) (two), dv and dg come from
    // bf16(dy)^T x (one). See the top of the file.
    c.f32_tol = kRoundedFactorTol;
    // A bf16 dx carries those two roundings (~2.4e-3) on top of its own output rounding, which
    // the bf16 tolerance (2x the output rounding) does not cover alone: a 3e-3 floor.
    c.bf16_floor = 3e-3;
    check_op(c, seed++);
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

TEST_CASE("patchify on CUDA: f32 tokens, dW and db", "[ops][linear]") {
  uint64_t seed = 551;
  struct PatchShape {
    int64_t B, C, H, W, P, D;
  };
  const PatchShape shapes[] = {
      {2, 1, 28, 28, 4, 33},     // MNIST-like, patch 4, odd D
      {3, 3, 28, 28, 4, 64},     // CIFAR-like channels
      {1, 3, 30, 29, 4, 65},     // H, W not multiples of P: the border pixels are dropped
      {2, 3, 224, 224, 16, 384}, // ViT-S/16 on a global crop
      {2, 1, 224, 224, 16, 384}, // one channel
      {2, 3, 96, 96, 16, 384},   // a local crop
  };
  for (const PatchShape& s : shapes) {
    for (const bool train : {false, true}) {
      OpCase c;
      c.name = str_cat("patchify img (", s.B, ", ", s.C, ", ", s.H, ", ", s.W, ") P ", s.P, " D ",
                       s.D, train ? " (backward)" : " (forward)");
      // The images and W are GEMM operands (bf16 on the device); the bias is added in f32 by
      // the fp32-output GEMM's epilogue, so it is not rounded. Images never take a gradient.
      c.inputs = {{{s.B, s.C, s.H, s.W}, DType::f32, false, 1.0, 0.0, true},
                  {{s.D, s.C, s.P, s.P}, DType::f32, train, 0.1, 0.0, true},
                  {{s.D}, DType::f32, train, 0.5}};
      c.fn = [](const std::vector<Tensor>& t) { return patchify(t[0], t[1], t[2]); };
      c.out_dtype = DType::f32;
      // Forward alone: exact bf16 products summed in fp32, the default 1e-5. With the
      // backward, dW and db read the f32 upstream gradient rounded to bf16 (one rounded
      // factor, see the top of the file); the forward is then checked at that tolerance too.
      if (train) c.f32_tol = kRoundedFactorTol;
      check_op(c, seed++);
    }
  }
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
