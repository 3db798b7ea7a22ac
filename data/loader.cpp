#include "data/loader.h"

#include <algorithm>
#include <cstring>
#include <new>
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

const float* MultiCropBatch::view_f32(size_t v) const {
  DINO_CHECK(format == CropFormat::f32, "[loader] the batch holds ",
             format == CropFormat::u8 ? "bytes (format u8)" : "sources (format sources)",
             ", not floats");
  return static_cast<const float*>(views.at(v));
}

const uint8_t* MultiCropBatch::view_u8(size_t v) const {
  DINO_CHECK(format == CropFormat::u8, "[loader] the batch holds ",
             format == CropFormat::f32 ? "floats (format f32)" : "sources (format sources)",
             ", not bytes");
  return static_cast<const uint8_t*>(views.at(v));
}

// One worker's buffers, kept across samples so a warm worker allocates nothing.
struct WorkerState {
  SourceImage source;
  Image image;
  ViewScratch scratch;
  std::vector<ViewParams> views;
};

MultiCropLoader::Lease& MultiCropLoader::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = other.owner_;
    slot_ = other.slot_;
    batch_ = other.batch_;
    other.owner_ = nullptr;
    other.batch_ = nullptr;
  }
  return *this;
}

void MultiCropLoader::Lease::reset() {
  if (owner_) owner_->release(slot_);
  owner_ = nullptr;
  batch_ = nullptr;
}

MultiCropLoader::MultiCropLoader(const Dataset& ds, MultiCropConfig cfg, int batch_size,
                                 uint64_t seed, int threads, int prefetch)
    : MultiCropLoader(ds, std::move(cfg), batch_size, seed, [&] {
        LoaderOptions o;
        o.threads = threads;
        o.prefetch = prefetch;
        return o;
      }()) {}

MultiCropLoader::MultiCropLoader(const Dataset& ds, MultiCropConfig cfg, int batch_size,
                                 uint64_t seed, LoaderOptions options)
    : ds_(ds),
      cfg_(std::move(cfg)),
      batch_size_(batch_size),
      seed_(seed),
      opt_(std::move(options)) {
  validate(cfg_);
  norm_ = resolve_normalization(cfg_.norm, ds_.channels());  // fail here, not in a worker
  DINO_CHECK(batch_size > 0, "[loader] batch size must be positive, got ", batch_size);
  DINO_CHECK(opt_.threads > 0, "[loader] threads must be positive, got ", opt_.threads);
  DINO_CHECK(opt_.prefetch >= 0, "[loader] prefetch must be non-negative, got ", opt_.prefetch);
  DINO_CHECK(opt_.max_held > 0, "[loader] max_held must be positive, got ", opt_.max_held);
  DINO_CHECK(bool(opt_.allocator.allocate) == bool(opt_.allocator.release),
             "[loader] an allocator needs both allocate and release");
  DINO_CHECK(opt_.ranks > 0 && opt_.rank >= 0 && opt_.rank < opt_.ranks, "[loader] rank ",
             opt_.rank, " of ", opt_.ranks, " ranks");
  DINO_CHECK(batches_per_epoch() > 0, "[loader] ", ds_.describe(),
             " has fewer images than one batch of ", batch_size,
             opt_.ranks > 1 ? str_cat(" on each of ", opt_.ranks, " ranks") : "");
  prefetch_ = opt_.prefetch > 0 ? opt_.prefetch
                                : std::max(2, (opt_.threads + batch_size - 1) / batch_size + 1);

  // One buffer per slot holds every view of a batch, each view 64-byte aligned. With format
  // sources there are no views: each sample's source grows its own buffer as needed.
  const int C = ds_.channels();
  const bool views = opt_.format != CropFormat::sources;
  const size_t elem = opt_.format == CropFormat::f32 ? sizeof(float) : sizeof(uint8_t);
  std::vector<int> sizes(size_t(cfg_.global.count), cfg_.global.size);
  sizes.insert(sizes.end(), size_t(cfg_.local.count), cfg_.local.size);
  for (int S : sizes) {
    view_offset_.push_back(buffer_bytes_);
    if (views) buffer_bytes_ += (size_t(batch_size) * C * S * S * elem + 63) / 64 * 64;
  }
  slots_.resize(size_t(prefetch_ + opt_.max_held));
  for (Slot& slot : slots_) {
    MultiCropBatch& d = slot.data;
    d.batch = batch_size;
    d.channels = C;
    d.format = opt_.format;
    d.norm = norm_;
    d.view_sizes = sizes;
    if (!views) {
      d.sources.batch = batch_size;
      d.sources.channels = C;
      d.sources.view_sizes = sizes;
      d.sources.samples.resize(size_t(batch_size));
      d.sources.params.resize(size_t(batch_size) * sizes.size());
    } else {
      slot.buffer = opt_.allocator.allocate ? opt_.allocator.allocate(buffer_bytes_)
                                            : ::operator new(buffer_bytes_, std::align_val_t(64));
      DINO_CHECK(slot.buffer != nullptr, "[loader] cannot allocate ", buffer_bytes_,
                 " bytes for a batch");
      // Touched once here, so no batch pays the page faults of fresh memory.
      if (!opt_.allocator.allocate) std::memset(slot.buffer, 0, buffer_bytes_);
    }
    for (size_t v = 0; v < sizes.size() && views; ++v)
      d.views.push_back(static_cast<uint8_t*>(slot.buffer) + view_offset_[v]);
    d.labels.assign(size_t(batch_size), -1);
    d.indices.assign(size_t(batch_size), 0);
  }
  for (int t = 0; t < opt_.threads; ++t) workers_.emplace_back([this] { worker(); });
}

