// The DINO training job: hand-computed loss/center/schedule values, a short run on the
// synthetic data that learns, bit-identical resume, and one full ViT-S/16 step.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "core/safetensors.h"
#include "losses/dino_loss.h"
#include "train/config.h"
#include "train/step.h"
#include "train/trainer.h"

using namespace dino;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / "dino_tests" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

// A small, fast recipe on the synthetic dataset.
nlohmann::json small_recipe(int64_t extra_steps_cap = 0) {
  return load_config("", {"data.dataset=synthetic:n=512,test=256,size=16,classes=4,seed=3",
                          "model.arch=vit_micro", "model.img_size=16", "model.patch_size=4",
                          "model.drop_path_rate=0.1", "head.out_dim=256", "head.hidden_dim=128",
                          "head.bottleneck_dim=32", "crops.global_size=16", "crops.local_crops=2",
                          "crops.local_size=8", "crops.local_scale=[0.1, 0.4]",
                          "optim.batch_size=32", "optim.epochs=6", "optim.lr=0.004",
                          "optim.warmup_epochs=0.5", "optim.freeze_last_layer=0.25",
                          "optim.momentum_teacher=0.99", "optim.weight_decay_end=0.04",
                          "loss.teacher_temp=0.02", "loss.warmup_teacher_temp=0.02",
                          "run.log_every=1000", "run.knn_k=10", "run.max_steps=" +
                              std::to_string(extra_steps_cap)});
}

}  // namespace

TEST_CASE("DINO loss and center update match hand-computed values", "[train]") {
  // G = 2 global views, V = 3 views, B = 1, K = 2.
  const std::vector<double> s{0.3, -0.1, 0.5, 0.2, -0.4, 0.1};  // student rows v = 0, 1, 2
  const std::vector<double> t{0.2, 0.0, -0.1, 0.3};               // teacher rows g = 0, 1
  const double tau_s = 0.1, tau_t = 0.05, c0 = 0.05, c1 = -0.02;
  DinoLossConfig cfg;
  cfg.out_dim = 2;
  cfg.center_momentum = 0.9;
  DinoLoss loss(cfg, 1);
  loss.center.data<float>()[0] = float(c0);
  loss.center.data<float>()[1] = float(c1);
  Tensor st = Tensor::from_vector(std::vector<float>(s.begin(), s.end()), {3, 2});
  Tensor tt = Tensor::from_vector(std::vector<float>(t.begin(), t.end()), {2, 2});
  DinoLossStats stats;
  const double got = loss.forward(st, tt, tau_t, &stats).item();

  auto softmax2 = [](double a, double b, double T, int k) {
    const double ea = std::exp(a / T), eb = std::exp(b / T);
    return (k == 0 ? ea : eb) / (ea + eb);
  };
  double expected = 0;
  for (int g = 0; g < 2; ++g)
    for (int v = 0; v < 3; ++v) {
      if (v == g) continue;
      for (int k = 0; k < 2; ++k) {
        const double q = softmax2(t[2 * g] - c0, t[2 * g + 1] - c1, tau_t, k);
        expected -= q * std::log(softmax2(s[2 * v], s[2 * v + 1], tau_s, k));
      }
    }
  expected /= 4;  // pairs (0,1) (0,2) (1,0) (1,2)
  CHECK(got == Approx(expected).epsilon(1e-5));
  // The center moves after the loss, towards the mean of the raw teacher logits.
  CHECK(loss.center.data<float>()[0] == Approx(0.9 * c0 + 0.1 * (0.2 - 0.1) / 2).epsilon(1e-6));
  CHECK(loss.center.data<float>()[1] == Approx(0.9 * c1 + 0.1 * (0.0 + 0.3) / 2).epsilon(1e-6));
  CHECK(stats.kl >= -1e-6);
  CHECK(stats.teacher_entropy > 0);
  CHECK(stats.teacher_entropy < std::log(2.0));
}

TEST_CASE("recipes reject unknown keys and mistyped values", "[train]") {
  CHECK_THROWS_WITH(load_config("", {"optim.lrr=0.1"}), Catch::Contains("unknown key 'optim.lrr'"));
  CHECK_THROWS_WITH(load_config("", {"optim.lr=fast"}), Catch::Contains("'optim.lr' expects"));
  CHECK_THROWS_WITH(load_config("/nonexistent/recipe.json", {}), Catch::Contains("cannot open recipe"));
  auto cfg = load_config("", {"optim.epochs=2", "data.dataset=synthetic"});
  CHECK(cfg["optim"]["epochs"].get<double>() == 2.0);
  CHECK(cfg["data"]["dataset"] == "synthetic");
}

