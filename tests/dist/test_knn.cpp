// k-NN features on several ranks: each rank extracts its share of the batches and the ranks
// gather them; the result must be, bit for bit, the features one process extracts, for a batch
// size that leaves a short last batch and ranks with nothing to do.
#include <catch2/catch.hpp>
#include <cstring>

#include "core/rng.h"
#include "data/augment.h"
#include "data/datasets.h"
#include "models/vit.h"
#include "tests/dist/dist_fixture.h"
#include "train/knn.h"

using namespace dino;
using namespace dino::test;

TEST_CASE("extract_features over the ranks equals one process's, bit for bit", "[dist][knn]") {
  VitConfig cfg = vit_preset("vit_micro");
  cfg.img_size = 16;
  cfg.patch_size = 4;
  cfg.in_chans = 1;
  Rng rng(5);
  const VisionTransformer model(cfg, rng);
  const auto ds = data::open_dataset("synthetic:n=37,test=8,size=16,classes=3", data::Split::train);
  const data::Normalization norm = data::default_normalization(1);
  const int64_t batch = GENERATE(5, 16, 64);  // 8 batches, 3 (one short), 1 (ranks left idle)
  INFO("batch " << batch);
  const Tensor alone = extract_features(model, *ds, norm, batch);
  const Tensor shared = extract_features(model, *ds, norm, batch, {}, &host_comm());
  REQUIRE(shared.shape() == alone.shape());
  CHECK(std::memcmp(shared.raw_data(), alone.raw_data(), alone.nbytes()) == 0);
}
