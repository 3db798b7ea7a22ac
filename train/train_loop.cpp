#include "train/train_loop.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <optional>

#include "core/batch_shard.h"
#include "core/error.h"
#include "core/tensor.h"
#include "train/step.h"
#include "train/trainer.h"

namespace dino {

namespace {

data::LoaderOptions loader_options(const Recipe& recipe, const RunPlan& plan) {
  data::LoaderOptions o;
  // On CUDA the copy stream reads the batches from pinned memory (f32 views; sources are
  // packed into the uploader's own pinned buffers).
  if (plan.crop_format == data::CropFormat::f32)
    o.allocator = BatchUploader::allocator(plan.device);
  o.threads = recipe.data.loader_threads;
  o.format = plan.crop_format;
  o.rank = plan.rank;
  o.ranks = plan.ranks;
  return o;
}

}  // namespace

TrainLoop::TrainLoop(const Recipe& recipe, const RunPlan& plan, TrainState& state,
                     MetricsLog* metrics, bool quiet, dist::World* world, LoopOptions options)
    : recipe_(recipe),
      plan_(plan),
      state_(state),
      metrics_(metrics),
      host_(world && world->active() ? world->host() : nullptr),
      device_comm_(world && world->active() ? world->comm(plan.device) : nullptr),
      reducer_(world && world->active()
                   ? std::make_unique<dist::GradReducer>(*world->comm(plan.device),
                                                         trainable_parameters(*state.student))
                   : nullptr),
      options_(options),
      loader_(*plan.train_set, recipe.crops_for(int(plan.in_chans)), recipe.optim.batch_size,
              recipe.run.seed, loader_options(recipe, plan)),
      uploader_(plan.device),
      schedules_(recipe.optim, plan.iters_per_epoch, plan.ranks),
      policy_(recipe.run.checkpoint_every, plan.total_steps, state.step),
      monitor_(recipe.loss.out_dim),
      progress_(state.step, plan.total_steps, plan.iters_per_epoch, int(plan.global_batch),
                recipe.run.log_every, quiet),
      start_step_(state.step),
      last_step_end_(std::chrono::steady_clock::now()) {
  if (recipe.run.cuda_graph) graph_ = std::make_unique<StepGraph>();
}

TrainLoop::~TrainLoop() = default;

TrainLoop::PendingStep TrainLoop::run_step() {
  const int64_t step = state_.step, ipe = plan_.iters_per_epoch;
  const int64_t epoch = step / ipe, in_epoch = step % ipe;
  if (step == start_step_ || in_epoch == 0) loader_.start(epoch, in_epoch);
  PendingStep p;
  const auto wait0 = std::chrono::steady_clock::now();
  p.batch = loader_.next();
  StepRecord& r = p.record;
  r.data_wait_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wait0).count();
  r.settings = schedules_.at(step, *state_.loss);
  r.settings.defer_stats = options_.pipelined;
  r.settings.drop_path_nonce = drop_path_step_nonce(recipe_.run.seed, step);
  p.upload = uploader_.upload(*p.batch);
  const BatchShardScope shard(plan_.rank, plan_.ranks);
  // Not pipelined, dino_step stops the run on a non-finite loss before the update, as
  // main_dino does; pipelined, finish() stops it once the statistics arrive.
  StepOutputs out =
      graph_ ? graph_->step(*state_.student, *state_.teacher, *state_.loss, *state_.optimizer,
                            p.upload.views, r.settings, &state_.drop, reducer_.get(), device_comm_)
             : dino_step(*state_.student, *state_.teacher, *state_.loss, *state_.optimizer,
                         p.upload.views, r.settings, &state_.drop, false, reducer_.get());
  p.upload.views.clear();  // the device tensors return to the pool in stream order
  state_.step = step + 1;
  r.step = state_.step;
  r.ranks = plan_.ranks;
  r.global_batch = plan_.global_batch;
  if (options_.pipelined) {
    p.readback = &readbacks_[next_readback_];
    next_readback_ = 1 - next_readback_;
    p.readback->start(out.pending);
  } else {
    r.stats = out.stats;
    r.koleo = out.koleo;
  }
  return p;
}

void TrainLoop::finish(PendingStep& p) {
  StepRecord& r = p.record;
  if (p.readback) {
    const StatsReadback::Result got = p.readback->wait();
    r.stats = got.stats;
    r.koleo = got.koleo;
    const bool loss_ok = std::isfinite(r.stats.loss), koleo_ok = std::isfinite(r.koleo);
    if (!loss_ok || !koleo_ok) {
      // The statistics arrive one step late: say where the run stands.
      const std::string late =
          state_.step > r.step
              ? str_cat("; stopping at step ", state_.step, ", queued before step ", r.step,
                        "'s loss arrived (on CUDA the loss is read back one step late)")
              : "; stopping";
      throw Error(
          str_cat("[train] the ", loss_ok ? "KoLeo term" : "loss", " of step ", r.step, " is ",
                  loss_ok ? r.koleo : r.stats.loss, loss_ok ? "" : nonfinite_ranks_note(r.stats),
                  late, ". No checkpoint holds step ", r.step, " or later. Lower the learning rate",
                  loss_ok ? " or loss.koleo_weight" : " or check the data"));
    }
  }
  uploader_.copied(p.upload);
  p.batch.reset();
  const auto now = std::chrono::steady_clock::now();
  r.images_per_second =
      double(plan_.global_batch) / std::chrono::duration<double>(now - last_step_end_).count();
  last_step_end_ = now;
  on_step_known(r);
}

void TrainLoop::on_step_known(const StepRecord& r) {
  DINO_CHECK(std::isfinite(r.stats.loss), "[train] the loss of step ", r.step, " is ", r.stats.loss,
             "; stopping");
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
  std::optional<PendingStep> previous;
  while (state_.step < plan_.total_steps && signal == 0) {
    PendingStep current = run_step();
    // Pipelined: the previous step's statistics, while the device runs this one.
    if (previous) finish(*previous);
    previous = std::move(current);
    signal = agreed_stop(stop.requested());
    // A checkpoint holds only confirmed steps: when one is wanted now, wait for this step.
    if (!options_.pipelined || policy_.wanted(state_.step, signal != 0)) {
      finish(*previous);
      previous.reset();
    }
    if (policy_.due(state_.step, signal != 0)) checkpoint();
  }
  if (previous) finish(*previous);
  return signal;
}

void TrainLoop::summarize(TrainResult& result) const {
  progress_.summarize(result);
  result.collapse_warning = collapse_warning_;
  result.steps = state_.step;
  result.epochs = double(state_.step) / double(plan_.iters_per_epoch);
}

}  // namespace dino
