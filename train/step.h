#pragma once
// One DINO optimisation step, exactly as main_dino.train_one_epoch orders it: teacher on the
// global views, student on all views, loss (old center) then center update, backward,
// per-parameter clipping, last-layer freeze, AdamW, EMA teacher update. The trainer and the
// PyTorch cross-check (tests/reference) both run this function.
#include <string>
#include <utility>
#include <vector>

#include "core/optim.h"
#include "losses/dino_loss.h"
#include "models/multicrop.h"

namespace dino {

namespace dist {
class GradReducer;
}

struct StepSettings {
  double lr = 0, weight_decay = 0;  // weight decay of the regularised group
  double teacher_temp = 0.04, teacher_momentum = 0.996;
  double clip_grad = 3.0;          // 0 disables clipping
  bool freeze_last_layer = false;  // drop the head.last_layer gradients this step
  // DINOv2's KoLeo term: weight x the sum over the global views of koleo_loss (losses/koleo.h)
  // on the student's backbone CLS of that view's batch. 0 (DINO's recipe) leaves it out.
  double koleo_weight = 0;
  // Leave the step's statistics on the device (StepOutputs::pending; CUDA only): no host
  // synchronisation, so the host can queue the next step before this one has run. The caller
  // then checks the loss when the statistics arrive, after this step's update
  // (train/stats_readback.h); by default dino_step reads them back and stops before it.
  bool defer_stats = false;
  // The step's stochastic-depth nonce (core/drop_path_mask.h; train/trainer.h gives a run's).
  uint64_t drop_path_nonce = 0;
};

// A step's statistics still on the device (StepSettings::defer_stats).
struct PendingStepStats {
  DeviceLossStats loss;
  Tensor koleo;  // the unweighted KoLeo term, (1) f32 on the device; undefined when its weight is 0
};

struct StepOutputs {
  Tensor loss;                      // scalar: the DINO loss plus the weighted KoLeo term
  DinoLossStats stats;              // stats.loss: the DINO loss alone (unset with defer_stats)
  double koleo = 0;                 // the unweighted KoLeo term (0 when its weight is 0)
  PendingStepStats pending;         // with defer_stats: stats and koleo, on the device
  Tensor student_cls, teacher_cls;  // (V*B, D), (G*B, D)
  Tensor student_logits, teacher_logits;  // (V*B, K), (G*B, K)
  // Student gradients as backward produced them, before clipping (only with capture_grads).
  std::vector<std::pair<std::string, Tensor>> grads;
};

// The parameters the student trains (requires_grad): all but head.last_layer.weight_g under
// norm_last_layer, which is stored and never trained. What AdamW updates and what the
// data-parallel gradient reducer averages.
std::vector<std::pair<std::string, Tensor>> trainable_parameters(const DinoModel& student);

// AdamW over the student's trainable parameters: group 0 regularised (weight decay), group 1
// biases and 1-D parameters (none), as utils.get_params_groups.
AdamW make_optimizer(const DinoModel& student);

// " (not finite on rank 0, 2)" for the ranks whose loss was not finite; empty when none was.
std::string nonfinite_ranks_note(const DinoLossStats& stats);

// crops: V tensors (B, C, S, S), the 2 global views first, on the models' device (on CUDA
// f32 images; every op then runs there, ARCHITECTURE §3). Throws if the loss is not finite
// (unless s.defer_stats: then the caller checks it when the statistics arrive).
// Data-parallel: `reducer` averages the gradients over the ranks as the backward makes them
// final, before clipping (DDP's order); the loss's communicator (DinoLoss::set_communicator)
// keeps the center global.
StepOutputs dino_step(DinoModel& student, DinoModel& teacher, DinoLoss& loss, AdamW& optimizer,
                      const std::vector<Tensor>& crops, const StepSettings& s, DropPathNoise* drop,
                      bool capture_grads = false, dist::GradReducer* reducer = nullptr);

// The part of dino_step up to the update: the forwards, the loss (the center updated), the
// backward into the student's gradients (averaged over the ranks with a reducer).
StepOutputs forward_backward(DinoModel& student, DinoModel& teacher, DinoLoss& loss,
                             const std::vector<Tensor>& crops, const StepSettings& s,
                             DropPathNoise* drop, dist::GradReducer* reducer = nullptr);

// The part of dino_step after the backward, on the gradients the student's parameters hold:
// per-parameter clipping, the last-layer freeze, AdamW with this step's lr and weight decay,
// and the EMA teacher update. Runs on the device the models are on.
void apply_update(DinoModel& student, DinoModel& teacher, AdamW& optimizer, const StepSettings& s);

}  // namespace dino
