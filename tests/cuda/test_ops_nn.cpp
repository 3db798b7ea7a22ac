// The neural-network ops on CUDA beyond the op table's comparisons (tests/cuda/test_op_table.cpp):
// attention's clear refusals, the drop_path mask the table's cases rely on (both kept and
// dropped samples occur), and the DinoLoss module on CUDA: its collapse statistics and center
// update against the CPU.
#include <algorithm>
#include <cmath>

#include "core/drop_path_mask.h"
#include "core/ops.h"
#include "core/rng.h"
#include "losses/dino_loss.h"
#include "tests/cuda/test_util.h"

using namespace dino;
using namespace dino::test;

TEST_CASE("attention on CUDA: unsupported requests are clear errors", "[ops][nn]") {
  const Tensor qkv = Tensor::zeros({1, 5, 3 * 2 * 48}).to(Device::cuda).to(DType::bf16);
  CHECK_THROWS_WITH(attention(qkv, 2), Catch::StartsWith("[attention] head dim 48"));
  const Tensor ok = Tensor::zeros({1, 5, 3 * 2 * 32}).to(Device::cuda).to(DType::bf16);
  Tensor probs;
  CHECK_THROWS_WITH(attention(ok, 2, &probs),
                    Catch::StartsWith("[attention]") && Catch::Contains("--device cpu"));
}

TEST_CASE("drop_path on CUDA: the op table's masks drop some samples and keep others",
          "[ops][nn]") {
  // The op table's drop_path cases (testing/op_cases_nn.cpp) compare CUDA with the CPU at
  // nonce 1234, call 0, p = 0.1: they show the per-sample mask only if both kinds occur.
  for (const int64_t B : {int64_t(37), int64_t(64)}) {
    int dropped = 0;
    for (int64_t b = 0; b < B; ++b)
      dropped += !drop_path_keep(1234, 0, uint64_t(b), drop_path_threshold(0.1));
    INFO("B = " << B);
    CHECK(dropped > 0);
    CHECK(dropped < B);
  }
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
