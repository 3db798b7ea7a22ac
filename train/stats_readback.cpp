#include "train/stats_readback.h"

#include "core/autograd.h"
#include "core/error.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace dino {

#ifdef DINO_HAS_CUDA
namespace cu = kernels::cuda;
#endif

StatsReadback::~StatsReadback() {
#ifdef DINO_HAS_CUDA
  try {
    if (copied_) cu::event_synchronize(copied_);
    cu::event_destroy(copied_);
    cu::free_pinned(host_);
  } catch (const Error&) {  // a failed device: its error surfaced where the failure happened
  }
#endif
}

void StatsReadback::start(const PendingStepStats& pending) {
#ifdef DINO_HAS_CUDA
  DINO_CHECK(!in_flight_, "[train] statistics read back before the last ones were collected");
  DINO_CHECK(pending.loss.values.defined() && pending.loss.values.device() == Device::cuda,
             "[train] no statistics on the device to read back (the step ran without defer_stats)");
  NoGradGuard no_grad;
  koleo_ = pending.koleo.defined();
  const Tensor values = koleo_ ? concat({pending.loss.values, pending.koleo}) : pending.loss.values;
  n_ = size_t(values.numel());
  if (n_ > capacity_) {
    if (copied_) cu::event_synchronize(copied_);
    cu::free_pinned(host_);
    host_ = cu::alloc_pinned(n_ * sizeof(float));
    capacity_ = n_;
  }
  if (!copied_) copied_ = cu::event_create();
  // On the compute stream, behind the step; `values` returns to the pool after the copy, in
  // the same stream's order.
  cu::copy_d2h_async(host_, values.raw_data(), n_ * sizeof(float), cu::stream());
  cu::event_record(copied_, cu::stream());
  meta_ = pending.loss;
  meta_.values = Tensor();
  in_flight_ = true;
#else
  (void)pending;
  throw Error("[train] statistics stay on the device only with CUDA");
#endif
}

StatsReadback::Result StatsReadback::wait() {
  DINO_CHECK(in_flight_, "[train] no statistics on their way to collect");
  Result r;
#ifdef DINO_HAS_CUDA
  cu::event_synchronize(copied_);
  const auto* v = static_cast<const float*>(host_);
  r.stats = meta_.decode(v);
  if (koleo_) r.koleo = v[n_ - 1];
#endif
  in_flight_ = false;
  return r;
}

}  // namespace dino
