#include "train/train_loop.h"

#include <chrono>
#include <cmath>
#include <csignal>

#include "core/batch_shard.h"
#include "core/error.h"
#include "core/tensor.h"
#include "train/trainer.h"

namespace dino {

std::vector<Tensor> batch_tensors(const data::MultiCropBatch& b, Device device) {
  if (b.format == data::CropFormat::sources) return data::render_views_cuda(b.sources, b.norm);
  std::vector<Tensor> crops;
  for (size_t v = 0; v < b.views.size(); ++v) {
    const int64_t S = b.view_sizes[v];
    Tensor t = Tensor::empty({b.batch, b.channels, S, S}, DType::f32, device);
    DINO_CHECK(size_t(t.numel()) == b.view_values(v), "[train] view ", v, " holds ",
               b.view_values(v), " values for ", shape_str(t.shape()));
    copy_bytes(t.raw_data(), device, b.view_f32(v), Device::cpu, t.nbytes());
    crops.push_back(t);
  }
  return crops;
}

namespace {

data::LoaderOptions loader_options(const Recipe& recipe, const RunPlan& plan) {
  data::LoaderOptions o;
  o.threads = recipe.data.loader_threads;
  o.format = plan.crop_format;
  o.rank = plan.rank;
  o.ranks = plan.ranks;
  return o;
}

}  // namespace

TrainLoop::TrainLoop(const Recipe& recipe, const RunPlan& plan, TrainState& state,
                     MetricsLog* metrics, bool quiet, dist::World* world)
    : recipe_(recipe),
      plan_(plan),
      state_(state),
      metrics_(metrics),
      host_(world && world->active() ? world->host() : nullptr),
      reducer_(world && world->active()
                   ? std::make_unique<dist::GradReducer>(*world->comm(plan.device), trainable_parameters(*state.student))
                   : nullptr),
      loader_(*plan.train_set, recipe.crops_for(int(plan.in_chans)), recipe.optim.batch_size,
              recipe.run.seed, loader_options(recipe, plan)),
      schedules_(recipe.optim, plan.iters_per_epoch, plan.ranks),
      policy_(recipe.run.checkpoint_every, plan.total_steps, state.step),
      monitor_(recipe.loss.out_dim),
      progress_(state.step, plan.total_steps, plan.iters_per_epoch, int(plan.global_batch),
                recipe.run.log_every, quiet),
      start_step_(state.step),
      last_step_end_(std::chrono::steady_clock::now()) {}

StepRecord TrainLoop::run_step() {
  const int64_t step = state_.step, ipe = plan_.iters_per_epoch;
  const int64_t epoch = step / ipe, in_epoch = step % ipe;
  if (step == start_step_ || in_epoch == 0) loader_.start(epoch, in_epoch);
  const auto wait0 = std::chrono::steady_clock::now();
  const data::MultiCropLoader::Lease b = loader_.next();
  StepRecord r;
  r.data_wait_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wait0).count();
  r.settings = schedules_.at(step, *state_.loss);
  const BatchShardScope shard(plan_.rank, plan_.ranks);
  // dino_step stops the run on a non-finite loss, before the update, as main_dino does.
  const StepOutputs out = dino_step(*state_.student, *state_.teacher, *state_.loss,
                                    *state_.optimizer, batch_tensors(*b, plan_.device), r.settings,
                                    &state_.drop_rng, false, reducer_.get());
  state_.step = step + 1;
  r.step = state_.step;
  r.stats = out.stats;
  r.koleo = out.koleo;
  r.ranks = plan_.ranks;
  r.global_batch = plan_.global_batch;
  const auto now = std::chrono::steady_clock::now();
  r.images_per_second =
      double(plan_.global_batch) / std::chrono::duration<double>(now - last_step_end_).count();
  last_step_end_ = now;
  return r;
}

void TrainLoop::on_step_known(const StepRecord& r) {
  DINO_CHECK(std::isfinite(r.stats.loss), "[train] the loss of step ", r.step, " is ",
             r.stats.loss, "; stopping");
  collapse_warning_ = monitor_.update(r.stats);
  if (metrics_) metrics_->append(r, plan_.iters_per_epoch);
  progress_.record(r, collapse_warning_);
  policy_.confirm(r.step);
}

void TrainLoop::checkpoint() {
  if (plan_.root()) {
    // metrics.jsonl first: once the checkpoint exists, every step it holds has its line on disk.
    metrics_->sync();
    state_.save(plan_.folder.checkpoint, recipe_, plan_.ranks);
  }
  policy_.saved(state_.step);
}

int TrainLoop::agreed_stop(int signal) {
  if (!host_) return signal;
  Tensor flags = Tensor::zeros({2}, DType::f64);
  flags.data<double>()[0] = signal == SIGINT;
  flags.data<double>()[1] = signal == SIGTERM;
  host_->all_reduce(flags, dist::ReduceOp::sum);
  if (flags.data<double>()[0] > 0) return SIGINT;
  return flags.data<double>()[1] > 0 ? SIGTERM : 0;
}

int TrainLoop::run(const StopSignals& stop) {
  int signal = 0;
  while (state_.step < plan_.total_steps && signal == 0) {
    on_step_known(run_step());
    signal = agreed_stop(stop.requested());
    if (policy_.due(state_.step, signal != 0)) checkpoint();
  }
  return signal;
}

void TrainLoop::summarize(TrainResult& result) const {
  progress_.summarize(result);
  result.collapse_warning = collapse_warning_;
  result.steps = state_.step;
  result.epochs = double(state_.step) / double(plan_.iters_per_epoch);
}

}  // namespace dino
