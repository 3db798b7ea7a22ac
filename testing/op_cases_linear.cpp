// The GEMM-backed ops: linear, linear_gelu, linear_drop_path, matmul, weight_norm,
// weight_norm_linear, patchify; and the GEMM benchmark's ViT-S layers (`dino bench gemm`, set
// "vit").
//
// Precision (ARCHITECTURE §3): linear and matmul write bf16; weight_norm_linear writes f32
// logits; patchify writes the f32 residual stream. Every GEMM reads bf16, so the f32 inputs a
// GEMM reads (weights, f32 activations, the images) are marked bf16_operand and the reference
// multiplies the same rounded values; a product of exact bf16 values summed in fp32 is then far
// inside the default f32 tolerance of 1e-5.
//
// Two places round values the reference cannot see, and those cases state a looser f32 bound:
//  - an f32 upstream gradient (weight_norm_linear's logits, patchify's tokens) is rounded to
//    bf16 on the device before its GEMMs;
//  - weight_norm_linear's w = g v / ||v|| is computed in f32 on the device and rounded to bf16.
// Rounding one factor of every product to bf16 (8 significant bits, relative error uniform in
// about ±2^-9 and sign-random) leaves a relative L2 error of about 1.6e-3 in the sums, two
// rounded factors about 2.4e-3 (measured with numpy for these shapes: 1.57e-3 .. 1.67e-3 and
// 2.39e-3 .. 2.49e-3). Those results get 6e-3, 2.5x the two-rounding error and still ~4x below
// what a wrong transpose or a missed row would give (O(1)).
#include "core/error.h"
#include "core/ops.h"
#include "testing/op_cases.h"

