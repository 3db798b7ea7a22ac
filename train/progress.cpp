#include "train/progress.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace dino {

namespace {

std::string format_duration(double seconds) {
  const int64_t s = int64_t(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", long(s / 3600), long(s / 60 % 60),
                long(s % 60));
  return buf;
}

}  // namespace

Progress::Progress(int64_t start_step, int64_t total_steps, int64_t ipe, int batch,
                   int64_t log_every, bool quiet)
    : start_(start_step),
      total_(total_steps),
      ipe_(ipe),
      log_every_(log_every),
      batch_(batch),
      quiet_(quiet),
      t0_(std::chrono::steady_clock::now()) {}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Progress::record(const StepRecord& r, const std::optional<std::string>& collapse_warning) {
  losses_.push_back(r.stats.loss);
  data_wait_ms_ += r.data_wait_ms;
  last_ = r;
  const int64_t done = r.step - start_;
  if (quiet_ || (done % log_every_ != 0 && r.step != total_)) return;
  const size_t n = std::min<size_t>(losses_.size(), size_t(log_every_));
  double mean_loss = 0;
  for (size_t i = losses_.size() - n; i < losses_.size(); ++i) mean_loss += losses_[i] / double(n);
  const double seconds = elapsed();
  const double ips = double(done * batch_) / seconds;
  const double eta = seconds / double(done) * double(total_ - r.step);
  char line[320];
  std::snprintf(line, sizeof line,
                "epoch %.2f step %ld/%ld  loss %.4f  lr %.2e  tau_t %.3f  m %.4f  H(t) %.3f  "
                "KL %.3f  %.1f img/s  data wait %.0f%%  ETA %s",
                double(r.step) / double(ipe_), long(r.step), long(total_), mean_loss, r.settings.lr,
                r.settings.teacher_temp, r.settings.teacher_momentum, r.stats.teacher_entropy,
                r.stats.kl, ips, 0.1 * data_wait_ms_ / seconds, format_duration(eta).c_str());
  std::cout << line << std::endl;
  if (collapse_warning) std::cout << "warning: " << *collapse_warning << std::endl;
}

void Progress::summarize(TrainResult& result) const {
  // Means over a tenth of this invocation's steps (at most 50) at its start and its end.
  const size_t w = std::max<size_t>(1, std::min<size_t>(50, losses_.size() / 10));
  for (size_t i = 0; i < w && i < losses_.size(); ++i) {
    result.first_loss += losses_[i] / double(w);
    result.last_loss += losses_[losses_.size() - 1 - i] / double(w);
  }
  result.seconds = elapsed();
  const int64_t steps = int64_t(losses_.size());
  result.images_per_second = result.seconds > 0 ? double(steps * batch_) / result.seconds : 0;
  result.data_wait_fraction = result.seconds > 0 ? data_wait_ms_ * 1e-3 / result.seconds : 0;
  result.teacher_entropy = last_.stats.teacher_entropy;
  result.batch_entropy = last_.stats.batch_entropy;
  result.kl = last_.stats.kl;
}

}  // namespace dino