MultiCropLoader::~MultiCropLoader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  for (Slot& slot : slots_) {
    if (!slot.buffer) continue;
    if (opt_.allocator.release)
      opt_.allocator.release(slot.buffer);
    else
      ::operator delete(slot.buffer, std::align_val_t(64));
  }
}

int64_t MultiCropLoader::batches_per_epoch() const {
  return int64_t(ds_.size()) / opt_.ranks / batch_size_;
}

std::vector<int64_t> shard_order(const std::vector<int64_t>& order, int rank, int ranks) {
  std::vector<int64_t> mine(order.size() / size_t(ranks));
  for (size_t j = 0; j < mine.size(); ++j) mine[j] = order[size_t(rank) + j * size_t(ranks)];
  return mine;
}

int MultiCropLoader::find_slot(int64_t batch) const {
  for (size_t s = 0; s < slots_.size(); ++s)
    if (slots_[s].batch == batch && !slots_[s].held) return int(s);
  return -1;
}

void MultiCropLoader::ensure_order(int64_t first_epoch) {
  // The orders of every epoch the workers may reach: the prefetch window can span several
  // epochs of a small dataset. Shuffles run without the lock.
  const int64_t ipe = batches_per_epoch();
  for (;;) {
    int64_t missing = -1;
    {
      std::lock_guard<std::mutex> lk(mu_);
      const int64_t from = next_batch_ / ipe, to = (next_batch_ + prefetch_ - 1) / ipe;
      for (auto it = orders_.begin(); it != orders_.end();)  // workers keep their own copy
        it = it->first < std::min(from, first_epoch) ? orders_.erase(it) : std::next(it);
      for (int64_t e = std::min(from, first_epoch); e <= std::max(to, first_epoch) && missing < 0;
           ++e)
        if (!orders_.count(e)) missing = e;
    }
    if (missing < 0) return;
    auto order = std::make_shared<const std::vector<int64_t>>(
        shard_order(epoch_order(ds_.size(), seed_, missing), opt_.rank, opt_.ranks));
    {
      std::lock_guard<std::mutex> lk(mu_);
      orders_.emplace(missing, std::move(order));
    }
    work_cv_.notify_all();
  }
}

void MultiCropLoader::start(int64_t epoch, int64_t first_batch) {
  DINO_CHECK(epoch >= 0, "[loader] epoch must be non-negative, got ", epoch);
  DINO_CHECK(first_batch >= 0 && first_batch < batches_per_epoch(), "[loader] first batch ",
             first_batch, " outside 0..", batches_per_epoch() - 1);
  const int64_t target = epoch * batches_per_epoch() + first_batch;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!started_ || target != next_batch_) {
      // Discard: slots still being written become free when their workers finish, which
      // then see the new generation and drop what they wrote.
      ++generation_;
      for (Slot& slot : slots_)
        if (!slot.held) {
          slot.batch = -1;
          slot.done = 0;
        }
      next_sample_ = target * batch_size_;
      next_batch_ = target;
      error_batch_ = -1;
      error_ = nullptr;
    }
    started_ = true;
  }
  ensure_order(epoch);
  work_cv_.notify_all();
}

MultiCropLoader::Lease MultiCropLoader::next() {
  std::unique_lock<std::mutex> lk(mu_);
  DINO_CHECK(started_, "[loader] next() called before start()");
  int held = 0;
  for (const Slot& slot : slots_) held += slot.held;
  DINO_CHECK(held < opt_.max_held, "[loader] ", held, " batches are held (max_held ", opt_.max_held,
             "); release one before next()");
  const int64_t batch = next_batch_;
  int s = -1;
  ready_cv_.wait(lk, [&] {
    if (error_batch_ == batch) return true;
    s = find_slot(batch);
    return s >= 0 && slots_[size_t(s)].done == batch_size_;
  });
  if (error_batch_ == batch) std::rethrow_exception(error_);
  Slot& slot = slots_[size_t(s)];
  slot.held = true;
  ++next_batch_;
  const int64_t epoch = next_batch_ / batches_per_epoch();
  lk.unlock();
  work_cv_.notify_all();
  ensure_order(epoch);
  return Lease(this, s, &slot.data);
}

