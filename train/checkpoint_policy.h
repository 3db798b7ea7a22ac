#pragma once
// When the trainer writes a checkpoint: every `every` steps (0: none in between), after the
// last step, and when a stop is requested. Only ever for a step count whose steps are all
// confirmed, i.e. their statistics have arrived and were found finite, so a checkpoint never
// holds a step that may still turn out to have diverged (a loop that learns a step's loss
// later than it runs the step confirms it later, and the checkpoint waits for it).
#include <cstdint>

namespace dino {

class CheckpointPolicy {
 public:
  CheckpointPolicy(int64_t every, int64_t total_steps, int64_t start_step)
      : every_(every), total_(total_steps), confirmed_(start_step), saved_(start_step) {}

  // Steps 1..steps are known to be finite.
  void confirm(int64_t steps) { confirmed_ = steps; }
  int64_t confirmed() const { return confirmed_; }

  // Whether to write a checkpoint of the first `steps` steps now.
  bool due(int64_t steps, bool stop_requested) const {
    return steps == confirmed_ && wanted(steps, stop_requested);
  }
  // Whether a checkpoint of the first `steps` steps is wanted once they are confirmed: a loop
  // that confirms a step late waits for it before it queues another.
  bool wanted(int64_t steps, bool stop_requested) const {
    if (steps == saved_) return false;
    return stop_requested || steps == total_ || (every_ > 0 && steps % every_ == 0);
  }
  void saved(int64_t steps) { saved_ = steps; }

 private:
  int64_t every_, total_, confirmed_, saved_;
};

}  // namespace dino
