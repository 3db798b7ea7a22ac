#pragma once
// Training checkpoints (ARCHITECTURE §8): one safetensors file with the student and teacher under
// "student.backbone.", "student.head.", "teacher.backbone.", "teacher.head.", the loss center
// "loss.center", AdamW state "optimizer.<name>.exp_avg|exp_avg_sq|step", and in the metadata
// the merged config, the step, in_chans and every random state. Written atomically, and never
// with a NaN or an infinity in it.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/optim.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "losses/dino_loss.h"
#include "models/multicrop.h"
#include "train/config.h"

namespace dino {

struct CheckpointMeta {
  nlohmann::json config;  // the run's merged recipe
  int64_t step = 0;       // optimizer steps done
  int64_t in_chans = 3;
  int64_t ranks = 1;  // data-parallel ranks that trained it (optim.batch_size is per rank)
};

// Throws, writing nothing, when a tensor holds a NaN or an infinity (an update that diverged):
// the checkpoint already on disk stays as it was.
void save_checkpoint(const std::string& path, const CheckpointMeta& meta, const DinoModel& student,
                     const DinoModel& teacher, const DinoLoss& loss, AdamW& optimizer);

struct Checkpoint {
  std::string path;
  CheckpointMeta meta;
  Recipe recipe;  // meta.config, read and validated
  SafeTensors tensors;
};

// Throws naming the file (and the key or tensor) when it is missing, damaged or not a
// dino-engine checkpoint.
Checkpoint read_checkpoint(const std::string& path);
// The same for a file already read (`tensors` is load_safetensors(path)).
Checkpoint read_checkpoint_from(const std::string& path, SafeTensors tensors);

// Copies "<prefix><name>" for every parameter and buffer of `m`; a missing name or a shape
// that differs means the checkpoint is of another model, and the error says which tensor.
void load_module(Module& m, const Checkpoint& ck, const std::string& prefix);
void load_optimizer(AdamW& optimizer, const Checkpoint& ck);

// The name of the first of `tensors` that holds a NaN or an infinity, with what it holds
// ("'blocks.0.norm1.weight' (3 NaN, 0 infinite of 64 values)"), or "" when all are finite.
std::string describe_non_finite(const std::vector<std::pair<std::string, Tensor>>& tensors);

}  // namespace dino
