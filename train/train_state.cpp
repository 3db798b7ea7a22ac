#include "train/train_state.h"

#include "train/backbone_file.h"
#include "train/checkpoint.h"
#include "train/step.h"
#include "train/trainer.h"

namespace dino {

namespace {

using nlohmann::json;

// Keys a resumed run may change: how long it runs and what it reports, not what it computes.
bool resumable_difference(const std::string& key) {
  return key == "max_steps" || key == "log_every" || key == "checkpoint_every" ||
         key.rfind("knn", 0) == 0 || key == "eval_batch" || key == "loader_threads" ||
         key == "cuda_graph";
}

void check_same_recipe(const json& saved, const json& now, const std::string& path,
                       const std::string& where = "") {
  for (auto it = saved.begin(); it != saved.end(); ++it) {
    const std::string key = where.empty() ? it.key() : where + "." + it.key();
    if (it->is_object()) {
      check_same_recipe(*it, now.at(it.key()), path, key);
      continue;
    }
    DINO_CHECK(resumable_difference(it.key()) || *it == now.at(it.key()),
               "[train] --resume: ", path, " was trained with ", key, " = ", it->dump(),
               ", this recipe says ", now.at(it.key()).dump());
  }
}

}  // namespace

TrainState::TrainState(const Recipe& recipe, int64_t in_chans_, int64_t iters_per_epoch,
                       Device device)
    : student(build_student(recipe, in_chans_)),
      teacher(build_teacher(*student)),
      loss(std::make_unique<DinoLoss>(recipe.loss, iters_per_epoch)),
      drop(make_drop_path_noise(0, device)),
      in_chans(in_chans_) {
  if (device != Device::cpu) {
    student->to(device);
    teacher->to(device);
    loss->to(device);
  }
  optimizer = std::make_unique<AdamW>(make_optimizer(*student));
}

void TrainState::resume(const std::string& path, const Recipe& recipe, int ranks) {
  const Checkpoint ck = read_checkpoint(path);
  const int64_t saved_batch = ck.recipe.optim.batch_size * ck.meta.ranks;
  const int64_t batch = int64_t(recipe.optim.batch_size) * ranks;
  DINO_CHECK(
      saved_batch == batch, "[train] --resume: ", path, " was trained with a global batch of ",
      saved_batch, " (optim.batch_size = ", ck.recipe.optim.batch_size, " on ", ck.meta.ranks,
      ck.meta.ranks == 1 ? " rank" : " ranks", "), this run's is ", batch, " (",
      recipe.optim.batch_size, " on ", ranks, ranks == 1 ? " rank" : " ranks",
      "): the schedules and the data order follow the global batch, so a resumed run keeps it",
      saved_batch % ranks == 0
          ? str_cat("; on ", ranks, ranks == 1 ? " rank" : " ranks",
                    " set optim.batch_size=", saved_batch / ranks)
          : str_cat("; ", saved_batch, " images do not divide among ", ranks, " ranks"));
  nlohmann::json saved_config = ck.meta.config;
  saved_config["optim"]["batch_size"] =
      recipe.optim.batch_size;  // compared as the global batch above
  check_same_recipe(saved_config, recipe.json, path);
  DINO_CHECK(ck.meta.in_chans == in_chans, "[train] --resume: ", path, " was trained on ",
             ck.meta.in_chans, "-channel images, the dataset has ", in_chans);
  load_module(*student, ck, "student.");
  load_module(*teacher, ck, "teacher.");
  load_module(*loss, ck, "loss.");
  load_optimizer(*optimizer, ck);
  step = ck.meta.step;
}

void TrainState::init_backbones_from(const std::string& path) {
  init_backbone_from(student->backbone, path);
  auto src = student->backbone.named_parameters();
  auto dst = teacher->backbone.named_parameters();
  for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_from(src[i].second);
}

void TrainState::save(const std::string& path, const Recipe& recipe, int ranks) const {
  CheckpointMeta meta;
  meta.ranks = ranks;
  meta.config = recipe.json;
  meta.step = step;
  meta.in_chans = in_chans;
  save_checkpoint(path, meta, *student, *teacher, *loss, *optimizer);
}

}  // namespace dino
