#pragma once
// Training recipes: JSON with nested groups (data, model, head, crops, optim, loss, run).
// Every key has a default (default_config()); a recipe file and "group.key=value" overrides
// may only set keys that exist there, so a typo is an error, not a silently ignored setting.
// parse_recipe() reads every key into the typed sections below and validates each one (type,
// range) and the keys that must agree with each other, so a bad recipe stops before any work
// starts; what needs the dataset (batch size, step count, the k-NN test split) is checked by
// the trainer right after the dataset opens (train/run_plan.h).
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/multicrop.h"
#include "losses/dino_loss.h"
#include "models/dino_head.h"
#include "models/vit.h"

namespace dino {

nlohmann::json default_config();
// One line on what each key of default_config() means, by its dotted name ("optim.lr").
const std::map<std::string, std::string>& recipe_key_meanings();
// Merges `overrides` into `base` key by key; unknown keys or mismatched types throw, naming
// the key and `origin` (a file path or "command line").
void merge_config(nlohmann::json& base, const nlohmann::json& overrides, const std::string& origin);
// Applies "group.key=value" (value parsed as JSON, else taken as a string).
void apply_override(nlohmann::json& cfg, const std::string& assignment);
// A recipe's JSON text (comments allowed) merged over default_config(); `origin` names it in
// errors.
nlohmann::json parse_config_text(const std::string& text, const std::string& origin);
// A recipe file as JSON (comments allowed), not yet merged; throws naming the file.
nlohmann::json read_recipe_file(const std::string& path);
// default_config() <- file (if any) <- overrides.
nlohmann::json load_config(const std::string& path, const std::vector<std::string>& overrides);

struct DataConfig {
  std::string dataset;  // a data::open_dataset spec
  int loader_threads = 1;
  // "gpu": the loader hands over source images and drawn view parameters, and the views are
  // rendered on the device (data/augment_gpu.h); "cpu": the loader augments; "auto": gpu with
  // --device cuda, cpu otherwise (RunPlan::crop_format).
  std::string augment = "auto";
};

struct ModelConfig {
  std::string arch;       // a vit_preset name
  VitConfig vit;          // in_chans is the dataset's: see Recipe::vit()
  std::string attention;  // on the GPU: "ours" or "cudnn"
  // A backbone (`dino export`, `dino import`) or training checkpoint whose ViT weights the
  // student and teacher start from; empty: random initialisation from run.seed.
  std::string init_from;
};

struct OptimConfig {
  int batch_size = 64;  // per rank (DINO's batch_size_per_gpu)
  double epochs = 100, lr = 5e-4, min_lr = 1e-6, warmup_epochs = 10;
  double weight_decay = 0.04, weight_decay_end = 0.4;
  double clip_grad = 3.0;          // 0 disables clipping
  double freeze_last_layer = 1.0;  // epochs
  double momentum_teacher = 0.996;
  // DINO's linear scaling rule on the global batch: lr * batch_size * ranks / 256.
  double scaled_lr(int ranks = 1) const { return lr * double(batch_size) * double(ranks) / 256.0; }
};

struct RunConfig {
  uint64_t seed = 0;
  int64_t max_steps = 0;  // 0: as many as optim.epochs gives
  int64_t log_every = 10;
  int64_t checkpoint_every = 0;  // 0: only at the end
  bool knn = true;
  int64_t knn_k = 20;
  double knn_temperature = 0.07;
  int64_t eval_batch = 256;
  bool cuda_graph = false;  // train/step_graph.h
};

struct Recipe {
  nlohmann::json json;  // the merged recipe the sections were read from (checkpoints store it)
  DataConfig data;
  ModelConfig model;
  HeadConfig head;              // in_dim is the backbone's embed_dim
  data::MultiCropConfig crops;  // norm is set per channel count: see crops_for()
  OptimConfig optim;
  DinoLossConfig loss;
  RunConfig run;

  VitConfig vit(int64_t in_chans) const;
  data::MultiCropConfig crops_for(int channels) const;
};

// Reads and validates every key of `cfg` (merged over default_config() first, so a recipe may
// leave keys out). Throws one dino::Error naming `origin`, the key, the value and what is
// expected.
Recipe parse_recipe(const nlohmann::json& cfg, const std::string& origin = "recipe");
// The same for a recipe that must hold every key, as a checkpoint's does: a missing key is an
// error naming it rather than a default.
Recipe parse_saved_recipe(const nlohmann::json& cfg, const std::string& origin);
// load_config() then parse_recipe(); errors name the file, or "command line" for overrides.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace dino
