#pragma once
// DINOLoss (main_dino.py): the fused dino_loss op plus the center buffer, the teacher
// temperature schedule and the collapse monitor. The center is updated AFTER the loss, with
// the mean of the raw teacher logits, so the loss always uses the previous center.
#include <cmath>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "core/module.h"
#include "core/ops.h"
#include "core/schedule.h"

namespace dino {

namespace dist {
class Communicator;
}

struct DinoLossConfig {
  int64_t out_dim = 65536;
  int64_t global_crops = 2;
  double student_temp = 0.1;
  double center_momentum = 0.9;
  double warmup_teacher_temp = 0.04, teacher_temp = 0.04;
  double warmup_teacher_temp_epochs = 0;  // fractional epochs allowed
  double koleo_weight = 0;  // DINOv2's KoLeo term added by the step (train/step.h); 0: off
};

struct DinoLossStats {
  double loss = 0;
  double teacher_entropy = 0;  // mean over teacher rows of H(q): ln K when uniform
  double batch_entropy = 0;    // H(mean over rows of q): near 0 when one dimension dominates
  double kl = 0;               // KL(teacher || student) averaged over the loss's pairs
  double teacher_temp = 0;
  std::vector<int> nonfinite_ranks;  // data-parallel: the ranks whose own loss is not finite
};

// A loss's statistics still on the device (DinoLoss::forward with `later`, CUDA only), so the
// host can queue more work before it reads them. values: f32 on the device, [loss, teacher
// entropy, batch entropy] (data-parallel: the first two summed over the ranks, then one slot
// per rank, NaN where that rank's loss is not finite).
struct DeviceLossStats {
  Tensor values;
  int64_t ranks = 0;  // 0: one process, no per-rank slots
  double teacher_temp = 0;
  // The statistics from `values` read back to the host (values.numel() floats).
  DinoLossStats decode(const float* host_values) const;
};

class DinoLoss : public Module {
 public:
  DinoLoss(const DinoLossConfig& cfg, int64_t iters_per_epoch);
  // student (V*B, K), teacher (G*B, K) with teacher temperature tau_t (teacher_temp_at(it)
  // in training). Returns the scalar loss, fills stats, then updates the center. With `later`
  // and CUDA logits the statistics stay on the device, in *later (stats is left alone): no
  // host synchronisation.
  Tensor forward(const Tensor& student, const Tensor& teacher, double tau_t, DinoLossStats* stats,
                 DeviceLossStats* later = nullptr);
  double teacher_temp_at(int64_t it) const { return temp_.at(it); }
  // Writes tau_t into the temperature tensor the loss reads (on the center's device), when it
  // differs from the value there: forward does it itself, and a captured step
  // (train/step_graph.h), which does not run forward again, is handed each step's value this
  // way before it replays.
  void set_teacher_temp(double tau_t);
  const DinoLossConfig& config() const { return cfg_; }
  // Data-parallel training (DDP's update_center): the teacher's column sums and the collapse
  // statistics' sums go through one all-reduce over comm's ranks per step, so every rank
  // keeps the same center and the statistics are those of the whole batch (stats->loss: the
  // mean of the ranks' losses). The returned loss stays this rank's; the gradient reducer
  // averages its gradient with the others'. nullptr (the default): a world of one.
  void set_communicator(dist::Communicator* comm) { comm_ = comm; }

  Tensor center;  // (1, K)

 private:
  DinoLossConfig cfg_;
  dist::Communicator* comm_ = nullptr;
  LinearWarmup temp_;
  Tensor temperature_;  // (1): teacher_temperature's tensor, of the value below
  double temperature_value_ = 0;
};

// The collapse signatures, as fractions of ln K: the teacher's mean per-image entropy above
// the first (its outputs near uniform), or the entropy of its batch-mean distribution below
// the second (one output dimension dominates).
constexpr double kUniformCollapseFraction = 0.97;
constexpr double kDominantCollapseFraction = 0.1;

// Watches the teacher over a window of steps and explains a collapse when it sees one.
class CollapseMonitor {
 public:
  explicit CollapseMonitor(int64_t out_dim, int window = 20)
      : log_k_(std::log(double(out_dim))), window_(window) {}
  // Returns a warning while the windowed averages sit in a collapse signature.
  std::optional<std::string> update(const DinoLossStats& s);

 private:
  double log_k_;
  int window_;
  std::deque<DinoLossStats> recent_;
};

}  // namespace dino