void MultiCropLoader::release(int s) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    Slot& slot = slots_[size_t(s)];
    slot.held = false;
    slot.batch = -1;
    slot.done = 0;
  }
  work_cv_.notify_all();
}

void MultiCropLoader::fill_sample(WorkerState& state, Slot& slot, int i, int64_t epoch,
                                  int64_t index) const {
  Rng rng = sample_rng(seed_, epoch, index);
  const int n = view_count(cfg_);
  state.views.resize(size_t(n));
  SourceImage& src = state.source;
  ds_.load(size_t(index), src, [&](int height, int width) {
    draw_views(height, width, cfg_, rng, state.views.data());
    return opt_.reduce_jpeg ? max_reduction(state.views.data(), n) : 1;
  });
  MultiCropBatch& out = slot.data;
  DINO_CHECK(src.channels == out.channels, "[loader] image ", index, " of ", ds_.describe(),
             " has ", src.channels, " channels, expected ", out.channels);
  if (src.height != src.full_height || src.width != src.full_width)
    map_to_reduced(state.views.data(), n, src.full_height, src.full_width, src.height, src.width);
  out.labels[size_t(i)] = ds_.label(size_t(index));
  out.indices[size_t(i)] = index;
  if (out.format == CropFormat::sources) {  // the views are rendered where the batch goes
    out.sources.set_source(i, src);
    std::copy(state.views.begin(), state.views.end(),
              out.sources.params.begin() + ptrdiff_t(i) * n);
    return;
  }
  const Image* img = &src.f32;
  if (src.is_u8) {
    to_float(src, state.image);
    img = &state.image;
  }
  for (int v = 0; v < n; ++v) {
    const size_t per_sample = out.view_values(size_t(v)) / size_t(batch_size_);
    if (out.format == CropFormat::f32)
      apply_view(*img, state.views[size_t(v)], norm_, state.scratch,
                 static_cast<float*>(out.views[size_t(v)]) + size_t(i) * per_sample);
    else
      apply_view(*img, state.views[size_t(v)], state.scratch,
                 static_cast<uint8_t*>(out.views[size_t(v)]) + size_t(i) * per_sample);
  }
}

void MultiCropLoader::worker() {
  WorkerState state;
  const int64_t ipe = batches_per_epoch();
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    int s = -1;
    work_cv_.wait(lk, [&] {
      if (stopping_) return true;
      if (!started_) return false;
      const int64_t batch = next_sample_ / batch_size_;
      if (batch >= next_batch_ + prefetch_ || (error_batch_ >= 0 && batch >= error_batch_) ||
          !orders_.count(batch / ipe))
        return false;
      s = find_slot(batch);
      for (size_t k = 0; k < slots_.size() && s < 0; ++k)
        if (slots_[k].batch < 0 && !slots_[k].held && slots_[k].in_flight == 0) s = int(k);
      return s >= 0;
    });
    if (stopping_) return;
    const int64_t pos = next_sample_++, batch = pos / batch_size_;
    Slot& slot = slots_[size_t(s)];
    if (slot.batch != batch) {  // a free slot takes the batch: bookkeeping only
      slot.batch = batch;
      slot.generation = generation_;
      slot.done = 0;
      slot.data.epoch = batch / ipe;
      slot.data.index = batch % ipe;
    }
    ++slot.in_flight;
    const uint64_t generation = generation_;
    const std::shared_ptr<const std::vector<int64_t>> order = orders_.at(batch / ipe);
    lk.unlock();
    std::exception_ptr error;
    try {
      fill_sample(state, slot, int(pos % batch_size_), batch / ipe,
                  (*order)[size_t((batch % ipe) * batch_size_ + pos % batch_size_)]);
    } catch (...) {
      error = std::current_exception();
    }
    lk.lock();
    --slot.in_flight;
    if (generation != generation_) {  // discarded by start(): the slot may be free now
      work_cv_.notify_all();
    } else if (error) {
      if (error_batch_ < 0 || batch < error_batch_) {
        error_batch_ = batch;
        error_ = error;
      }
      ready_cv_.notify_all();
    } else if (++slot.done == batch_size_) {
      ready_cv_.notify_all();
    }
  }
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
