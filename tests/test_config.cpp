// Recipes: every key read into its typed section and validated, alone and against the keys it
// must agree with, before a run does any work.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>

#include "train/backbone_file.h"
#include "train/config.h"
#include "train/train_state.h"
#include "train/trainer.h"
#include "train_fixtures.h"

using namespace dino;

namespace {

// The message parse_recipe gives for the default recipe with these overrides.
std::string recipe_error(const std::vector<std::string>& overrides) {
  try {
    load_recipe("", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("recipe: the typed sections hold the recipe's values", "[config]") {
  const Recipe r = load_recipe("", {"model.arch=vit_micro", "model.img_size=32", "optim.lr=0.001",
                                    "optim.batch_size=128", "crops.local_crops=0", "run.knn_k=5"});
  CHECK(r.model.arch == "vit_micro");
  CHECK(r.model.vit.embed_dim == 64);
  CHECK(r.model.vit.img_size == 32);
  CHECK(r.vit(1).in_chans == 1);
  CHECK(r.head.in_dim == 64);
  CHECK(r.optim.scaled_lr() == Approx(0.001 * 128 / 256));
  CHECK(r.crops.local.count == 0);
  CHECK(r.crops_for(1).norm.mean.size() == 1);
  CHECK(r.run.knn_k == 5);
  CHECK(r.loss.out_dim == 65536);
  CHECK(r.json["optim"]["lr"] == 0.001);
}

TEST_CASE("recipe: out-of-range values are refused, naming the key, value and range", "[config]") {
  CHECK_THAT(recipe_error({"optim.lr=-1"}),
             Catch::Contains("'optim.lr' is -1") && Catch::Contains("expected a number in (0, 1]"));
  CHECK_THAT(recipe_error({"optim.epochs=1e30"}), Catch::Contains("'optim.epochs' is 1e+30"));
  CHECK_THAT(recipe_error({"optim.epochs=0"}), Catch::Contains("'optim.epochs' is 0"));
  CHECK_THAT(recipe_error({"optim.momentum_teacher=1.5"}),
             Catch::Contains("'optim.momentum_teacher' is 1.5") && Catch::Contains("[0, 1]"));
  CHECK_THAT(recipe_error({"run.knn_k=0"}), Catch::Contains("'run.knn_k' is 0"));
  CHECK_THAT(recipe_error({"run.eval_batch=0"}), Catch::Contains("'run.eval_batch' is 0"));
  CHECK_THAT(recipe_error({"run.knn_temperature=0"}), Catch::Contains("'run.knn_temperature'"));
  CHECK_THAT(recipe_error({"run.seed=-1"}), Catch::Contains("'run.seed' is -1"));
  CHECK_THAT(recipe_error({"run.log_every=0"}), Catch::Contains("'run.log_every' is 0"));
  CHECK_THAT(recipe_error({"run.max_steps=-5"}), Catch::Contains("'run.max_steps' is -5"));
  CHECK_THAT(recipe_error({"data.loader_threads=0"}),
             Catch::Contains("'data.loader_threads' is 0"));
  CHECK_THAT(recipe_error({"data.dataset=\"\""}), Catch::Contains("'data.dataset'"));
  CHECK_THAT(recipe_error({"data.augment=gpus"}),
             Catch::Contains("'data.augment' is \"gpus\"") && Catch::Contains("\"auto\""));
  CHECK_THAT(recipe_error({"model.arch=vit_huge"}),
             Catch::Contains("'model.arch' is \"vit_huge\"") && Catch::Contains("vit_small"));
  CHECK_THAT(recipe_error({"model.drop_path_rate=1"}), Catch::Contains("'model.drop_path_rate'"));
  CHECK_THAT(recipe_error({"model.attention=flash"}), Catch::Contains("'model.attention'"));
  CHECK_THAT(recipe_error({"head.out_dim=0"}), Catch::Contains("'head.out_dim' is 0"));
  CHECK_THAT(recipe_error({"head.nlayers=0"}), Catch::Contains("'head.nlayers' is 0"));
  CHECK_THAT(recipe_error({"crops.flip_p=2"}), Catch::Contains("'crops.flip_p' is 2"));
  CHECK_THAT(recipe_error({"crops.hue=0.6"}), Catch::Contains("'crops.hue'"));
  CHECK_THAT(recipe_error({"crops.global_scale=[0, 1]"}), Catch::Contains("'crops.global_scale'"));
  CHECK_THAT(recipe_error({"crops.blur_p=[1, 0.1, 1.5]"}), Catch::Contains("'crops.blur_p'"));
  CHECK_THAT(recipe_error({"crops.local_crops=-1"}), Catch::Contains("'crops.local_crops' is -1"));
  CHECK_THAT(recipe_error({"loss.teacher_temp=0"}), Catch::Contains("'loss.teacher_temp' is 0"));
  CHECK_THAT(recipe_error({"loss.center_momentum=1.1"}), Catch::Contains("'loss.center_momentum'"));
  CHECK_THAT(recipe_error({"loss.koleo_weight=-1"}), Catch::Contains("'loss.koleo_weight' is -1"));
  CHECK_THAT(recipe_error({"optim.weight_decay=-0.1"}), Catch::Contains("'optim.weight_decay'"));
  CHECK_THAT(recipe_error({"optim.clip_grad=-3"}), Catch::Contains("'optim.clip_grad' is -3"));
  CHECK_THAT(recipe_error({"optim.batch_size=0"}), Catch::Contains("'optim.batch_size' is 0"));
}

TEST_CASE("recipe: keys that must agree with each other are checked together", "[config]") {
  CHECK_THAT(recipe_error({"model.num_heads=5"}),
             Catch::Contains("'model.num_heads' is 5") &&
                 Catch::Contains("divisor of the embedding width 384"));
  CHECK_THAT(recipe_error({"model.patch_size=32", "model.img_size=16"}),
             Catch::Contains("'model.patch_size' is 32"));
  CHECK_THAT(recipe_error({"crops.global_size=8"}), Catch::Contains("'crops.global_size' is 8") &&
                                                        Catch::Contains("model.patch_size (16)"));
  CHECK_THAT(recipe_error({"crops.local_size=8"}), Catch::Contains("'crops.local_size' is 8"));
  CHECK(recipe_error({"crops.local_size=8", "crops.local_crops=0"}) == "accepted");
  CHECK_THAT(recipe_error({"crops.local_scale=[0.4, 0.1]"}), Catch::Contains("min <= max"));
  CHECK_THAT(recipe_error({"optim.warmup_epochs=200"}),
             Catch::Contains("'optim.warmup_epochs' is 200"));
  CHECK_THAT(recipe_error({"loss.warmup_teacher_temp_epochs=101"}),
             Catch::Contains("'loss.warmup_teacher_temp_epochs'"));
  CHECK_THAT(recipe_error({"optim.min_lr=0.1"}),
             Catch::Contains("'optim.min_lr' is 0.1") && Catch::Contains("scaled learning rate"));
}

TEST_CASE("recipe: wrong JSON types are refused, never converted", "[config]") {
  CHECK_THAT(recipe_error({"optim.batch_size=1.5"}), Catch::Contains("'optim.batch_size' expects"));
  CHECK_THAT(recipe_error({"run.knn=1"}), Catch::Contains("'run.knn' expects"));
  CHECK_THAT(recipe_error({"crops.blur_p=[1, \"a\", 0]"}),
             Catch::Contains("'crops.blur_p' expects numbers"));
  CHECK_THAT(recipe_error({"optim=3"}), Catch::Contains("'optim' must be an object"));
  CHECK_THAT(recipe_error({".lr=3"}), Catch::Contains("is not a group.key name"));
  // Integers past int64 arrive as floats from the JSON parser: refused like any float.
  CHECK_THAT(recipe_error({"run.max_steps=99999999999999999999"}),
             Catch::Contains("'run.max_steps' expects"));
  CHECK_THAT(recipe_error({"run.seed=18446744073709551615"}), Catch::Contains("'run.seed' is"));
}

TEST_CASE("recipe: a saved recipe must hold every key", "[config]") {
  nlohmann::json saved = default_config();
  CHECK_NOTHROW(parse_saved_recipe(saved, "ck.safetensors"));
  saved["model"].erase("arch");
  CHECK_THROWS_WITH(parse_saved_recipe(saved, "ck.safetensors"),
                    Catch::Contains("ck.safetensors") && Catch::Contains("has no 'model.arch'"));
  CHECK_THROWS_WITH(parse_saved_recipe(nlohmann::json::array(), "ck.safetensors"),
                    Catch::Contains("must be an object"));
}

TEST_CASE(
    "recipe: every key has a one-line meaning for `dino config`, and no meaning lacks its key",
    "[config]") {
  std::vector<std::string> keys;
  std::function<void(const nlohmann::json&, const std::string&)> walk =
      [&](const nlohmann::json& j, const std::string& path) {
        for (auto it = j.begin(); it != j.end(); ++it) {
          const std::string key = path.empty() ? it.key() : path + "." + it.key();
          if (it->is_object())
            walk(*it, key);
          else
            keys.push_back(key);
        }
      };
  walk(default_config(), "");
  const auto& meanings = recipe_key_meanings();
  for (const std::string& key : keys) {
    INFO(key);
    CHECK((meanings.count(key) == 1 && !meanings.at(key).empty()));
  }
  CHECK(meanings.size() == keys.size());
}

TEST_CASE("recipe: a checkpoint written before data.augment and model.init_from still loads",
          "[config]") {
  nlohmann::json saved = default_config();
  saved["data"].erase("augment");
  saved["model"].erase("init_from");
  const Recipe r = parse_saved_recipe(saved, "old.safetensors");
  CHECK(r.data.augment == "cpu");
  CHECK(r.model.init_from.empty());
}

TEST_CASE("model.init_from: student and teacher backbones start from the file, heads as seeded",
          "[config][train]") {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("dino_init_from_test-" + std::to_string(::getpid())))
                              .string();
  std::filesystem::create_directories(dir);
  const std::vector<std::string> tiny{"model.arch=vit_micro", "model.img_size=16",
                                      "model.patch_size=4",   "head.out_dim=32",
                                      "head.hidden_dim=32",   "head.bottleneck_dim=8"};
  const Recipe fresh = load_recipe("", tiny);
  // The weights to start from: another seed, so they differ from the recipe's own.
  Rng rng(123);
  DinoModel other(fresh.vit(1), fresh.head, rng);
  const std::string file = dir + "/backbone.safetensors";
  export_backbone(file, other.backbone);

  std::vector<std::string> with = tiny;
  with.push_back("model.init_from=" + file);
  const Recipe recipe = load_recipe("", with);
  TrainState state(recipe, 1, 4, Device::cpu);
  TrainState plain(fresh, 1, 4, Device::cpu);
  state.init_backbones_from(recipe.model.init_from);
  const auto want = other.backbone.named_parameters();
  const auto student = state.student->backbone.named_parameters();
  const auto teacher = state.teacher->backbone.named_parameters();
  REQUIRE(student.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK(student[i].second.to_vector() == want[i].second.to_vector());
    CHECK(teacher[i].second.to_vector() == want[i].second.to_vector());
  }
  const auto head = state.student->head.named_parameters(),
             seeded = plain.student->head.named_parameters();
  for (size_t i = 0; i < head.size(); ++i)
    CHECK(head[i].second.to_vector() == seeded[i].second.to_vector());

  std::vector<std::string> wider = with;
  wider.push_back("model.embed_dim=32");
  wider.push_back("model.num_heads=2");
  const Recipe mismatch = load_recipe("", wider);
  TrainState other_shape(mismatch, 1, 4, Device::cpu);
  CHECK_THROWS_WITH(other_shape.init_backbones_from(file),
                    Catch::Contains("model.init_from=") && Catch::Contains("model.embed_dim"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("recipe: what needs the dataset is checked before the run writes anything",
          "[config][train]") {
  namespace fs = std::filesystem;
  const std::string dir = test::fresh_dir("config_plan", "run");
  fs::remove_all(dir);
  auto run = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> o = {"data.dataset=synthetic:n=64,test=16,size=16,classes=4",
                                  "model.arch=vit_micro",
                                  "model.img_size=16",
                                  "model.patch_size=4",
                                  "crops.global_size=16",
                                  "crops.local_size=8",
                                  "head.out_dim=32",
                                  "head.hidden_dim=32",
                                  "head.bottleneck_dim=8",
                                  "optim.batch_size=16"};
    o.insert(o.end(), extra.begin(), extra.end());
    TrainOptions opt;
    opt.out_dir = dir;
    opt.quiet = true;
    try {
      train(load_recipe("", o), opt);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("trained");
  };
  CHECK_THAT(run({"optim.batch_size=65"}), Catch::Contains("'optim.batch_size' is 65"));
  CHECK_THAT(run({"run.knn_k=65"}), Catch::Contains("'run.knn_k' is 65"));
  CHECK_THAT(run({"optim.epochs=0.1", "optim.warmup_epochs=0", "optim.freeze_last_layer=0"}),
             Catch::Contains("no step at all"));
  CHECK_THAT(run({"data.dataset=synthetic:n=64,test=16,size=16,classes=4,channels=3",
                  "model.attention=cudnn"}),
             Catch::Contains("model.attention=cudnn needs the GPU"));
  CHECK(!fs::exists(dir));
}
