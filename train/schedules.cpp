#include "train/schedules.h"

namespace dino {

StepSchedules::StepSchedules(const OptimConfig& o, int64_t ipe, int ranks)
    : lr_{o.scaled_lr(ranks), o.min_lr, 0.0, o.warmup_epochs, o.epochs, ipe},
      weight_decay_{o.weight_decay, o.weight_decay_end, 0.0, 0.0, o.epochs, ipe},
      momentum_{o.momentum_teacher, 1.0, 0.0, 0.0, o.epochs, ipe},
      freeze_iters_(o.freeze_last_layer * double(ipe)),
      clip_grad_(o.clip_grad) {}

StepSettings StepSchedules::at(int64_t step, const DinoLoss& loss) const {
  StepSettings s;
  s.lr = lr_.at(step);
  s.weight_decay = weight_decay_.at(step);
  s.teacher_momentum = momentum_.at(step);
  s.teacher_temp = loss.teacher_temp_at(step);
  s.clip_grad = clip_grad_;
  s.freeze_last_layer = double(step) < freeze_iters_;
  s.koleo_weight = loss.config().koleo_weight;
  return s;
}

}  // namespace dino
