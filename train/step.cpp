#include "train/step.h"

#include <cmath>

#include "core/autograd.h"
#include "dist/reducer.h"
#include "losses/koleo.h"

namespace dino {

std::vector<std::pair<std::string, Tensor>> trainable_parameters(const DinoModel& student) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, p] : student.named_parameters())
    if (p.requires_grad()) out.push_back({name, p});
  return out;
}

std::string nonfinite_ranks_note(const DinoLossStats& stats) {
  std::string note;
  for (int r : stats.nonfinite_ranks)
    note += str_cat(note.empty() ? " (not finite on rank " : ", ", r);
  return note.empty() ? note : note + ")";
}

AdamW make_optimizer(const DinoModel& student) {
  ParamGroup regularized, not_regularized;
  for (auto& [name, p] : trainable_parameters(student)) {
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    (is_bias || p.dim() == 1 ? not_regularized : regularized).params.push_back({name, p});
  }
  return AdamW({regularized, not_regularized});
}

StepOutputs forward_backward(DinoModel& student, DinoModel& teacher, DinoLoss& loss,
                             const std::vector<Tensor>& crops, const StepSettings& s,
                             DropPathNoise* drop, dist::GradReducer* reducer) {
  const int64_t G = loss.config().global_crops;
  // With no local crops the global views are each other's pair, as DINO allows.
  DINO_CHECK(int64_t(crops.size()) >= G && crops.size() >= 2, "[train] ", crops.size(),
             " views; DINO needs the ", G, " global views");
  StepOutputs out;
  {
    NoGradGuard no_grad;
    std::vector<Tensor> globals(crops.begin(), crops.begin() + G);
    out.teacher_logits = teacher.forward(globals, nullptr, &out.teacher_cls);
  }
  if (drop) set_drop_path_nonce(*drop, s.drop_path_nonce);
  out.student_logits = student.forward(crops, drop, &out.student_cls);
  if (s.defer_stats) {
    DINO_CHECK(out.student_logits.device() == Device::cuda,
               "[train] statistics stay on the device "
               "only on CUDA; the CPU step reads them at once");
    out.loss = loss.forward(out.student_logits, out.teacher_logits, s.teacher_temp, nullptr,
                            &out.pending.loss);
  } else {
    out.loss = loss.forward(out.student_logits, out.teacher_logits, s.teacher_temp, &out.stats);
    DINO_CHECK(std::isfinite(out.stats.loss), "[train] the loss is ", out.stats.loss,
               nonfinite_ranks_note(out.stats),
               "; stopping (main_dino does the same). Lower the learning rate or check the data");
  }
  if (s.koleo_weight > 0) {
    // One term per global view, over that view's batch (DINOv2: the CLS chunked by crop).
    const int64_t B = crops[0].size(0);
    Tensor koleo;
    for (int64_t g = 0; g < G; ++g) {
      Tensor term = koleo_loss(out.student_cls.narrow(g * B, B));
      koleo = koleo.defined() ? add(koleo, term) : term;
    }
    if (s.defer_stats) {
      out.pending.koleo = koleo.detach().reshape({1});
    } else {
      out.koleo = koleo.item();
      DINO_CHECK(std::isfinite(out.koleo), "[train] the KoLeo term is ", out.koleo,
                 "; stopping. Lower the learning rate or loss.koleo_weight");
    }
    out.loss = add(out.loss, scale(koleo, s.koleo_weight));
  }

  student.zero_grad();
  if (reducer) reducer->prepare();
  out.loss.backward();
  if (reducer) reducer->finish();
  return out;
}

StepOutputs dino_step(DinoModel& student, DinoModel& teacher, DinoLoss& loss, AdamW& optimizer,
                      const std::vector<Tensor>& crops, const StepSettings& s, DropPathNoise* drop,
                      bool capture_grads, dist::GradReducer* reducer) {
  StepOutputs out = forward_backward(student, teacher, loss, crops, s, drop, reducer);
  if (capture_grads)
    for (auto& [name, p] : student.named_parameters())
      if (p.grad().defined()) out.grads.push_back({name, p.grad().clone()});
  apply_update(student, teacher, optimizer, s);
  return out;
}

void apply_update(DinoModel& student, DinoModel& teacher, AdamW& optimizer, const StepSettings& s) {
  auto params = student.named_parameters();
  if (s.clip_grad > 0) {
    std::vector<Tensor> ps;
    for (auto& [name, p] : params) ps.push_back(p);
    // On CUDA the norms stay on the device: the loss is the step's only read-back.
    clip_grad_per_param(ps, s.clip_grad, /*read_norms=*/false);
  }
  if (s.freeze_last_layer)  // cancel_gradients_last_layer: AdamW then skips them entirely
    for (auto& [name, p] : params)
      if (name.rfind("head.last_layer.", 0) == 0) p.zero_grad();

  auto& groups = optimizer.groups();
  groups[0].lr = s.lr;
  groups[0].weight_decay = s.weight_decay;
  groups[1].lr = s.lr;
  groups[1].weight_decay = 0;
  optimizer.step();
  ema_update(teacher, student, s.teacher_momentum);
}

}  // namespace dino
