// Tests for the k-NN evaluation: the weighted vote on hand-made banks with known answers,
// feature extraction on a tiny ViT, and the three-way report on the synthetic dataset.
#include <catch2/catch.hpp>
#include <cmath>

#include "core/error.h"
#include "models/multicrop.h"
#include "train/config.h"
#include "train/knn.h"

using namespace dino;

namespace {

// Unit vectors in the plane at the given angles (radians), one row each.
Tensor at_angles(const std::vector<double>& angles) {
  std::vector<float> v;
  for (double a : angles) {
    v.push_back(float(std::cos(a)));
    v.push_back(float(std::sin(a)));
  }
  return Tensor::from_vector(v, {int64_t(angles.size()), 2});
}

void require_unit_rows(const Tensor& f) {
  const std::vector<float> v = f.to_vector();
  const int64_t D = f.size(1);
  for (int64_t r = 0; r < f.size(0); ++r) {
    double ss = 0;
    for (int64_t c = 0; c < D; ++c) ss += double(v[size_t(r * D + c)]) * v[size_t(r * D + c)];
    REQUIRE(std::sqrt(ss) == Approx(1.0).epsilon(1e-5));
  }
}

Recipe tiny_config() {
  return load_recipe(
      "", {"data.dataset=synthetic:n=64,test=16,size=16,classes=4", "model.arch=vit_micro",
           "model.img_size=16", "model.patch_size=4", "head.out_dim=32", "head.hidden_dim=32",
           "head.bottleneck_dim=16", "run.seed=7"});
}

}  // namespace

TEST_CASE("knn: the similarity weights decide against the majority", "[knn]") {
  // One class-0 neighbour almost on the query (cos 0.995), two class-1 neighbours at cos 0.5.
  const Tensor bank = at_angles({0.1, 1.0472, -1.0472});
  const std::vector<int> bank_labels = {0, 1, 1};
  const Tensor query = at_angles({0.0});
  // T = 0.07: exp(0.995 / T) outweighs 2 exp(0.5 / T), so class 0 wins.
  KnnResult sharp = knn_classify(bank, bank_labels, query, {0}, 2, 3, 0.07);
  CHECK(sharp.top1 == 100.0);
  // A large T makes the weights nearly equal and the two class-1 votes win.
  KnnResult flat = knn_classify(bank, bank_labels, query, {0}, 2, 3, 100.0);
  CHECK(flat.top1 == 0.0);
  CHECK(flat.top5 == 100.0);  // only 2 classes: the truth is always among the top 5
  CHECK(flat.n_train == 3);
  CHECK(flat.n_test == 1);
}

TEST_CASE("knn: only the k nearest vote", "[knn]") {
  const Tensor bank = at_angles({0.1, 1.0472, -1.0472});
  // k = 1: the single nearest neighbour decides whatever T is.
  CHECK(knn_classify(bank, {0, 1, 1}, at_angles({0.0}), {0}, 2, 1, 100.0).top1 == 100.0);
}

TEST_CASE("knn: k larger than the bank uses the whole bank", "[knn]") {
  const Tensor bank = at_angles({0.1, 1.0472, -1.0472});
  const Tensor queries = at_angles({0.0, 0.9, -0.9, 3.0});
  const std::vector<int> labels = {0, 1, 1, 1};
  for (double T : {0.07, 100.0}) {
    const KnnResult all = knn_classify(bank, {0, 1, 1}, queries, labels, 2, 3, T);
    const KnnResult more = knn_classify(bank, {0, 1, 1}, queries, labels, 2, 500, T);
    CHECK(more.top1 == all.top1);
    CHECK(more.top5 == all.top5);
    CHECK(more.k == 500);
  }
}

TEST_CASE("knn: exact ties resolve to the lower index", "[knn]") {
  // Two identical bank rows: with k = 1 the lower bank index is the neighbour.
  const Tensor bank = at_angles({0.5, 0.5, 2.0});
  const Tensor query = at_angles({0.5});
  CHECK(knn_classify(bank, {2, 1, 0}, query, {2}, 3, 1, 0.07).top1 == 100.0);
  CHECK(knn_classify(bank, {1, 2, 0}, query, {2}, 3, 1, 0.07).top1 == 0.0);
  // k = 2: equal votes for classes 1 and 2; the lower class index ranks first.
  CHECK(knn_classify(bank, {2, 1, 0}, query, {1}, 3, 2, 0.07).top1 == 100.0);
  CHECK(knn_classify(bank, {2, 1, 0}, query, {2}, 3, 2, 0.07).top1 == 0.0);
  // Repeated runs agree (no dependence on thread scheduling).
  const Tensor queries = at_angles({0.5, 0.5, 0.5, 2.0, 1.25});
  const std::vector<int> labels = {1, 2, 2, 0, 1};
  const KnnResult a = knn_classify(bank, {2, 1, 0}, queries, labels, 3, 2, 0.07);
  const KnnResult b = knn_classify(bank, {2, 1, 0}, queries, labels, 3, 2, 0.07);
  CHECK(a.top1 == b.top1);
}

