#pragma once
// What a run prints while it trains: a line every run.log_every steps (the interval's mean
// loss, the schedules, the teacher's entropy and KL, images/s, ETA) and the collapse
// monitor's warning; and what TrainResult sums up at the end (means of the loss over the first
// and last tenth of the steps, the last statistics).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "train/metrics_log.h"
#include "train/trainer.h"

namespace dino {

class Progress {
 public:
  Progress(int64_t start_step, int64_t total_steps, int64_t iters_per_epoch, int batch,
           int64_t log_every, bool quiet);
  void record(const StepRecord& r, const std::optional<std::string>& collapse_warning);
  // Fills the loss, statistics and timing fields of `result` for the steps recorded.
  void summarize(TrainResult& result) const;

 private:
  double elapsed() const;

  int64_t start_, total_, ipe_, log_every_;
  int batch_;
  bool quiet_;
  std::chrono::steady_clock::time_point t0_;
  std::vector<double> losses_;
  StepRecord last_;
  double data_wait_ms_ = 0;  // summed over the steps recorded
};

}  // namespace dino
