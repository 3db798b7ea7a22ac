// Stochastic depth in a data-parallel step: a sample's mask is keyed by its place in the
// global batch (core/drop_path_mask.h), so the ranks of a BatchShardScope together apply exactly
// the masks one process applies to the whole batch.
#include <catch2/catch.hpp>
#include <cmath>

#include "core/batch_shard.h"
#include "core/drop_path_mask.h"
#include "core/ops.h"

using namespace dino;

TEST_CASE("drop_path applies one process's masks on every rank's share of the batch",
          "[batch_shard]") {
  const int ranks = GENERATE(1, 2, 3);
  const int64_t per_rank = 8, cols = 5;  // two views of 4 samples each, per rank
  DropPathNoise whole_noise = make_drop_path_noise(9, Device::cpu);
  const Tensor whole =
      drop_path(Tensor::full({per_rank * ranks, cols}, 1.0), 0.5, true, whole_noise);
  const std::vector<float> w = whole.to_vector();
  int dropped = 0;
  for (int r = 0; r < ranks; ++r) {
    DropPathNoise noise = make_drop_path_noise(9, Device::cpu);
    Tensor mine;
    {
      BatchShardScope scope(r, ranks);
      mine = drop_path(Tensor::full({per_rank, cols}, 1.0), 0.5, true, noise);
    }
    CHECK(noise.next_call == whole_noise.next_call);
    const std::vector<float> m = mine.to_vector();
    for (int64_t l = 0; l < per_rank; ++l) {
      const int64_t g = ranks * l + r;  // the loader's layout (data/loader.h)
      REQUIRE(m[size_t(l * cols)] == w[size_t(g * cols)]);
      dropped += m[size_t(l * cols)] == 0.f;
    }
  }
  CHECK(dropped > 0);
  CHECK(dropped < per_rank * ranks);
  CHECK(current_batch_shard().ranks == 1);  // the scope ended
  CHECK_THROWS_WITH(BatchShardScope(2, 2), Catch::Contains("rank 2 of 2"));
}

TEST_CASE("drop_path's masks: rate 1 - p, new for every call and nonce, fixed for each",
          "[batch_shard]") {
  const int64_t n = 200000;
  for (const double p : {0.1, 0.5, 0.9}) {
    const uint32_t threshold = drop_path_threshold(p);
    int64_t kept = 0, same_call = 0, other_call = 0, other_nonce = 0;
    for (int64_t s = 0; s < n; ++s) {
      const bool k = drop_path_keep(77, 3, uint64_t(s), threshold);
      kept += k;
      same_call += k == drop_path_keep(77, 3, uint64_t(s), threshold);
      other_call += k == drop_path_keep(77, 4, uint64_t(s), threshold);
      other_nonce += k == drop_path_keep(78, 3, uint64_t(s), threshold);
    }
    INFO("p = " << p);
    // Binomial: within 5 standard deviations of n (1 - p).
    const double sd = std::sqrt(n * p * (1 - p));
    CHECK(std::abs(double(kept) - n * (1 - p)) < 5 * sd);
    CHECK(same_call == n);
    // Independent masks agree on a sample with probability p^2 + (1 - p)^2.
    const double agree = n * (p * p + (1 - p) * (1 - p)), sd2 = std::sqrt(agree);
    CHECK(std::abs(double(other_call) - agree) < 6 * sd2 + 0.01 * n);
    CHECK(std::abs(double(other_nonce) - agree) < 6 * sd2 + 0.01 * n);
  }
  // A forward's calls take 0, 1, 2, ...; a new step's nonce starts again at 0.
  DropPathNoise noise = make_drop_path_noise(5, Device::cpu);
  const Tensor x = Tensor::full({64, 3}, 1.0);
  const std::vector<float> a = drop_path(x, 0.5, true, noise).to_vector();
  const std::vector<float> b = drop_path(x, 0.5, true, noise).to_vector();
  CHECK(noise.next_call == 2);
  CHECK(a != b);
  set_drop_path_nonce(noise, 5);
  CHECK(noise.next_call == 0);
  CHECK(drop_path(x, 0.5, true, noise).to_vector() == a);
  CHECK(drop_path(x, 0.0, true, noise).to_vector() == x.to_vector());
  CHECK(noise.next_call == 1);  // p = 0 takes no call
}