TEST_CASE("knn: bad inputs are errors", "[knn]") {
  const Tensor bank = at_angles({0.1, 1.0});
  const Tensor query = at_angles({0.0});
  CHECK_THROWS_AS(knn_classify(bank, {0}, query, {0}, 2, 1, 0.07), Error);     // label count
  CHECK_THROWS_AS(knn_classify(bank, {0, 5}, query, {0}, 2, 1, 0.07), Error);  // label range
  CHECK_THROWS_AS(knn_classify(bank, {0, 1}, query, {0}, 2, 0, 0.07), Error);  // k
  CHECK_THROWS_AS(knn_classify(bank, {0, 1}, query, {0}, 2, 1, 0.0), Error);   // T
  CHECK_THROWS_AS(knn_classify(bank, {0, 1}, Tensor::zeros({1, 3}), {0}, 2, 1, 0.07), Error);
}

TEST_CASE("knn: extract_features gives unit [CLS] rows in any batch size", "[knn]") {
  const auto ds =
      data::open_dataset("synthetic:n=64,test=16,size=16,classes=4", data::Split::train);
  VitConfig vc = vit_preset("vit_micro");
  vc.img_size = 16;
  vc.patch_size = 4;
  vc.in_chans = 1;
  Rng rng(3);
  VisionTransformer model(vc, rng);
  const auto norm = data::default_normalization(1);

  int64_t last_done = -1, last_total = -1;
  const Tensor f = extract_features(model, *ds, norm, 24, [&](int64_t done, int64_t total) {
    CHECK(done > last_done);
    last_done = done;
    last_total = total;
  });
  REQUIRE(f.shape() == Shape{64, vc.embed_dim});
  CHECK(f.device() == Device::cpu);
  CHECK(last_done == 64);
  CHECK(last_total == 64);
  require_unit_rows(f);

  const std::vector<float> a = f.to_vector(),
                           b = extract_features(model, *ds, norm, 64).to_vector();
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == Approx(b[i]).margin(1e-5));

  vc.in_chans = 3;
  VisionTransformer rgb(vc, rng);
  CHECK_THROWS_AS(extract_features(rgb, *ds, norm, 8), Error);
}

TEST_CASE("knn: raw pixel features are unit rows of C*H*W", "[knn]") {
  const auto ds = data::open_dataset("synthetic:n=64,test=16,size=16,classes=4", data::Split::test);
  const Tensor f = raw_pixel_features(*ds);
  REQUIRE(f.shape() == Shape{16, 256});
  require_unit_rows(f);
  const std::vector<int> labels = labels_of(*ds);
  REQUIRE(labels.size() == 16);
  for (int l : labels) CHECK((l >= 0 && l < 4));
}

TEST_CASE(
    "knn: the report scores both models alike when they are the same, and keeps the trained "
    "features",
    "[knn]") {
  const Recipe cfg = tiny_config();
  const VitConfig vc = cfg.vit(1);
  Rng rng(7);
  DinoModel same(vc, cfg.head, rng);
  const std::string spec = cfg.data.dataset;
  const KnnReport r = knn_report(same.backbone, same.backbone, spec, {5, 0.07, 32});
  CHECK(r.trained.top1 == r.random_init.top1);
  CHECK(r.trained.top5 == r.random_init.top5);
  CHECK(r.trained.n_train == 64);
  CHECK(r.trained.n_test == 16);
  CHECK(r.raw_pixels.k == 5);
  CHECK(r.num_classes == 4);
  CHECK(r.seconds > 0);
  // The features kept for --dump-features are the ones ranked: unit rows, one per image.
  REQUIRE(r.train_features.shape() == Shape{64, vc.embed_dim});
  REQUIRE(r.test_features.shape() == Shape{16, vc.embed_dim});
  require_unit_rows(r.test_features);
  const auto test = data::open_dataset(spec, data::Split::test);
  CHECK(r.test_labels == labels_of(*test));
  CHECK(r.test_features.to_vector() ==
        extract_features(same.backbone, *test, data::default_normalization(1), 16).to_vector());

  CHECK_THROWS_AS(knn_report(same.backbone, same.backbone, "no-such-dataset", {5, 0.07, 32}),
                  Error);
}

TEST_CASE("knn: non-finite features are refused, never scored", "[knn]") {
  // A NaN query would otherwise tie every class at NaN votes and count as correct.
  const Tensor bank = at_angles({0.0, 1.5});
  Tensor query = at_angles({0.1, 1.4});
  query.data<float>()[2] = std::nanf("");
  CHECK_THROWS_WITH(knn_classify(bank, {0, 1}, query, {1, 0}, 2, 1, 0.07),
                    Catch::Contains("test feature row 1 is not finite"));
  Tensor bad_bank = at_angles({0.0, 1.5});
  bad_bank.data<float>()[1] = INFINITY;
  CHECK_THROWS_WITH(knn_classify(bad_bank, {0, 1}, at_angles({0.1}), {0}, 2, 1, 0.07),
                    Catch::Contains("train feature row 0 is not finite"));

  // A teacher with one NaN weight: its features are refused where they are extracted.
  const auto ds = data::open_dataset("synthetic:n=16,test=4,size=16,classes=4", data::Split::train);
  VitConfig vc = vit_preset("vit_micro");
  vc.img_size = 16;
  vc.patch_size = 4;
  vc.in_chans = 1;
  Rng rng(5);
  VisionTransformer model(vc, rng);
  model.cls_token.data<float>()[0] = std::nanf("");
  CHECK_THROWS_WITH(extract_features(model, *ds, data::default_normalization(1), 8),
                    Catch::Contains("features of image 0") && Catch::Contains("not finite"));
}
