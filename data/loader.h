#pragma once
// Batches for training and evaluation. MultiCropLoader prepares multi-crop batches on
// persistent background threads; every sample's views depend only on (seed, epoch, dataset
// index) and the order only on (seed, epoch), so the stream is the same for any thread count
// or prefetch depth, and a run resumed at batch k sees exactly what it would have seen.
//
// Batches live in a fixed pool of buffers, allocated once (through a caller's allocator, e.g.
// pinned host memory for uploads) and reused: next() lends one out, and it returns to the pool
// when the lease ends. The workers run ahead across epoch boundaries; start() only moves the
// stream when it is not already where the caller asks.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/augment_gpu.h"
#include "data/datasets.h"
#include "data/multicrop.h"

namespace dino::data {

// f32: normalised floats, what the CPU step reads. u8: bytes of the views before
// normalisation (a quarter of the bytes to move); normalize_bytes (data/augment.h) or the
// first kernel that reads them applies cfg.norm. sources: no views at all, each sample's
// source image as stored and its drawn view parameters (MultiCropBatch::sources), which
// render_views_cuda (data/augment_gpu.h) turns into the views on the GPU.
enum class CropFormat { f32, u8, sources };

// Where batch buffers live. Empty functions: 64-byte aligned host memory.
struct BufferAllocator {
  std::function<void*(size_t bytes)> allocate;
  std::function<void(void* ptr)> release;
};

struct LoaderOptions {
  int threads = 1;
  // Batches prepared ahead of the one the caller holds; 0: enough for every thread to work
  // on a different sample, and at least 2.
  int prefetch = 0;
  // Batches the caller may hold at once (their buffers are not reused until released).
  int max_held = 2;
  CropFormat format = CropFormat::f32;
  // Decode JPEGs reduced in the DCT domain when every view's crop box is at least 2x (4x,
  // 8x) its output size (data/image_jpeg.h); off: always at full size.
  bool reduce_jpeg = true;
  BufferAllocator allocator;
  // Data-parallel training, as DistributedSampler with drop_last: this loader reads the
  // positions rank, rank + ranks, rank + 2 ranks, ... of each epoch's order (cut to a multiple
  // of ranks), so batch b of the ranks together is batch b of one loader with ranks times the
  // batch size, sample for sample.
  int rank = 0, ranks = 1;
};

struct MultiCropBatch {
  int64_t epoch = 0, index = 0;  // batch `index` of epoch `epoch`
  int batch = 0;
  int channels = 0;
  CropFormat format = CropFormat::f32;
  Normalization norm;            // resolved; already applied when format is f32
  std::vector<int> view_sizes;   // per view v (global count + local count): square side
  std::vector<void*> views;      // per view v: (batch, C, S, S) contiguous, f32 or u8
  SourceBatch sources;           // format sources: what the views are rendered from
  std::vector<int> labels;       // per sample (or -1)
  std::vector<int64_t> indices;  // dataset index per sample

  size_t view_values(size_t v) const {
    return size_t(batch) * channels * view_sizes[v] * view_sizes[v];
  }
  const float* view_f32(size_t v) const;   // throws unless format is f32
  const uint8_t* view_u8(size_t v) const;  // throws unless format is u8
};

// The permutation of [0, n) that epoch `epoch` visits, from (seed, epoch) alone.
std::vector<int64_t> epoch_order(size_t n, uint64_t seed, int64_t epoch);
// Rank `rank`'s share of an epoch's order (LoaderOptions::rank).
std::vector<int64_t> shard_order(const std::vector<int64_t>& order, int rank, int ranks);
// The generator for one sample's augmentations.
Rng sample_rng(uint64_t seed, int64_t epoch, int64_t index);

class MultiCropLoader {
 public:
  // A batch lent by next(); its buffers go back to the loader when the lease is destroyed.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { reset(); }
    const MultiCropBatch& operator*() const { return *batch_; }
    const MultiCropBatch* operator->() const { return batch_; }
    void reset();  // returns the buffers now

   private:
    friend class MultiCropLoader;
    Lease(MultiCropLoader* owner, int slot, const MultiCropBatch* batch)
        : owner_(owner), slot_(slot), batch_(batch) {}
    MultiCropLoader* owner_ = nullptr;
    int slot_ = -1;
    const MultiCropBatch* batch_ = nullptr;
  };

  // `ds` must outlive the loader.
  MultiCropLoader(const Dataset& ds, MultiCropConfig cfg, int batch_size, uint64_t seed,
                  LoaderOptions options);
  MultiCropLoader(const Dataset& ds, MultiCropConfig cfg, int batch_size, uint64_t seed,
                  int threads, int prefetch = 0);
  ~MultiCropLoader();  // stops and joins the workers, also mid-epoch; leases must be gone
  MultiCropLoader(const MultiCropLoader&) = delete;
  MultiCropLoader& operator=(const MultiCropLoader&) = delete;

  int64_t batches_per_epoch() const;  // drop_last semantics
  int prefetch() const { return prefetch_; }
  // Positions the stream at batch `first_batch` of epoch `epoch`. Work already prefetched
  // for that position is kept (so calling it at each epoch's start costs nothing when the
  // stream got there by itself); otherwise prefetched work is discarded.
  void start(int64_t epoch, int64_t first_batch = 0);
  // Blocks until the next batch is ready and lends it; after an epoch's last batch comes the
  // next epoch's first. Rethrows a worker's error (e.g. a corrupt image) when the batch that
  // hit it comes up.
  Lease next();

 private:
  struct Slot {
    int64_t batch = -1;  // global batch (epoch * batches_per_epoch + index) it holds, or -1
    uint64_t generation = 0;
    int done = 0;       // samples written
    int in_flight = 0;  // samples being written
    bool held = false;  // lent out
    MultiCropBatch data;
    void* buffer = nullptr;
  };
  void worker();
  void release(int slot);
  void ensure_order(int64_t epoch);  // computes it without the lock, then publishes it
  int find_slot(int64_t batch) const;
  void fill_sample(struct WorkerState& state, Slot& slot, int i, int64_t epoch,
                   int64_t index) const;

  const Dataset& ds_;
  const MultiCropConfig cfg_;
  const int batch_size_;
  const uint64_t seed_;
  LoaderOptions opt_;
  int prefetch_ = 0;
  Normalization norm_;
  std::vector<size_t> view_offset_;  // bytes into a slot's buffer, per view
  size_t buffer_bytes_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  std::vector<std::thread> workers_;
  std::vector<Slot> slots_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;  // per epoch
  bool started_ = false;
  uint64_t generation_ = 0;  // bumped when start() discards work
  int64_t next_sample_ = 0;  // next global sample position to hand to a worker
  int64_t next_batch_ = 0;   // next global batch next() returns
  bool stopping_ = false;
  int64_t error_batch_ = -1;  // earliest global batch whose sample failed
  std::exception_ptr error_;
};

// Evaluation batch (no augmentation): (end - begin, C, size, size) through eval_transform.
// Throws if an image's channel count differs from ds.channels().
std::vector<float> eval_batch(const Dataset& ds, size_t begin, size_t end, int size,
                              const Normalization& norm);

}  // namespace dino::data
