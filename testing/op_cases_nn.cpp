// The neural-network ops: layer_norm, add_layer_norm, softmax, log_softmax, l2_normalize,
// nearest_row_diff, attention, drop_path, resize_bicubic, dino_loss and koleo, under the precision
// policy of ARCHITECTURE §3; odd sizes (1, 37, 197 rows, C = 33) next to training sizes. Then the
// kernel benchmarks' shape sets of layer_norm, attention and dino_loss (`dino bench ...`).
#include <tuple>
#include <utility>

#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "losses/dino_loss.h"
#include "losses/koleo.h"
#include "testing/bf16_oracle.h"
#include "testing/op_cases.h"

namespace dino::testing {

namespace {

constexpr DType F = DType::f32, H = DType::bf16;

// x: a residual stream (mean ~3, std ~1), so a one-pass variance would show; weight ~1; bias
// ~0. The bf16 output is held to twice its own rounding plus 1e-4: the kernel computes in f32.
// The kernel tests (tests/cuda/test_layernorm.cpp) run the launchers on these cases' (rows, C).
OpCase layer_norm_case(const Shape& x, DType x_dtype = F) {
  const int64_t C = x.back();
  OpCase c = op_case(
      "layer_norm", {{x, x_dtype, true, 1.0, 3.0}, {{C}, F, true, 0.3, 1.0}, {{C}, F, true, 0.3}},
      [](const Inputs& in) { return layer_norm(in[0], in[1], in[2], 1e-6); }, H);
  c.tol.bf16_floor = 1e-4;
  c.deterministic = true;
  c.dims = {shape_numel(x) / C, C};
  return c;
}

// The fused residual step: f32 stream + bf16 branch. `take` picks what the case compares: the
// normed output (bf16), the new stream (f32, exact up to the add's rounding), or both summed,
// so gradients reach the stream from the norm and from later blocks at once; that sum mixes a
// bf16 term into an f32 result, so its f32 bound is a bf16 one.
enum class AddNormOut { normed, sum, both };
OpCase add_layer_norm_case(const Shape& x, AddNormOut take, DType branch_dtype = H) {
  const int64_t C = x.back();
  const char* what = take == AddNormOut::normed ? "(normed)"
                     : take == AddNormOut::sum  ? "(sum)"
                                                : "(both)";
  OpCase c = op_case(
      "add_layer_norm",
      {{x, F, true, 1.0, 3.0},
       {x, branch_dtype, true, 0.5},
       {{C}, F, true, 0.3, 1.0},
       {{C}, F, true, 0.3}},
      [take](const Inputs& in) {
        const AddNorm r = add_layer_norm(in[0], in[1], in[2], in[3], 1e-6);
        if (take == AddNormOut::normed) return r.normed;
        if (take == AddNormOut::sum) return r.sum;
        return add(r.sum, r.normed);
      },
      take == AddNormOut::normed ? H : F, what);
  if (take == AddNormOut::both) c.tol.f32 = 1e-2;
  return c;
}

// A bf16 attention result is looser than a plain rounding of the exact result: P and dS are
// rounded to bf16 inside the kernels as in FlashAttention. Output and gradient are held to
// twice the error of a plain bf16 composite (every GEMM output stored in bf16, as cuBLAS and
// unfused kernels would store it; testing/bf16_oracle.h) on the same inputs plus 1e-3, or to
// 3x their bf16 rounding plus 3e-3 where that is tighter (at N >= 37 the composite's error is
// 0.5-0.8%, so its bound alone would pass an output 1% off; the kernels measure 0.2-0.3%), an
// f32 qkv too (it is cast to bf16 and its gradient comes back from bf16). Scores of order 1-3 after
// scaling (qkv ~ 1.5 N(0, 1)), so the softmax is neither flat nor one-hot. The kernel test
// (tests/cuda/test_attention.cpp) runs the launchers on these cases' (B, N, H, Dh).
OpCase attention_case(int64_t B, int64_t N, int64_t Hh, int64_t Dh, DType dt = H) {
  OpCase c = op_case(
      "attention", {{{B, N, 3 * Hh * Dh}, dt, true, 1.5, 0.0, true}},
      [Hh](const Inputs& in) { return attention(in[0], Hh); }, H, str_cat("heads ", Hh));
  c.tol.composite = [B, N, Hh, Dh](const std::vector<std::vector<double>>& in,
                                   const std::vector<double>& upstream) {
    CompositeResult r;
    r.grads.resize(1);
    attention_bf16_composite(r.out, r.grads[0], in[0], upstream, int(B), int(N), int(Hh), int(Dh));
    return r;
  };
  c.tol.composite_name = "bf16 composite";
  c.tol.bf16_mult = 3.0;
  c.tol.bf16_floor = 3e-3;
  c.deterministic = true;  // no atomics in the backward
  c.dims = {B, N, Hh, Dh};
  return c;
}

// Logits of cosine size (norm_last_layer): the teacher divides them by 0.04.
OpCase dino_loss_case(int64_t G, int64_t V, int64_t B, int64_t K) {
  OpCase c = op_case(
      "dino_loss",
      {{{V * B, K}, F, true, 0.5}, {{G * B, K}, F, false, 0.5}, {{1, K}, F, false, 0.1}},
      [G](const Inputs& in) { return dino_loss(in[0], in[1], in[2], G, 0.1, 0.04); }, F,
      str_cat("G ", G, " V ", V, " B ", B));
  c.deterministic = true;  // fixed-order reductions
  c.dims = {G, V, B, K};
  return c;
}

void add_norms(std::vector<OpCase>& c) {
  // One row, odd rows, C = 33 (the scalar path) next to C % 4 == 0 (the float4 path).
  for (const Shape& x : {Shape{1, 33}, Shape{37, 33}, Shape{1, 4}, Shape{37, 768}, Shape{197, 1000},
                         Shape{1, 197, 384}, Shape{3000, 384}, Shape{64, 197, 384}})
    c.push_back(layer_norm_case(x));
  // A bf16 x is widened on the device; its gradient comes back in bf16.
  c.push_back(layer_norm_case({37, 33}, H));
  for (const Shape& x : {Shape{1, 33}, Shape{37, 33}, Shape{2, 197, 384}})
    for (const AddNormOut take : {AddNormOut::normed, AddNormOut::sum, AddNormOut::both})
      c.push_back(add_layer_norm_case(x, take));
  // An f32 branch takes the unfused path (add, then layer_norm) with the same results.
  c.push_back(add_layer_norm_case({37, 33}, AddNormOut::both, F));

  for (const bool log_space : {false, true})
    for (const auto& [x, dt] : {std::pair<Shape, DType>{{1, 33}, F},
                                {{37, 33}, F},
                                {{6, 197, 197}, H},
                                {{37, 33}, H},
                                {{4, 65536}, F}})
      c.push_back(op_case(
          log_space ? "log_softmax" : "softmax", {{x, dt, true, 2.0}},
          [log_space](const Inputs& in) { return log_space ? log_softmax(in[0]) : softmax(in[0]); },
          dt));

  // (640, 256): the head's bottleneck, B*V = 64*10.
  for (const auto& [x, dt] :
       {std::pair<Shape, DType>{{1, 33}, F}, {{37, 33}, F}, {{197, 384}, F}, {{640, 256}, H}})
    c.push_back(op_case(
        "l2_normalize", {{x, dt, true, 0.5, 0.1}},
        [](const Inputs& in) { return l2_normalize(in[0]); }, dt));
}

void add_attention(std::vector<OpCase>& c) {
  c.push_back(attention_case(4, 197, 6, 64));  // ViT-S/16, 224 crops
  c.push_back(attention_case(2, 50, 3, 32));   // 28-pixel inputs, patch 4
  c.push_back(attention_case(2, 10, 3, 32));
  c.push_back(attention_case(1, 1, 1, 32));
  c.push_back(attention_case(2, 37, 2, 128));
  c.push_back(attention_case(2, 37, 2, 64, F));  // f32 qkv: cast on the device
  // N not a multiple of the 64-row tile, every head dim; Dh = 64 takes 64-row forward blocks
  // up to N = 256 and 128-row ones beyond (N = 300).
  c.push_back(attention_case(2, 65, 2, 32));
  c.push_back(attention_case(1, 130, 1, 128));
  c.push_back(attention_case(1, 197, 1, 128));
  c.push_back(attention_case(1, 300, 1, 64));
  // Dh = 64 past 64 tokens on an sm_90 device (and the emulator) runs the wgmma kernels: 129
  // is a 128-key tile and a tail of one key. tests/cuda/test_attention.cpp runs them on every
  // Dh = 64 case, also up to 64 tokens (one 64-key tile: exactly full, one key).
  c.push_back(attention_case(1, 129, 2, 64));
  c.push_back(attention_case(2, 64, 1, 64));
  c.push_back(attention_case(1, 1, 1, 64));
}

void add_regularisers(std::vector<OpCase>& c) {
  // The same nonce on both sides: the same per-sample mask (at p = 0.1, nonce 1234's first call
  // drops some but not all of 37 and of 64 samples: tests/cuda/test_ops_nn.cpp checks).
  for (const auto& [x, dt] :
       {std::pair<Shape, DType>{{37, 5, 33}, F}, {{64, 197, 384}, H}, {{37, 33}, H}})
    c.push_back(op_case(
        "drop_path", {{x, dt}},
        [](const Inputs& in) {
          DropPathNoise noise = make_drop_path_noise(1234, in[0].device());
          return drop_path(in[0], 0.1, true, noise);
        },
        dt, "p 0.1"));

  // DINO's scale factor: (output grid + 0.1) / input grid (models/vit.cpp).
  const int64_t resizes[][5] = {
      {14, 14, 6, 6, 384},  // ViT-S/16 base grid to a 96 crop
      {4, 4, 7, 7, 33},     // upsampling, odd channels
      {14, 14, 14, 9, 33},  // different axes
      {1, 1, 2, 2, 33},     // every tap clamped
  };                        // Hi, Wi, Ho, Wo, C
  for (const auto& r : resizes) {
    const int64_t Hi = r[0], Wi = r[1], Ho = r[2], Wo = r[3];
    const double sh = (double(Ho) + 0.1) / double(Hi), sw = (double(Wo) + 0.1) / double(Wi);
    c.push_back(op_case(
        "resize_bicubic", {{{Hi, Wi, r[4]}, F}},
        [=](const Inputs& in) { return resize_bicubic(in[0], Ho, Wo, sh, sw); }, F,
        str_cat("to ", Ho, "x", Wo)));
  }

  // G = 1, odd B and K, K not a multiple of the 1024-column chunk, K = 65536 (a row larger than
  // a block's shared memory) and K = 65537 (odd: the scalar path, with more column-chunk
  // partials per row than a warp has lanes).
  c.push_back(dino_loss_case(2, 10, 4, 4096));
  c.push_back(dino_loss_case(2, 10, 4, 65536));
  c.push_back(dino_loss_case(1, 2, 1, 33));
  c.push_back(dino_loss_case(2, 2, 1, 33));
  c.push_back(dino_loss_case(3, 5, 37, 257));
  c.push_back(dino_loss_case(2, 10, 9, 4097));
  c.push_back(dino_loss_case(2, 6, 2, 65536));
  c.push_back(dino_loss_case(2, 3, 2, 65537));

  // KoLeo's neighbour search: the difference and its gradient on fresh rows, and the index
  // where the first-index rule decides: rows repeated further down (exact ties; the CPU
  // reference then equals the device only if both pick the first copy). Odd B and D.
  for (const auto& [B, D] :
       {std::pair<int64_t, int64_t>{2, 1}, {3, 7}, {37, 128}, {130, 1}, {130, 7}, {130, 128}}) {
    OpCase k = op_case(
        "nearest_row_diff", {{{B, D}, F}}, [](const Inputs& in) { return nearest_row_diff(in[0]); },
        F);
    k.deterministic = true;  // the backward subtracts in a fixed order
    c.push_back(std::move(k));
  }
  for (const auto& [B, D, repeated] : {std::tuple<int64_t, int64_t, int64_t>{2, 1, 1},
                                       {30, 7, 7},
                                       {30, 128, 7},
                                       {100, 1, 30},
                                       {100, 128, 30}}) {
    OpCase k = op_case(
        "nearest_row_diff", {{{B, D}, F, false}},
        [repeated = repeated](const Inputs& in) {
          Tensor index;
          nearest_row_diff(concat({in[0], in[0].narrow(0, repeated)}), &index);
          return index.to(in[0].dtype());
        },
        F, str_cat("index, ", repeated, " rows repeated"));
    k.deterministic = true;
    c.push_back(std::move(k));
  }

  // KoLeo: f32 features, and bf16 features as the CUDA backbone hands them over (the op then
  // works in f32).
  for (const auto& [x, dt] :
       {std::pair<Shape, DType>{{2, 3}, F}, {{37, 33}, F}, {{37, 33}, H}, {{64, 128}, H}})
    c.push_back(op_case(
        "koleo", {{x, dt}}, [](const Inputs& in) { return koleo_loss(in[0]); }, F));
}

// The kernel benchmarks' shape sets. "smoke": one small shape per benchmark, which the
// emulated benchmark runs use (CMakeLists.txt) and the tests check like any case; "vit" and
// "long": too large to compare in float64 on every test run; "quick": the attention shapes
// tools/gpu-check.sh times (the ViT-S ones and one long sequence).
void add_bench_shapes(std::vector<OpCase>& c) {
  auto bench = [&c](OpCase k, const char* set, std::vector<int64_t> dims, const char* label,
                    bool quick = false) {
    k.check = std::string(set) == "smoke", k.bench = {set}, k.dims = std::move(dims);
    k.label = label;
    if (quick) k.bench.push_back("quick");
    k.name += std::string(set) == label ? str_cat(" [bench ", set, "]")
                                        : str_cat(" [bench ", set, ": ", label, "]");
    c.push_back(std::move(k));
  };
  bench(attention_case(2, 37, 3, 64), "smoke", {2, 37, 3, 64}, "smoke");
  bench(layer_norm_case({197, 384}), "smoke", {197, 384}, "smoke");
  bench(dino_loss_case(2, 4, 3, 1000), "smoke", {2, 4, 3, 1000}, "smoke");
  // ViT-S/16: 6 heads of 64; 37 tokens for a 96-px crop, 197 for a 224-px crop; B*H >= 1536.
  bench(attention_case(512, 37, 6, 64), "vit", {512, 37, 6, 64}, "vit-s local", true);
  bench(attention_case(256, 197, 6, 64), "vit", {256, 197, 6, 64}, "vit-s global", true);
  // Long sequences: 16k tokens per batch, 6 heads of 64.
  for (const int64_t n : {1024, 2048, 4096, 8192})
    bench(attention_case(16384 / n, n, 6, 64), "long", {16384 / n, n, 6, 64}, "long", n == 4096);
  const std::pair<int64_t, const char*> rows[] = {
      {64 * 2 * 197, "vit-s 2x224 crops, batch 64"},
      {64 * (2 * 197 + 8 * 37), "vit-s 2x224+8x96 crops, batch 64"},
      {131072, "131k rows"},
      {262144, "262k rows"},
  };
  for (const auto& [N, label] : rows) bench(layer_norm_case({N, 384}), "vit", {N, 384}, label);
  bench(dino_loss_case(2, 10, 64, 65536), "vit", {2, 10, 64, 65536},
        "dino vit-s/16: 2+8 crops, K 65536, batch 64");
  bench(dino_loss_case(2, 8, 64, 4096), "vit", {2, 8, 64, 4096},
        "cpu recipe: 2+6 crops, K 4096, batch 64");
}

}  // namespace

void add_nn_cases(std::vector<OpCase>& c) {
  add_norms(c);
  add_attention(c);
  add_regularisers(c);
  add_bench_shapes(c);
}

}  // namespace dino::testing
