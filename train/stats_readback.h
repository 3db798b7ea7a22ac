#pragma once
// A step's statistics on their way back from the device (StepSettings::defer_stats): start()
// queues one asynchronous copy of the loss statistics and the KoLeo term into pinned host
// memory, on the device's compute queue behind the work queued so far (core/backend.h); wait()
// blocks until that copy has landed, i.e. until the device has run the step, and decodes it.
// Between the two the host queues the next step. Reused from step to step, so a steady state
// allocates nothing.
#include "core/backend.h"
#include "losses/dino_loss.h"
#include "train/step.h"

namespace dino {

class StatsReadback {
 public:
  StatsReadback() = default;
  ~StatsReadback();  // waits for a copy still in flight (it writes the pinned memory)
  StatsReadback(const StatsReadback&) = delete;
  StatsReadback& operator=(const StatsReadback&) = delete;

  void start(const PendingStepStats& pending);
  struct Result {
    DinoLossStats stats;
    double koleo = 0;  // 0 when the step had no KoLeo term
  };
  Result wait();

 private:
  const Backend* backend_ = nullptr;  // the statistics' device's, from the first start()
  void* host_ = nullptr;              // pinned floats
  size_t capacity_ = 0;               // floats
  DeviceEvent* copied_ = nullptr;     // event after the copy
  DeviceLossStats meta_;              // its values tensor dropped once the copy is queued
  size_t n_ = 0;                      // floats copied
  bool koleo_ = false;
  bool in_flight_ = false;
};

}  // namespace dino
