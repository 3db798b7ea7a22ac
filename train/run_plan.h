#pragma once
// What a run decides before it writes anything: the device, the training split and the number
// of steps, whether and on what it runs the k-NN evaluation at the end, and its folder. Every
// check that needs the dataset happens here, so a run that would fail at its end (a missing or
// inconsistent test split, a k larger than the bank) fails at its start.
#include <memory>

#include "core/storage.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "train/config.h"
#include "train/run_folder.h"
#include "train/trainer.h"

namespace dino {

struct RunPlan {
  Device device = Device::cpu;
  // Data-parallel: this process is rank `rank` of `ranks`; each draws optim.batch_size images
  // per step, global_batch in all. Rank 0 alone writes the folder's files.
  int rank = 0, ranks = 1;
  int64_t global_batch = 0;
  bool root() const { return rank == 0; }
  std::unique_ptr<data::Dataset> train_set;
  int64_t in_chans = 0;
  data::CropFormat crop_format = data::CropFormat::f32;  // sources when data.augment is gpu
  int64_t iters_per_epoch = 0;  // whole global batches per epoch (DINO's drop_last)
  int64_t total_steps = 0;      // optim.epochs of them, capped by run.max_steps
  bool knn = false;             // run.knn on a labelled dataset
  RunFolder folder;
};

// What the loader hands over for data.augment on this device: the decoded sources when the
// views are rendered on the GPU, finished f32 views otherwise.
data::CropFormat crop_format_for(const Recipe& recipe, Device device);

RunPlan plan_run(const Recipe& recipe, const TrainOptions& options);

}  // namespace dino