namespace dino::testing {

namespace {

constexpr DType F = DType::f32, H = DType::bf16;
constexpr double kRoundedFactorTol = 6e-3;

// The inputs of a Linear's cases (linear, linear_gelu, linear_drop_path): x N(0, 1), W (out, in)
// trunc-normal-like scale 0.05 (a ViT Linear), b 0.5 when wanted. The GPU reads all three as
// bf16 (the bias too: cuBLASLt's bias epilogue has the output's type).
std::vector<OpInput> linear_inputs(const Shape& x, int64_t out, DType x_dtype, bool bias,
                                   bool weight_grad = true) {
  std::vector<OpInput> inputs = {{x, x_dtype, true, 1.0, 0.0, true},
                                 {{out, x.back()}, F, weight_grad, 0.05, 0.0, true}};
  if (bias) inputs.push_back({{out}, F, true, 0.5, 0.0, true});
  return inputs;
}

OpCase linear_case(const Shape& x, int64_t out, DType x_dtype, bool bias, bool weight_grad = true) {
  const int64_t in = x.back();
  OpCase c = op_case(
      "linear", linear_inputs(x, out, x_dtype, bias, weight_grad),
      [bias](const Inputs& t) { return linear(t[0], t[1], bias ? t[2] : Tensor()); }, H);
  c.dims = {shape_numel(x) / in, in, out};  // the GEMM tests' (rows, in, out)
  // Exact bf16 products summed in fp32: a bf16 result is its own rounding, twice, plus 1e-4.
  c.tol.bf16_floor = 1e-4;
  return c;
}

// gelu(x W^T + b) as one op, inputs as linear_case's. On the device the pre-activation is
// rounded to bf16 before the GELU and dpre = dy gelu'(pre) is rounded to bf16 before the
// products and the bias sum: roundings inside the op that the float64 reference does not see.
// Measured on the emulator for these cases: dW and db (f32, from the rounded dpre) 1.7e-3 ..
// 2.6e-3, under the f32 bound of 6e-3; the bf16 output and dx 2.4e-3 .. 2.8e-3, the inner
// rounding on top of their own, which 2x the output rounding alone does not cover: a 3e-3
// floor, as weight_norm_linear's. A wrong derivative or a lost row of the bias sum is off by
// O(0.1) (a bias sum missing one column in eight of each lane: 0.35).
OpCase linear_gelu_case(const Shape& x, int64_t out, DType x_dtype, bool bias) {
  const int64_t in = x.back();
  OpCase c = op_case(
      "linear_gelu", linear_inputs(x, out, x_dtype, bias),
      [bias](const Inputs& t) { return linear_gelu(t[0], t[1], bias ? t[2] : Tensor()); }, H);
  c.dims = {shape_numel(x) / in, in, out};
  c.tol.f32 = kRoundedFactorTol;
  c.tol.bf16_floor = 3e-3;
  return c;
}

// drop_path(x W^T + b, p) as one op (proj and fc2 in training), inputs as linear_case's; x is
// (B, rows per sample, in), so whole samples are kept or dropped. Both sides draw the same masks:
// nonce 1234, call 0 (tests/cuda/test_linear_drop_path.cpp checks that every case's mask drops
// some samples and keeps others). On the device the product is rounded to bf16 before the
// scaling and dy = g / (1 - p) is rounded to bf16 before the products and the bias sum:
// roundings inside the op that the float64 reference does not see, as linear_gelu's, so its
// bounds. Measured on the emulator for these cases: at p = 0.1 the bf16 output and dx 2.4e-3,
// dW and db (f32) 1.1e-3 .. 2.0e-3; at p = 0.5 (an exact scale of 2) 1.7e-3 and under 1e-8.
// A sample given the wrong mask is off by O(1). dims: B, rows per sample, in, out, p in percent.
OpCase linear_drop_path_case(const Shape& x, int64_t out, DType x_dtype, bool bias, int p_percent) {
  const int64_t in = x.back();
  const double p = p_percent / 100.0;
  OpCase c = op_case(
      "linear_drop_path", linear_inputs(x, out, x_dtype, bias),
      [bias, p](const Inputs& t) {
        DropPathNoise noise = make_drop_path_noise(1234, t[0].device());
        return linear_drop_path(t[0], t[1], bias ? t[2] : Tensor(), p, noise);
      },
      H, str_cat("p ", p));
  c.dims = {x[0], shape_numel(x) / (x[0] * in), in, out, p_percent};
  c.tol.f32 = kRoundedFactorTol;
  c.tol.bf16_floor = 3e-3;
  return c;
}

// x (rows, C) times w = g v / ||v|| (K, C): f32 logits. g exactly 1 (scale 0, shift 1) when
// frozen, as norm_last_layer keeps it.
OpCase weight_norm_linear_case(const Shape& x, int64_t K, DType x_dtype, bool g_trained) {
  const int64_t C = x.back();
  OpCase c = op_case(
      "weight_norm_linear",
      {{x, x_dtype, true, 1.0, 0.0, true},
       {{K, C}, F, true},
       g_trained ? OpInput{{K, 1}, F, true, 0.5, 1.0} : OpInput{{K, 1}, F, false, 0.0, 1.0}},
      [](const Inputs& t) { return weight_norm_linear(t[0], t[1], t[2]); }, F);
  // The logits multiply x by bf16(w) (w computed on the device): one rounded factor the
  // reference does not see; dx multiplies bf16(dy) by bf16(w) (two), dv and dg come from
  // bf16(dy)^T x (one). A bf16 dx carries those two roundings (~2.4e-3) on top of its own
  // output rounding, which 2x the output rounding does not cover alone: a 3e-3 floor.
  c.tol.f32 = kRoundedFactorTol;
  c.tol.bf16_floor = 3e-3;
  return c;
}

void add_linear(std::vector<OpCase>& c) {
  // Odd sizes: in = 33, out = 65 (no 16-byte alignment anywhere), rows 1, 37, 197.
  for (const int64_t rows : {1, 37, 197}) {
    c.push_back(linear_case({rows, 33}, 65, F, true));
    c.push_back(linear_case({rows, 33}, 65, H, true));
  }
  c.push_back(linear_case({37, 33}, 65, F, false));
  c.push_back(linear_case({2, 37, 33}, 65, H, true));
  c.push_back(linear_case({3, 1, 33}, 65, F, true));
  // A frozen weight: only dx and db (db still from the bias-gradient epilogue).
  c.push_back(linear_case({37, 33}, 65, H, true, /*weight_grad=*/false));
  // ViT-S qkv: 384 -> 1152 on a 224-pixel crop's 197 tokens, 2-D f32 and 3-D bf16 (2 images).
  c.push_back(linear_case({197, 384}, 1152, F, true));
  c.push_back(linear_case({2, 197, 384}, 1152, H, true));
  // MLP fc2 (1536 -> 384) on 96-pixel crops' 37 tokens.
  c.push_back(linear_case({4, 37, 1536}, 384, H, true));
  // More odd sizes (out = 37), the qkv on a local crop, fc1 (384 -> 1536) on two global
  // crops' tokens, the head's last MLP layer (2048 -> 256) on a batch of 64.
  c.push_back(linear_case({1, 33}, 37, H, true));
  c.push_back(linear_case({197, 33}, 37, H, true));
  c.push_back(linear_case({37, 384}, 1152, H, true));
  c.push_back(linear_case({394, 384}, 1536, H, true));
  c.push_back(linear_case({64, 2048}, 256, H, true));
}

void add_linear_gelu(std::vector<OpCase>& c) {
  // Odd sizes (out = 65 and 37: the kernel's element path), one row, 3-D x, f32 and bf16 x.
  for (const int64_t rows : {1, 37, 197}) {
    c.push_back(linear_gelu_case({rows, 33}, 65, F, true));
    c.push_back(linear_gelu_case({rows, 33}, 65, H, true));
  }
  c.push_back(linear_gelu_case({2, 37, 33}, 37, H, true));
  c.push_back(linear_gelu_case({37, 33}, 65, F, false));  // no bias: dpre alone
  // Rows over more than one chunk and out % 8 == 0 (the 16-byte path): fc1 (384 -> 1536) on 37
  // tokens, the head's first layer (384 -> 2048) on a batch of 64.
  c.push_back(linear_gelu_case({37, 384}, 1536, H, true));
  c.push_back(linear_gelu_case({64, 384}, 2048, H, true));
}

void add_linear_drop_path(std::vector<OpCase>& c) {
  // Odd sizes (out = 65 and 37: the kernel's element path), one row per sample, f32 and bf16 x,
  // p = 0.1 and 0.5, no bias.
  for (const int p : {10, 50}) {
    c.push_back(linear_drop_path_case({37, 5, 33}, 65, F, true, p));
    c.push_back(linear_drop_path_case({37, 5, 33}, 65, H, true, p));
  }
  c.push_back(linear_drop_path_case({37, 1, 33}, 37, H, true, 10));
  c.push_back(linear_drop_path_case({9, 7, 33}, 65, F, false, 50));
  // out % 8 == 0 (the 16-byte path) and rows over more than one chunk: proj (384 -> 384) and
  // fc2 (1536 -> 384).
  c.push_back(linear_drop_path_case({9, 37, 384}, 384, H, true, 50));
  c.push_back(linear_drop_path_case({12, 5, 1536}, 384, H, true, 10));
}

void add_matmul(std::vector<OpCase>& c) {
  auto mm = [](const Inputs& t) { return matmul(t[0], t[1]); };
  const std::tuple<Shape, Shape, DType> shapes[] = {
      {{37, 33}, {33, 65}, H},              // plain 2-D, odd sizes
      {{3, 37, 33}, {3, 33, 65}, H},        // strided batch
      {{2, 3, 37, 32}, {2, 3, 32, 37}, H},  // attention-like scores (B, H, N, N)
      {{2, 3, 50, 50}, {2, 3, 50, 32}, F},  // probs @ v, f32 inputs
      {{3, 37, 33}, {33, 65}, F},           // shared b: the batch folds into rows
      {{2, 1, 33}, {33, 1}, H},             // one row, one column
  };
  for (const auto& [a, b, dt] : shapes)
    c.push_back(
        op_case("matmul", {{a, dt, true, 1.0, 0.0, true}, {b, dt, true, 1.0, 0.0, true}}, mm, H));
  // Mixed dtypes: an f32 left operand and a bf16 right one.
  c.push_back(op_case("matmul", {{{3, 37, 33}, F, true, 1.0, 0.0, true}, {{3, 33, 65}, H}}, mm, H));
}

void add_weight_norm(std::vector<OpCase>& c) {
  // All f32 arithmetic: the default 1e-5.
  for (const Shape& v : {Shape{65, 33}, Shape{1, 7}, Shape{300, 256}})
    c.push_back(op_case(
        "weight_norm", {{v, F}, {{v[0], 1}, F, true, 0.5, 1.0}},
        [](const Inputs& t) { return weight_norm(t[0], t[1]); }, F));
  c.push_back(weight_norm_linear_case({37, 33}, 65, H, false));    // norm_last_layer: g frozen at 1
  c.push_back(weight_norm_linear_case({37, 33}, 65, H, true));     // g trained
  c.push_back(weight_norm_linear_case({1, 33}, 65, F, true));      // one row, f32 x
  c.push_back(weight_norm_linear_case({2, 5, 33}, 65, F, false));  // 3-D x
  c.push_back(weight_norm_linear_case({64, 256}, 4096, H, false));  // the head (K = 4096), B = 64
}

void add_patchify(std::vector<OpCase>& c) {
  const int64_t shapes[][6] = {
      {2, 1, 28, 28, 4, 33},      // MNIST-like, patch 4, odd D
      {3, 3, 28, 28, 4, 64},      // CIFAR-like channels
      {1, 3, 30, 29, 4, 65},      // H, W not multiples of P: the border pixels are dropped
      {2, 3, 224, 224, 16, 384},  // ViT-S/16 on a global crop
      {2, 1, 224, 224, 16, 384},  // one channel
      {2, 3, 96, 96, 16, 384},    // a local crop
  };                              // B, C, H, W, P, D
  for (const auto& s : shapes) {
    const int64_t B = s[0], C = s[1], Hh = s[2], W = s[3], P = s[4], D = s[5];
    for (const bool train : {false, true}) {
      // The images and W are GEMM operands (bf16 on the device); the bias is added in f32 by
      // the fp32-output GEMM's epilogue, so it is not rounded. Images never take a gradient.
      OpCase k = op_case(
          "patchify",
          {{{B, C, Hh, W}, F, false, 1.0, 0.0, true},
           {{D, C, P, P}, F, train, 0.1, 0.0, true},
           {{D}, F, train, 0.5}},
          [](const Inputs& t) { return patchify(t[0], t[1], t[2]); }, F);
      // Forward alone: exact bf16 products summed in fp32, the default 1e-5. With the
      // backward, dW and db read the f32 upstream gradient rounded to bf16 (one rounded
      // factor); the forward is then held to that bound too.
      if (train) k.tol.f32 = kRoundedFactorTol;
      c.push_back(std::move(k));
    }
  }
}

// `dino bench gemm`'s ViT-S/16 layers at batch 64: the blocks' Linears over 64 x 197 tokens,
// the head's over 64 x 10 crops, and the last layer (weight_norm_linear, f32 logits).
void add_gemm_bench(std::vector<OpCase>& c) {
  {
    // The emulated benchmark run's one small shape (set "smoke": checked like any case).
    OpCase k = linear_case({50, 64}, 96, H, true);
    k.bench = {"smoke"}, k.label = "smoke";
    k.name += " [bench smoke]";
    c.push_back(std::move(k));
  }
  const int64_t tok = 64 * 197, crops = 64 * 10;
  const std::tuple<const char*, int64_t, int64_t, int64_t> layers[] = {
      {"qkv", tok, 384, 1152},         {"proj", tok, 384, 384},
      {"fc1", tok, 384, 1536},         {"fc2", tok, 1536, 384},
      {"head.mlp0", crops, 384, 2048}, {"head.mlp2", crops, 2048, 2048},
      {"head.mlp4", crops, 2048, 256},
  };
  for (const auto& [label, rows, in, out] : layers) {
    OpCase k = linear_case({rows, in}, out, H, true);
    k.check = false, k.bench = {"vit"}, k.label = label;
    k.name += str_cat(" [bench vit: ", label, "]");
    c.push_back(std::move(k));
  }
  OpCase k = weight_norm_linear_case({crops, 256}, 65536, H, false);
  k.check = false, k.bench = {"vit"}, k.dims = {crops, 256, 65536}, k.label = "last_layer";
  k.name += " [bench vit: last_layer]";
  c.push_back(std::move(k));
}

}  // namespace

void add_linear_cases(std::vector<OpCase>& c) {
  add_linear(c);
  add_linear_gelu(c);
  add_linear_drop_path(c);
  add_matmul(c);
  add_weight_norm(c);
  add_patchify(c);
  add_gemm_bench(c);
}

}  // namespace dino::testing