// What a test-sized run (96 steps, ~15 s) shows reliably: the recipe's teacher stays clear of
// both collapse signatures, every output is written, and the k-NN report has its three rows.
// Learning itself (trained teacher far above the random-init control) takes about an epoch of
// Fashion-MNIST with this engine's recipe (README), more than a unit test can spend.
TEST_CASE("a short DINO run on synthetic data stays clear of collapse", "[train][slow]") {
  const std::string dir = fresh_dir("short_run");
  TrainOptions opt;
  opt.out_dir = dir;
  opt.quiet = true;
  const TrainResult r = train(small_recipe(), opt);
  INFO(r.to_json().dump(2));
  CHECK(r.steps == 96);
  CHECK(std::isfinite(r.last_loss));
  const double log_k = std::log(256.0);
  CHECK(r.teacher_entropy < 0.9 * log_k);  // not uniform
  CHECK(r.batch_entropy > 0.3 * log_k);    // not one dominant dimension
  CHECK_FALSE(r.collapse_warning.has_value());
  REQUIRE(!r.knn.empty());
  for (const char* row : {"trained", "random_init", "raw_pixels"}) {
    INFO(row);
    CHECK(r.knn[row]["top1"].get<double>() > 25.0);  // above chance for 4 classes
    CHECK(r.knn[row]["top1"].get<double>() <= 100.0);
  }
  CHECK(fs::exists(dir + "/checkpoint.safetensors"));
  CHECK(fs::exists(dir + "/metrics.jsonl"));
  CHECK(fs::exists(dir + "/knn.json"));
}

TEST_CASE("a resumed run is bit-identical to an uninterrupted one", "[train][slow]") {
  auto recipe = small_recipe(24);
  recipe["run"]["knn"] = false;
  TrainOptions a;
  a.out_dir = fresh_dir("resume_a");
  a.quiet = true;
  train(recipe, a);

  TrainOptions b = a;
  b.out_dir = fresh_dir("resume_b");
  auto interrupted = recipe;
  interrupted["run"]["max_steps"] = 11;  // stops mid-epoch (16 steps per epoch)
  train(interrupted, b);
  b.resume = true;
  const TrainResult rb = train(recipe, b);
  CHECK(rb.steps == 24);

  const SafeTensors x = load_safetensors(a.out_dir + "/checkpoint.safetensors");
  const SafeTensors y = load_safetensors(b.out_dir + "/checkpoint.safetensors");
  REQUIRE(x.tensors.size() == y.tensors.size());
  for (size_t i = 0; i < x.tensors.size(); ++i) {
    INFO(x.tensors[i].first);
    REQUIRE(x.tensors[i].first == y.tensors[i].first);
    CHECK(std::memcmp(x.tensors[i].second.raw_data(), y.tensors[i].second.raw_data(),
                      x.tensors[i].second.nbytes()) == 0);
  }
  CHECK(x.metadata.at("drop_rng") == y.metadata.at("drop_rng"));
}

TEST_CASE("resuming with a different recipe is refused", "[train][slow]") {
  auto recipe = small_recipe(2);
  recipe["run"]["knn"] = false;
  TrainOptions o;
  o.out_dir = fresh_dir("resume_mismatch");
  o.quiet = true;
  train(recipe, o);
  o.resume = true;
  recipe["optim"]["lr"] = 0.5;
  CHECK_THROWS_WITH(train(recipe, o), Catch::Contains("optim.lr"));
}

TEST_CASE("ViT-S/16 with 2x224 + 8x96 crops and K = 65536 runs a full training step", "[train][slow]") {
  auto cfg = load_config("", {"optim.batch_size=2"});  // DINO's ViT-S/16 defaults otherwise
  const int64_t B = 2;
  auto student = build_student(cfg, 3);
  VitConfig tv = student->backbone.config();
  tv.drop_path_rate = 0;
  Rng rng(5);
  DinoModel teacher(tv, student->head.config(), rng);
  DinoLoss loss(loss_config(cfg), 1);
  AdamW opt = make_optimizer(*student);
  std::vector<Tensor> crops;
  for (int v = 0; v < 10; ++v) {
    const int64_t S = v < 2 ? 224 : 96;
    crops.push_back(Tensor::randn({B, 3, S, S}, rng));
  }
  StepSettings s;
  s.lr = 1e-4;
  s.weight_decay = 0.04;
  Rng drop(1);
  const Tensor before = student->backbone.blocks[0]->attn.qkv.weight.clone();
  StepOutputs out = dino_step(*student, teacher, loss, opt, crops, s, &drop);
  CHECK(out.student_logits.shape() == Shape{10 * B, 65536});
  CHECK(out.teacher_logits.shape() == Shape{2 * B, 65536});
  CHECK(std::isfinite(out.stats.loss));
  CHECK(out.stats.loss > 0);
  double moved = 0;
  const float* a = before.data<float>();
  const float* b = student->backbone.blocks[0]->attn.qkv.weight.data<float>();
  for (int64_t i = 0; i < before.numel(); ++i) moved += std::abs(double(a[i]) - b[i]);
  CHECK(moved > 0);
}
