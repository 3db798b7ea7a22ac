#include "data/loader.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace dino::data {

std::vector<int64_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t(0));
  Rng rng = Rng::derive({seed, uint64_t(epoch)});
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

Rng sample_rng(uint64_t seed, int64_t epoch, int64_t index) {
  return Rng::derive({seed, uint64_t(epoch), uint64_t(index)});
}

MultiCropLoader::MultiCropLoader(const Dataset& ds, MultiCropConfig cfg, int batch_size,
                                 uint64_t seed, int threads, int prefetch)
    : ds_(ds),
      cfg_(std::move(cfg)),
      batch_size_(batch_size),
      seed_(seed),
      threads_(threads),
      prefetch_(prefetch) {
  validate(cfg_);
  resolve_normalization(cfg_.norm, ds_.channels());  // fail here, not in a worker
  DINO_CHECK(batch_size > 0, "[loader] batch size must be positive, got ", batch_size);
  DINO_CHECK(threads > 0, "[loader] threads must be positive, got ", threads);
  DINO_CHECK(prefetch > 0, "[loader] prefetch must be positive, got ", prefetch);
  DINO_CHECK(batches_per_epoch() > 0, "[loader] ", ds_.describe(), " has fewer images than one batch of ",
             batch_size);
  slots_.resize(size_t(prefetch_));
}

MultiCropLoader::~MultiCropLoader() { stop(); }

int64_t MultiCropLoader::batches_per_epoch() const { return int64_t(ds_.size()) / batch_size_; }

void MultiCropLoader::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void MultiCropLoader::start(int64_t epoch, int64_t first_batch) {
  DINO_CHECK(epoch >= 0, "[loader] epoch must be non-negative, got ", epoch);
  DINO_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(), "[loader] first batch ",
             first_batch, " outside 0..", batches_per_epoch());
  stop();
  // No worker runs now, so the state can be reset without the lock; spawning the threads
  // publishes it to them.
  epoch_ = epoch;
  order_ = epoch_order(ds_.size(), seed_, epoch);
  next_batch_ = first_batch;
  end_batch_ = batches_per_epoch();
  next_sample_ = first_batch * batch_size_;
  end_sample_ = end_batch_ * batch_size_;
  for (Slot& s : slots_) s = Slot();
  stopping_ = false;
  error_batch_ = -1;
  error_ = nullptr;
  for (int t = 0; t < threads_; ++t) workers_.emplace_back([this] { worker(); });
}

void MultiCropLoader::prepare_slot(Slot& slot, int64_t batch) {
  const int C = ds_.channels();
  slot.batch = batch;
  slot.done = 0;
  MultiCropBatch& d = slot.data;
  d.batch = batch_size_;
  d.channels = C;
  d.view_sizes.assign(size_t(cfg_.global.count), cfg_.global.size);
  d.view_sizes.insert(d.view_sizes.end(), size_t(cfg_.local.count), cfg_.local.size);
  d.views.resize(d.view_sizes.size());
  for (size_t v = 0; v < d.views.size(); ++v)
    d.views[v].resize(size_t(batch_size_) * C * d.view_sizes[v] * d.view_sizes[v]);
  d.labels.assign(size_t(batch_size_), -1);
  d.indices.assign(size_t(batch_size_), 0);
}

void MultiCropLoader::fill_sample(MultiCropBatch& out, int i, int64_t index) const {
  const Image img = ds_.get(size_t(index));
  DINO_CHECK(img.channels == out.channels, "[loader] image ", index, " of ", ds_.describe(),
             " has ", img.channels, " channels, expected ", out.channels);
  Rng rng = sample_rng(seed_, epoch_, index);
  const std::vector<Image> views = multicrop(img, cfg_, rng);
  for (size_t v = 0; v < views.size(); ++v) {
    const std::vector<float>& src = views[v].pixels;
    std::copy(src.begin(), src.end(), out.views[v].begin() + ptrdiff_t(i) * ptrdiff_t(src.size()));
  }
  out.labels[size_t(i)] = ds_.label(size_t(index));
  out.indices[size_t(i)] = index;
}

void MultiCropLoader::worker() {
  for (;;) {
    int64_t pos = 0, batch = 0;
    Slot* slot = nullptr;
    {
      std::unique_lock<std::mutex> lk(mu_);
      work_cv_.wait(lk, [&] {
        if (stopping_ || next_sample_ >= end_sample_) return stopping_;
        const int64_t b = next_sample_ / batch_size_;
        return b < next_batch_ + prefetch_ && (error_batch_ < 0 || b < error_batch_);
      });
      if (stopping_) return;
      pos = next_sample_++;
      batch = pos / batch_size_;
      slot = &slots_[size_t(batch % prefetch_)];
      if (slot->batch != batch) prepare_slot(*slot, batch);
    }
    try {
      fill_sample(slot->data, int(pos % batch_size_), order_[size_t(pos)]);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (error_batch_ < 0 || batch < error_batch_) {
        error_batch_ = batch;
        error_ = std::current_exception();
      }
      ready_cv_.notify_all();
      continue;
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (++slot->done == batch_size_) ready_cv_.notify_all();
  }
}

MultiCropBatch MultiCropLoader::next() {
  std::unique_lock<std::mutex> lk(mu_);
  DINO_CHECK(epoch_ >= 0, "[loader] next() called before start()");
  DINO_CHECK(next_batch_ < end_batch_, "[loader] epoch ", epoch_, " is exhausted after ",
             end_batch_, " batches; call start() for the next epoch");
  Slot& slot = slots_[size_t(next_batch_ % prefetch_)];
  ready_cv_.wait(lk, [&] {
    return (slot.batch == next_batch_ && slot.done == batch_size_) || error_batch_ == next_batch_;
  });
  if (error_batch_ == next_batch_) std::rethrow_exception(error_);
  MultiCropBatch out = std::move(slot.data);
  slot = Slot();
  ++next_batch_;
  lk.unlock();
  work_cv_.notify_all();
  return out;
}

std::vector<float> eval_batch(const Dataset& ds, size_t begin, size_t end, int size,
                              const Normalization& norm) {
  DINO_CHECK(begin <= end && end <= ds.size(), "[eval_batch] range [", begin, ", ", end,
             ") outside ", ds.describe());
  const int C = ds.channels();
  const Normalization n = resolve_normalization(norm, C);
  const size_t per_image = size_t(C) * size * size;
  std::vector<float> out((end - begin) * per_image);
  // Exceptions must not escape an OpenMP region; keep the one of the lowest index.
  std::exception_ptr error;
  size_t error_index = end;
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t k = 0; k < int64_t(end - begin); ++k) {
    const size_t index = begin + size_t(k);
    try {
      const Image img = ds.get(index);
      DINO_CHECK(img.channels == C, "[eval_batch] image ", index, " of ", ds.describe(), " has ",
                 img.channels, " channels, expected ", C);
      const Image t = eval_transform(img, size, n);
      std::copy(t.pixels.begin(), t.pixels.end(), out.begin() + ptrdiff_t(k * per_image));
    } catch (...) {
#pragma omp critical(dino_eval_batch_error)
      if (index < error_index) {
        error_index = index;
        error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace dino::data
