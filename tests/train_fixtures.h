#pragma once
// What the CPU and CUDA training tests share: a scratch folder per test and the small, fast
// recipe (vit_micro on 16-pixel synthetic images, patch 4 so 16 + 1 and 4 + 1 tokens, K = 256,
// 16 steps per epoch).
#include <filesystem>
#include <string>

#include "train/config.h"

namespace dino::test {

// An empty folder <tmp>/<suite>/<name>, removed first if it exists.
inline std::string fresh_dir(const std::string& suite, const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path d = fs::temp_directory_path() / suite / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

inline nlohmann::json small_recipe(int64_t max_steps = 0) {
  return load_config("", {"data.dataset=synthetic:n=512,test=256,size=16,classes=4,seed=3",
                          "model.arch=vit_micro", "model.img_size=16", "model.patch_size=4",
                          "model.drop_path_rate=0.1", "head.out_dim=256", "head.hidden_dim=128",
                          "head.bottleneck_dim=32", "crops.global_size=16", "crops.local_crops=2",
                          "crops.local_size=8", "crops.local_scale=[0.1, 0.4]",
                          "optim.batch_size=32", "optim.epochs=6", "optim.lr=0.004",
                          "optim.warmup_epochs=0.5", "optim.freeze_last_layer=0.25",
                          "optim.momentum_teacher=0.99", "optim.weight_decay_end=0.04",
                          "loss.teacher_temp=0.02", "loss.warmup_teacher_temp=0.02",
                          "run.log_every=1000", "run.knn_k=10",
                          "run.max_steps=" + std::to_string(max_steps)});
}

}  // namespace dino::test
