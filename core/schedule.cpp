#include "core/schedule.h"

#include <algorithm>
#include <cmath>

namespace dino {

double CosineSchedule::at(int64_t it) const {
  // As utils.cosine_scheduler: the warmup is np.linspace(start, base, warmup_iters), which
  // reaches base on its last iteration; the cosine then runs over the remaining iterations.
  const int64_t warmup_iters = std::llround(warmup_epochs * double(iters_per_epoch));
  const double total_iters = std::round(epochs * double(iters_per_epoch));
  const double x = double(it);
  if (it < warmup_iters)
    return warmup_iters == 1 ? warmup_start
                             : warmup_start + (base - warmup_start) * x / double(warmup_iters - 1);
  const double span = total_iters - double(warmup_iters);
  if (span <= 0) return final;
  const double t = std::min(1.0, (x - double(warmup_iters)) / span);
  return final + 0.5 * (base - final) * (1.0 + std::cos(M_PI * t));
}

double LinearWarmup::at(int64_t it) const {
  const double ramp_iters = ramp_epochs * double(iters_per_epoch);
  if (ramp_iters <= 0 || double(it) >= ramp_iters) return end;
  return start + (end - start) * double(it) / ramp_iters;
}

}  // namespace dino
