#pragma once
// Batches for training and evaluation. MultiCropLoader prefetches multi-crop batches on
// background threads; every sample's views depend only on (seed, epoch, dataset index) and
// the order only on (seed, epoch), so the stream is the same for any thread count or
// prefetch depth, and a run resumed at batch k sees exactly what it would have seen.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "data/datasets.h"
#include "data/multicrop.h"

namespace dino::data {

struct MultiCropBatch {
  int batch = 0;
  int channels = 0;
  std::vector<int> view_sizes;           // per view v (global count + local count): square side
  std::vector<std::vector<float>> views;  // per view v: (batch, C, S, S) contiguous
  std::vector<int> labels;               // per sample (or -1)
  std::vector<int64_t> indices;          // dataset index per sample
};

// The permutation of [0, n) that epoch `epoch` visits, from (seed, epoch) alone.
std::vector<int64_t> epoch_order(size_t n, uint64_t seed, int64_t epoch);
// The generator for one sample's augmentations.
Rng sample_rng(uint64_t seed, int64_t epoch, int64_t index);

class MultiCropLoader {
 public:
  // `ds` must outlive the loader.
  MultiCropLoader(const Dataset& ds, MultiCropConfig cfg, int batch_size, uint64_t seed,
                  int threads, int prefetch = 2);
  ~MultiCropLoader();  // joins the threads, also mid-epoch
  MultiCropLoader(const MultiCropLoader&) = delete;
  MultiCropLoader& operator=(const MultiCropLoader&) = delete;

  int64_t batches_per_epoch() const;  // drop_last semantics
  // Begins (or restarts) epoch `epoch` at batch `first_batch`, discarding any prefetched work.
  void start(int64_t epoch, int64_t first_batch = 0);
  // Blocks until the next batch is ready; rethrows a worker's error (e.g. a corrupt image)
  // when the batch that hit it comes up.
  MultiCropBatch next();

 private:
  struct Slot {
    int64_t batch = -1;
    int done = 0;
    MultiCropBatch data;
  };
  void stop();
  void worker();
  void prepare_slot(Slot& slot, int64_t batch);
  void fill_sample(MultiCropBatch& out, int i, int64_t index) const;

  const Dataset& ds_;
  const MultiCropConfig cfg_;
  const int batch_size_;
  const uint64_t seed_;
  const int threads_;
  const int prefetch_;

  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  std::vector<std::thread> workers_;
  std::vector<Slot> slots_;  // batch b lives in slots_[b % prefetch_]
  std::vector<int64_t> order_;
  int64_t epoch_ = -1;
  int64_t next_sample_ = 0;  // next position in the epoch order to hand to a worker
  int64_t end_sample_ = 0;
  int64_t next_batch_ = 0;   // next batch next() returns
  int64_t end_batch_ = 0;
  bool stopping_ = false;
  int64_t error_batch_ = -1;  // earliest batch whose sample failed
  std::exception_ptr error_;
};

// Evaluation batch (no augmentation): (end - begin, C, size, size) through eval_transform.
// Throws if an image's channel count differs from ds.channels().
std::vector<float> eval_batch(const Dataset& ds, size_t begin, size_t end, int size,
                              const Normalization& norm);

}  // namespace dino::data
