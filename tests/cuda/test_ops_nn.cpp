// The neural-network ops on CUDA tensors against the CPU in float64 (tests/cuda/op_check.h):
// layer_norm, add_layer_norm, softmax, log_softmax, l2_normalize, attention, drop_path, resize_bicubic and
// dino_loss, forward and backward, under the precision policy of ARCHITECTURE §3; odd sizes (1, 37,
// 197 rows, C = 33) next to training sizes. Then the DinoLoss module on CUDA: its collapse
// statistics and center update against the CPU.
#include <cmath>

#include "core/ops.h"
#include "core/rng.h"
#include "losses/dino_loss.h"
#include "tests/cuda/op_check.h"

using namespace dino;
using namespace dino::test;

namespace {

OpCase layer_norm_case(const Shape& x, DType x_dtype = DType::f32) {
  const int64_t C = x.back();
  return {str_cat("layer_norm x ", shape_str(x), " ", dtype_name(x_dtype)),
          {{x, x_dtype, true, 1.0, 3.0},  // a residual stream: mean ~3, std ~1
           {{C}, DType::f32, true, 0.3, 1.0},
           {{C}, DType::f32, true, 0.3}},
          [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-6); },
          DType::bf16};
}

// The fused residual step: f32 stream + bf16 branch. `take` picks what the case compares: the
// normed output (bf16), the new stream (f32, exact up to the add's rounding), or both summed,
// so gradients reach the stream from the norm and from later blocks at once; that sum mixes a
// bf16 term into an f32 result, so its f32 tolerance is a bf16 one.
enum class AddNormOut { normed, sum, both };
OpCase add_layer_norm_case(const Shape& x, AddNormOut take, DType branch_dtype = DType::bf16) {
  const int64_t C = x.back();
  const char* what = take == AddNormOut::normed ? "normed" : take == AddNormOut::sum ? "sum" : "both";
  OpCase c{str_cat("add_layer_norm x ", shape_str(x), " branch ", dtype_name(branch_dtype), " (",
                   what, ")"),
           {{x, DType::f32, true, 1.0, 3.0},
            {x, branch_dtype, true, 0.5},
            {{C}, DType::f32, true, 0.3, 1.0},
            {{C}, DType::f32, true, 0.3}},
           [take](const std::vector<Tensor>& in) {
             const AddNorm r = add_layer_norm(in[0], in[1], in[2], in[3], 1e-6);
             if (take == AddNormOut::normed) return r.normed;
             if (take == AddNormOut::sum) return r.sum;
             return add(r.sum, r.normed);
           },
           take == AddNormOut::normed ? DType::bf16 : DType::f32};
  if (take == AddNormOut::both) c.f32_tol = 1e-2;
  return c;
}

OpCase softmax_case(bool log_space, const Shape& x, DType dt) {
  return {str_cat(log_space ? "log_softmax " : "softmax ", shape_str(x), " ", dtype_name(dt)),
          {{x, dt, true, 2.0}},
          [log_space](const std::vector<Tensor>& in) {
            return log_space ? log_softmax(in[0]) : softmax(in[0]);
          },
          dt};
}

OpCase l2_case(const Shape& x, DType dt) {
  return {str_cat("l2_normalize ", shape_str(x), " ", dtype_name(dt)),
          {{x, dt, true, 0.5, 0.1}},
          [](const std::vector<Tensor>& in) { return l2_normalize(in[0]); },
          dt};
}

// The tolerance of a bf16 attention result is looser than a plain rounding of the exact
// result: P and dS are rounded to bf16 inside the kernels as in FlashAttention (the kernel
// test, tests/cuda/test_attention.cpp, holds them to twice a bf16 composite's error). Here
// the point is the op's plumbing (layout, dtypes, casts, the node), which would miss by O(1).
OpCase attention_case(int64_t B, int64_t N, int64_t H, int64_t Dh, DType dt = DType::bf16) {
  OpCase c{str_cat("attention B ", B, " N ", N, " H ", H, " Dh ", Dh, " qkv ", dtype_name(dt)),
           {{{B, N, 3 * H * Dh}, dt, true, 1.5, 0.0, /*bf16_operand=*/true}},
           [H](const std::vector<Tensor>& in) { return attention(in[0], H); },
           DType::bf16};
  c.bf16_mult = 3.0;
  c.bf16_floor = 3e-3;
  // An f32 qkv is cast to bf16 and its gradient comes back from bf16: bf16 accuracy.
  if (dt == DType::f32) c.f32_tol = 1e-2;
  return c;
}

OpCase drop_path_case(const Shape& x, DType dt) {
  return {str_cat("drop_path p 0.1 ", shape_str(x), " ", dtype_name(dt)),
          {{x, dt, true}},
          [](const std::vector<Tensor>& in) {
            Rng rng(1234);  // the same generator state on both sides: the same mask
            return drop_path(in[0], 0.1, true, rng);
          },
          dt};
}

