#include "train/stats_readback.h"

#include "core/autograd.h"
#include "core/error.h"

namespace dino {

StatsReadback::~StatsReadback() {
  if (!backend_) return;
  try {
    if (copied_) backend_->event_synchronize(copied_);
    backend_->event_destroy(copied_);
    backend_->free_pinned(host_);
  } catch (const Error&) {  // a failed device: its error surfaced where the failure happened
  }
}

void StatsReadback::start(const PendingStepStats& pending) {
  DINO_CHECK(!in_flight_, "[train] statistics read back before the last ones were collected");
  DINO_CHECK(pending.loss.values.defined() && pending.loss.values.device() != Device::cpu,
             "[train] no statistics on the device to read back (the step ran without defer_stats)");
  if (!backend_) backend_ = &backend(pending.loss.values.device(), "train");
  const Backend& b = *backend_;
  NoGradGuard no_grad;
  koleo_ = pending.koleo.defined();
  const Tensor values = koleo_ ? concat({pending.loss.values, pending.koleo}) : pending.loss.values;
  n_ = size_t(values.numel());
  if (n_ > capacity_) {
    if (copied_) b.event_synchronize(copied_);
    b.free_pinned(host_);
    host_ = b.alloc_pinned(n_ * sizeof(float));
    capacity_ = n_;
  }
  if (!copied_) copied_ = b.event_create(false);
  // On the compute queue, behind the step; `values` returns to the pool after the copy, in
  // the same queue's order.
  b.copy_to_host_async(host_, values.raw_data(), n_ * sizeof(float), Queue::compute);
  b.event_record(copied_, Queue::compute);
  meta_ = pending.loss;
  meta_.values = Tensor();
  in_flight_ = true;
}

StatsReadback::Result StatsReadback::wait() {
  DINO_CHECK(in_flight_, "[train] no statistics on their way to collect");
  Result r;
  backend_->event_synchronize(copied_);
  const auto* v = static_cast<const float*>(host_);
  r.stats = meta_.decode(v);
  if (koleo_) r.koleo = v[n_ - 1];
  in_flight_ = false;
  return r;
}

}  // namespace dino
