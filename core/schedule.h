#pragma once
// Per-iteration schedules over the whole run (facebookresearch/dino utils.cosine_scheduler),
// with epoch-denominated lengths that may be fractional so a short run keeps the shape.
#include <cstdint>

namespace dino {

struct CosineSchedule {
  double base = 0, final = 0;  // cosine from base (after warmup) to final
  double warmup_start = 0;     // linear warmup from this value to base
  double warmup_epochs = 0;
  double epochs = 1;
  int64_t iters_per_epoch = 1;
  // Value at global iteration `it` (0-based). Past the end it stays at `final`.
  double at(int64_t it) const;
};

// Linear ramp from `start` to `end` over `ramp_epochs`, then constant (teacher temperature).
struct LinearWarmup {
  double start = 0, end = 0;
  double ramp_epochs = 0;
  int64_t iters_per_epoch = 1;
  double at(int64_t it) const;
};

}  // namespace dino
