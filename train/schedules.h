#pragma once
// A run's per-step settings, as main_dino.py schedules them per iteration: cosine learning
// rate (linear warmup from 0, DINO's lr * global batch / 256) and weight decay, teacher momentum
// rising to 1 by cosine, the teacher temperature's warmup (held by the loss), and the last
// layer frozen for its first optim.freeze_last_layer epochs.
#include <cstdint>

#include "core/schedule.h"
#include "losses/dino_loss.h"
#include "train/config.h"
#include "train/step.h"

namespace dino {

class StepSchedules {
 public:
  // ranks: the data-parallel world; the global batch is optim.batch_size x ranks.
  StepSchedules(const OptimConfig& optim, int64_t iters_per_epoch, int ranks);
  // The settings of step `step` (0-based).
  StepSettings at(int64_t step, const DinoLoss& loss) const;

 private:
  CosineSchedule lr_, weight_decay_, momentum_;
  double freeze_iters_, clip_grad_;
};

}  // namespace dino
