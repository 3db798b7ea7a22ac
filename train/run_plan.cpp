#include "train/run_plan.h"

#include <cmath>

#include "core/error.h"
#include "dist/world.h"

namespace dino {

namespace {

// The test split k-NN will query, opened now: it must exist, hold images, and agree with the
// training split on channels and classes.
void check_knn_split(const Recipe& recipe, const data::Dataset& train) {
  const std::string& spec = recipe.data.dataset;
  std::unique_ptr<data::Dataset> test;
  try {
    test = data::open_dataset(spec, data::Split::test);
  } catch (const Error& e) {
    throw Error(str_cat("[train] run.knn is on and needs the test split of '", spec, "' (",
                        "run.knn=false skips the evaluation): ", e.what()));
  }
  DINO_CHECK(test->size() > 0, "[train] run.knn: the test split ", test->describe(),
             " holds no images (run.knn=false skips the evaluation)");
  DINO_CHECK(test->channels() == train.channels() && test->num_classes() == train.num_classes(),
             "[train] run.knn: the test split ", test->describe(),
             " does not match the training split ", train.describe());
  DINO_CHECK(uint64_t(recipe.run.knn_k) <= train.size(), "[config] 'run.knn_k' is ",
             recipe.run.knn_k, "; expected at most the ", train.size(),
             " training images that form the k-NN bank");
}

}  // namespace

data::CropFormat crop_format_for(const Recipe& recipe, Device device) {
  DINO_CHECK(recipe.data.augment != "gpu" || device == Device::cuda,
             "[config] data.augment=gpu renders the views on the GPU: it needs --device cuda");
  const bool gpu_augment =
      recipe.data.augment == "gpu" || (recipe.data.augment == "auto" && device == Device::cuda);
  return gpu_augment ? data::CropFormat::sources : data::CropFormat::f32;
}

RunPlan plan_run(const Recipe& recipe, const TrainOptions& opt) {
  RunPlan plan;
  plan.device = resolve_device(opt.device, "train");
  DINO_CHECK(recipe.model.attention == "ours" || plan.device == Device::cuda,
             "[config] model.attention=", recipe.model.attention,
             " needs the GPU (--device cuda): it names GPU kernels");
  plan.crop_format = crop_format_for(recipe, plan.device);
  if (opt.world && opt.world->active()) {
    plan.rank = opt.world->rank();
    plan.ranks = opt.world->size();
  }
  DINO_CHECK(!recipe.run.cuda_graph || plan.device == Device::cuda,
             "[config] run.cuda_graph=true records the step as a CUDA graph: it needs --device "
             "cuda");
  plan.folder = plan.root() ? check_run_folder(opt.out_dir, opt.resume, opt.force)
                            : run_folder_paths(opt.out_dir);

  plan.train_set = data::open_dataset(recipe.data.dataset, data::Split::train);
  plan.in_chans = plan.train_set->channels();
  plan.global_batch = int64_t(recipe.optim.batch_size) * plan.ranks;
  DINO_CHECK(
      uint64_t(plan.global_batch) <= plan.train_set->size(), "[config] 'optim.batch_size' is ",
      recipe.optim.batch_size,
      plan.ranks > 1 ? str_cat(" per rank, ", plan.global_batch, " over the ", plan.ranks, " ranks")
                     : std::string(),
      "; expected at most the ", plan.train_set->size(), " images of ", plan.train_set->describe());
  plan.iters_per_epoch = int64_t(plan.train_set->size()) / plan.global_batch;
  // optim.epochs <= 1e6 and at most 2^32 batches per epoch: the product fits easily.
  const double steps = std::round(recipe.optim.epochs * double(plan.iters_per_epoch));
  DINO_CHECK(steps >= 1, "[config] 'optim.epochs' is ", recipe.optim.epochs, "; with ",
             plan.iters_per_epoch, " steps per epoch that is no step at all");
  plan.total_steps = int64_t(steps);
  if (recipe.run.max_steps > 0) plan.total_steps = std::min(plan.total_steps, recipe.run.max_steps);

  plan.knn = recipe.run.knn && plan.train_set->num_classes() > 0;
  if (plan.knn) check_knn_split(recipe, *plan.train_set);
  return plan;
}

}  // namespace dino
