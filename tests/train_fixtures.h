#pragma once
// What the CPU and CUDA training tests share: a scratch folder per test, the small, fast
// recipe (vit_micro on 16-pixel synthetic images, patch 4 so 16 + 1 and 4 + 1 tokens, K = 256,
// 16 steps per epoch) and the resume experiment.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "train/config.h"
#include "train/trainer.h"

namespace dino::test {

// An empty folder <tmp>/<suite>-<pid>/<name>, removed first if it exists. The process id
// keeps test runs of two build folders at the same time out of each other's files.
inline std::string fresh_dir(const std::string& suite, const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path d = fs::temp_directory_path() / (suite + "-" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

inline nlohmann::json small_recipe(int64_t max_steps = 0) {
  return load_config("", {"data.dataset=synthetic:n=512,test=256,size=16,classes=4,seed=3",
                          "model.arch=vit_micro",
                          "model.img_size=16",
                          "model.patch_size=4",
                          "model.drop_path_rate=0.1",
                          "head.out_dim=256",
                          "head.hidden_dim=128",
                          "head.bottleneck_dim=32",
                          "crops.global_size=16",
                          "crops.local_crops=2",
                          "crops.local_size=8",
                          "crops.local_scale=[0.1, 0.4]",
                          "optim.batch_size=32",
                          "optim.epochs=6",
                          "optim.lr=0.004",
                          "optim.warmup_epochs=0.5",
                          "optim.freeze_last_layer=0.25",
                          "optim.momentum_teacher=0.99",
                          "optim.weight_decay_end=0.04",
                          "loss.teacher_temp=0.02",
                          "loss.warmup_teacher_temp=0.02",
                          "run.log_every=1000",
                          "run.knn_k=10",
                          "run.max_steps=" + std::to_string(max_steps)});
}

// Trains the small recipe for 24 steps on `device` twice: straight through into dir_a, and
// stopped after 11 steps (mid-epoch) then resumed into dir_b. Returns what differs between the
// two final checkpoints: the names of tensors whose bytes differ; empty when the resumed run is
// bit-identical.
inline std::vector<std::string> resume_differences(const std::string& device,
                                                   const std::string& dir_a,
                                                   const std::string& dir_b) {
  auto recipe = small_recipe(24);
  recipe["run"]["knn"] = false;
  TrainOptions a;
  a.out_dir = dir_a;
  a.quiet = true;
  a.device = device;
  train(recipe, a);

  TrainOptions b = a;
  b.out_dir = dir_b;
  auto interrupted = recipe;
  interrupted["run"]["max_steps"] = 11;
  train(interrupted, b);
  b.resume = true;
  const TrainResult rb = train(recipe, b);
  DINO_CHECK(rb.steps == 24, "[test] the resumed run ended at step ", rb.steps, ", not 24");

  const SafeTensors x = load_safetensors(dir_a + "/checkpoint.safetensors");
  const SafeTensors y = load_safetensors(dir_b + "/checkpoint.safetensors");
  DINO_CHECK(x.tensors.size() == y.tensors.size(), "[test] the checkpoints hold ", x.tensors.size(),
             " and ", y.tensors.size(), " tensors");
  std::vector<std::string> differ;
  for (size_t i = 0; i < x.tensors.size(); ++i) {
    const auto& [name, t] = x.tensors[i];
    const Tensor& u = y.tensors[i].second;
    if (name != y.tensors[i].first || t.nbytes() != u.nbytes() ||
        std::memcmp(t.raw_data(), u.raw_data(), t.nbytes()) != 0)
      differ.push_back(name);
  }
  return differ;
}

}  // namespace dino::test
