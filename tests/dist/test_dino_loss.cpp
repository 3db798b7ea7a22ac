// The DINO loss over several ranks: every rank ends with the center one process computes from
// the whole batch, the statistics are the whole batch's, and a rank whose own loss is not
// finite is named on every rank (so every rank stops at the same step, none left waiting).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "losses/dino_loss.h"
#include "tests/dist/dist_fixture.h"

using namespace dino;
using namespace dino::test;

namespace {

DinoLossConfig small_loss() {
  DinoLossConfig cfg;
  cfg.out_dim = 11;  // odd, not a power of two
  cfg.global_crops = 2;
  return cfg;
}

// Rank r's logits for `views` views of `batch` samples: rows view-major, as the models give.
Tensor logits(uint64_t tag, int r, int64_t views, int64_t batch, int64_t K) {
  return rank_data(tag, r, views * batch * K, DType::f32).reshape({views * batch, K});
}

// The ranks' rows interleaved into one batch: global sample ranks * l + r (data/loader.h).
Tensor whole_batch(uint64_t tag, int ranks, int64_t views, int64_t batch, int64_t K) {
  Tensor out = Tensor::empty({views * batch * ranks, K});
  for (int r = 0; r < ranks; ++r) {
    const Tensor mine = logits(tag, r, views, batch, K);
    for (int64_t v = 0; v < views; ++v)
      for (int64_t l = 0; l < batch; ++l)
        for (int64_t k = 0; k < K; ++k)
          out.data<float>()[((v * batch * ranks) + ranks * l + r) * K + k] =
              mine.data<float>()[(v * batch + l) * K + k];
  }
  return out;
}

}  // namespace

TEST_CASE("the DINO center and statistics over the ranks are one process's", "[dist][dino_loss]") {
  dist::Communicator& c = host_comm();
  const DinoLossConfig cfg = small_loss();
  const int64_t B = 3, K = cfg.out_dim, V = 4;
  DinoLoss shared(cfg, 10), alone(cfg, 10);
  shared.set_communicator(&c);
  DinoLossStats s_shared, s_alone;
  for (uint64_t step = 0; step < 3; ++step) {
    shared.forward(logits(100 + step, c.rank(), V, B, K), logits(200 + step, c.rank(), 2, B, K),
                   0.04, &s_shared);
    alone.forward(whole_batch(100 + step, c.size(), V, B, K),
                  whole_batch(200 + step, c.size(), 2, B, K), 0.04, &s_alone);
  }
  const std::vector<float> a = shared.center.to_vector(), b = alone.center.to_vector();
  for (size_t k = 0; k < a.size(); ++k) CHECK(a[k] == Approx(b[k]).epsilon(1e-5));
  CHECK(s_shared.teacher_entropy == Approx(s_alone.teacher_entropy).epsilon(1e-5));
  CHECK(s_shared.batch_entropy == Approx(s_alone.batch_entropy).epsilon(1e-5));
  CHECK(s_shared.nonfinite_ranks.empty());
}

TEST_CASE("a rank whose loss is not finite is named on every rank", "[dist][dino_loss]") {
  dist::Communicator& c = host_comm();
  const DinoLossConfig cfg = small_loss();
  const int64_t B = 3, K = cfg.out_dim;
  const int bad = c.size() - 1;
  DinoLoss loss(cfg, 10);
  loss.set_communicator(&c);
  Tensor student = logits(7, c.rank(), 4, B, K);
  if (c.rank() == bad) student.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
  DinoLossStats stats;
  loss.forward(student, logits(8, c.rank(), 2, B, K), 0.04, &stats);
  CHECK_FALSE(std::isfinite(stats.loss));  // the mean of every rank's loss
  REQUIRE(stats.nonfinite_ranks.size() == 1);
  CHECK(stats.nonfinite_ranks[0] == bad);
}