OpCase resize_case(int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo, int64_t C) {
  // DINO's scale factor: (output grid + 0.1) / input grid (models/vit.cpp).
  const double sh = (double(Ho) + 0.1) / double(Hi), sw = (double(Wo) + 0.1) / double(Wi);
  return {str_cat("resize_bicubic ", Hi, "x", Wi, " -> ", Ho, "x", Wo, " C ", C),
          {{{Hi, Wi, C}, DType::f32, true}},
          [=](const std::vector<Tensor>& in) { return resize_bicubic(in[0], Ho, Wo, sh, sw); },
          DType::f32};
}

OpCase dino_loss_case(int64_t G, int64_t V, int64_t B, int64_t K) {
  // Logits of cosine size (norm_last_layer): the teacher divides them by 0.04.
  return {str_cat("dino_loss G ", G, " V ", V, " B ", B, " K ", K),
          {{{V * B, K}, DType::f32, true, 0.5},
           {{G * B, K}, DType::f32, false, 0.5},
           {{1, K}, DType::f32, false, 0.1}},
          [G](const std::vector<Tensor>& in) {
            return dino_loss(in[0], in[1], in[2], G, 0.1, 0.04);
          },
          DType::f32};
}

}  // namespace

TEST_CASE("layer_norm on CUDA: f32 stream in, bf16 out", "[ops][nn]") {
  uint64_t seed = 100;
  for (const Shape& x : {Shape{1, 33}, Shape{37, 33}, Shape{1, 197, 384}, Shape{64, 197, 384}})
    check_op(layer_norm_case(x), seed++);
  // A bf16 x is widened on the device; its gradient comes back in bf16.
  check_op(layer_norm_case({37, 33}, DType::bf16), seed++);
}

TEST_CASE("add_layer_norm on CUDA: fused residual add, f32 stream, bf16 branch and output",
          "[ops][nn]") {
  uint64_t seed = 150;
  for (const Shape& x : {Shape{1, 33}, Shape{37, 33}, Shape{2, 197, 384}})
    for (const AddNormOut take : {AddNormOut::normed, AddNormOut::sum, AddNormOut::both})
      check_op(add_layer_norm_case(x, take), seed++);
  // An f32 branch takes the unfused path (add, then layer_norm) with the same results.
  check_op(add_layer_norm_case({37, 33}, AddNormOut::both, DType::f32), seed++);
}

TEST_CASE("softmax and log_softmax on CUDA", "[ops][nn]") {
  uint64_t seed = 200;
  for (const bool log_space : {false, true}) {
    check_op(softmax_case(log_space, {1, 33}, DType::f32), seed++);
    check_op(softmax_case(log_space, {37, 33}, DType::f32), seed++);
    check_op(softmax_case(log_space, {6, 197, 197}, DType::bf16), seed++);
    check_op(softmax_case(log_space, {37, 33}, DType::bf16), seed++);
    check_op(softmax_case(log_space, {4, 65536}, DType::f32), seed++);
  }
}

TEST_CASE("l2_normalize on CUDA", "[ops][nn]") {
  uint64_t seed = 300;
  check_op(l2_case({1, 33}, DType::f32), seed++);
  check_op(l2_case({37, 33}, DType::f32), seed++);
  check_op(l2_case({197, 384}, DType::f32), seed++);
  check_op(l2_case({640, 256}, DType::bf16), seed++);  // the head's bottleneck, B*V = 64*10
}

TEST_CASE("attention on CUDA", "[ops][nn]") {
  uint64_t seed = 400;
  check_op(attention_case(4, 197, 6, 64), seed++);  // ViT-S/16, 224 crops
  check_op(attention_case(2, 50, 3, 32), seed++);   // 28-pixel inputs, patch 4
  check_op(attention_case(2, 10, 3, 32), seed++);
  check_op(attention_case(1, 1, 1, 32), seed++);
  check_op(attention_case(2, 37, 2, 128), seed++);
  check_op(attention_case(2, 37, 2, 64, DType::f32), seed++);  // f32 qkv: cast on the device
}

TEST_CASE("attention on CUDA: unsupported requests are clear errors", "[ops][nn]") {
  const Tensor qkv = Tensor::zeros({1, 5, 3 * 2 * 48}).to(Device::cuda).to(DType::bf16);
  CHECK_THROWS_WITH(attention(qkv, 2), Catch::StartsWith("[attention] head dim 48"));
  const Tensor ok = Tensor::zeros({1, 5, 3 * 2 * 32}).to(Device::cuda).to(DType::bf16);
  Tensor probs;
  CHECK_THROWS_WITH(attention(ok, 2, &probs),
                    Catch::StartsWith("[attention]") && Catch::Contains("--device cpu"));
}

