#pragma once
// What a run trains and what its checkpoints hold: the student, its EMA teacher, the DINO loss
// (its center), AdamW's moments and the stochastic-depth generator, on the run's device, and
// the number of steps done.
#include <memory>
#include <string>

#include "core/optim.h"
#include "core/rng.h"
#include "core/storage.h"
#include "losses/dino_loss.h"
#include "models/multicrop.h"
#include "train/config.h"

namespace dino {

struct TrainState {
  // As a run with this recipe starts: built on the CPU from run.seed, so the weights are the
  // same on either device, then moved; AdamW is made after the move (its moments live with
  // the parameters).
  TrainState(const Recipe& recipe, int64_t in_chans, int64_t iters_per_epoch, Device device);

  // Continues from the checkpoint at `path`, refusing one whose recipe differs from `recipe`
  // in anything but how long the run lasts and what it reports. `ranks` may differ from the
  // checkpoint's when the global batch (optim.batch_size x ranks) stays the same.
  void resume(const std::string& path, const Recipe& recipe, int ranks);
  // Starts the student's and the teacher's backbones from the ViT weights in `path`
  // (model.init_from); the file's ViT must have the recipe's shape, and an error names the
  // key that differs. The heads stay as initialised.
  void init_backbones_from(const std::string& path);
  // Writes the checkpoint at `path` (atomically; refused when a tensor is not finite).
  void save(const std::string& path, const Recipe& recipe, int ranks) const;

  std::unique_ptr<DinoModel> student, teacher;
  std::unique_ptr<DinoLoss> loss;
  std::unique_ptr<AdamW> optimizer;
  DropPathNoise drop;  // the nonce tensor on the models' device; dino_step sets it each step
  int64_t in_chans;
  int64_t step = 0;  // optimizer steps done
};

}  // namespace dino
