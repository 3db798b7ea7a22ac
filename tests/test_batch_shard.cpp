// Stochastic depth in a data-parallel step: with a BatchShardScope each rank draws the masks
// of the whole batch and keeps its rows, so the ranks together apply exactly the masks one
// process draws for the whole batch, and every generator ends in the same state.
#include <catch2/catch.hpp>

#include "core/batch_shard.h"
#include "core/ops.h"
#include "core/rng.h"

using namespace dino;

TEST_CASE("drop_path draws one process's masks on every rank's share of the batch",
          "[batch_shard]") {
  const int ranks = GENERATE(1, 2, 3);
  const int64_t per_rank = 8, cols = 5;  // two views of 4 samples each, per rank
  Rng whole_rng(9);
  const Tensor whole = drop_path(Tensor::full({per_rank * ranks, cols}, 1.0), 0.5, true, whole_rng);
  const std::vector<float> w = whole.to_vector();
  int dropped = 0;
  for (int r = 0; r < ranks; ++r) {
    Rng rng(9);
    Tensor mine;
    {
      BatchShardScope scope(r, ranks);
      mine = drop_path(Tensor::full({per_rank, cols}, 1.0), 0.5, true, rng);
    }
    CHECK(rng.state() == whole_rng.state());
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