TEST_CASE("drop_path on CUDA: the CPU's per-sample mask", "[ops][nn]") {
  // The mask of Rng(1234) at p = 0.1 drops 4 of 37 and 6 of 64 samples: both kinds occur.
  for (const int64_t B : {int64_t(37), int64_t(64)}) {
    Rng rng(1234);
    int dropped = 0;
    for (int64_t b = 0; b < B; ++b) dropped += !rng.bernoulli(0.9);
    INFO("B = " << B);
    CHECK(dropped > 0);
    CHECK(dropped < B);
  }
  uint64_t seed = 500;
  check_op(drop_path_case({37, 5, 33}, DType::f32), seed++);
  check_op(drop_path_case({64, 197, 384}, DType::bf16), seed++);
  check_op(drop_path_case({37, 33}, DType::bf16), seed++);
}

TEST_CASE("resize_bicubic on CUDA: DINO's position-embedding interpolation", "[ops][nn]") {
  uint64_t seed = 600;
  check_op(resize_case(14, 14, 6, 6, 384), seed++);  // ViT-S/16 base grid to a 96 crop
  check_op(resize_case(4, 4, 7, 7, 33), seed++);     // upsampling, odd channels
  check_op(resize_case(14, 14, 14, 9, 33), seed++);  // different axes
  check_op(resize_case(1, 1, 2, 2, 33), seed++);     // every tap clamped
}

TEST_CASE("dino_loss on CUDA: the fused loss and its gradient", "[ops][nn]") {
  uint64_t seed = 700;
  check_op(dino_loss_case(2, 10, 4, 4096), seed++);
  check_op(dino_loss_case(2, 10, 4, 65536), seed++);
  check_op(dino_loss_case(1, 2, 1, 33), seed++);
}

TEST_CASE("DinoLoss on CUDA: collapse statistics and center update match the CPU", "[ops][nn]") {
  for (const int64_t K : {int64_t(4096), int64_t(65536)}) {
    INFO("K = " << K);
    const int64_t G = 2, V = 10, B = 4;
    Rng rng(800 + uint64_t(K));
    std::vector<float> s(size_t(V * B * K)), t(size_t(G * B * K));
    for (auto& x : s) x = float(rng.uniform(-1.0, 1.0));
    for (auto& x : t) x = float(rng.uniform(-1.0, 1.0));
    const std::vector<float> c = random_floats(rng, size_t(K), 0.1);

    DinoLossConfig cfg;
    cfg.out_dim = K;
    cfg.global_crops = G;
    cfg.center_momentum = 0.9;
    DinoLoss cpu_loss(cfg, 1), gpu_loss(cfg, 1);
    cpu_loss.center = Tensor::from_vector(to_double(c), {1, K});
    gpu_loss.center = Tensor::from_vector(c, {1, K}).to(Device::cuda);

    DinoLossStats got, ref;
    const Tensor ss = Tensor::from_vector(s, {V * B, K}).to(Device::cuda);
    const Tensor ts = Tensor::from_vector(t, {G * B, K}).to(Device::cuda);
    const Tensor lg = gpu_loss.forward(ss, ts, 0.04, &got);
    const Tensor lc = cpu_loss.forward(Tensor::from_vector(to_double(s), {V * B, K}),
                                       Tensor::from_vector(to_double(t), {G * B, K}), 0.04, &ref);

    REQUIRE(lg.device() == Device::cuda);
    CHECK(got.loss == Approx(lg.item()));  // the statistics carry the op's own loss
    expect_close("loss", {got.loss}, {ref.loss}, 1e-5);
    expect_close("teacher entropy", {got.teacher_entropy}, {ref.teacher_entropy}, 1e-4);
    expect_close("batch entropy", {got.batch_entropy}, {ref.batch_entropy}, 1e-4);
    CHECK(std::fabs(got.kl - ref.kl) <= 1e-4 * std::max(1.0, std::fabs(ref.loss)));
    CHECK(got.teacher_temp == 0.04);
    // The center moved (momentum 0.9 towards the teacher mean) exactly as on the CPU.
    REQUIRE(gpu_loss.center.device() == Device::cuda);
    expect_close("center", host_doubles(gpu_loss.center), host_doubles(cpu_loss.center), 1e-6);

    // Without statistics the center still updates (q is not produced).
    const Tensor lg2 = gpu_loss.forward(ss, ts, 0.04, nullptr);
    cpu_loss.forward(Tensor::from_vector(to_double(s), {V * B, K}),
                     Tensor::from_vector(to_double(t), {G * B, K}), 0.04, nullptr);
    expect_close("center after a second step", host_doubles(gpu_loss.center),
                 host_doubles(cpu_loss.center), 1e-6);
    CHECK(std::isfinite(lg2.item()));
  }
}
