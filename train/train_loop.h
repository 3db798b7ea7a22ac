#pragma once
// The step loop of a run: each iteration takes the next batch, runs one DINO step
// (train/step.h) with the step's scheduled settings, and hands its statistics on once they
// are known (on_step_known: metrics.jsonl, the collapse monitor, the progress line, and
// the confirmation the checkpoint policy waits for); checkpoints follow CheckpointPolicy.
//
// On CUDA the loop runs one step ahead of its statistics (LoopOptions::pipelined): it queues
// step t+1, its batch's upload on the copy stream included (train/batch_upload.h), before it
// waits for step t's loss (train/stats_readback.h), so the device always has the next step
// queued while the host prepares the one after. A non-finite loss of step t is therefore
// found once step t+1 is queued: the run stops there, naming step t, and since a checkpoint
// waits until every step it holds is known to be finite, none holds step t. On the CPU the
// statistics are known when the step returns, and each step is confirmed before the next.
//
// Data-parallel (a world launched by MPI): each rank loads its shard of every global batch
// (data/loader.h), draws the stochastic-depth masks of the whole batch and keeps its rows
// (core/batch_shard.h), averages the gradients over the ranks during the backward
// (dist/reducer.h), and agrees with the others after each step on whether a stop signal
// arrived, so every rank stops at the same step. Rank 0 alone writes metrics and checkpoints.
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "data/loader.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "losses/dino_loss.h"
#include "train/batch_upload.h"
#include "train/checkpoint_policy.h"
#include "train/metrics_log.h"
#include "train/progress.h"
#include "train/run_plan.h"
#include "train/schedules.h"
#include "train/stats_readback.h"
#include "train/step_graph.h"
#include "train/stop_signal.h"
#include "train/train_state.h"

namespace dino {

struct LoopOptions {
  // Queue step t+1 before reading step t's statistics (CUDA only). The trainer sets it on
  // CUDA; off, every step's statistics are read back before the next step is queued.
  bool pipelined = false;
};

class TrainLoop {
 public:
  // metrics: nullptr on the ranks other than 0. world: nullptr or inactive for a world of one.
  TrainLoop(const Recipe& recipe, const RunPlan& plan, TrainState& state, MetricsLog* metrics,
            bool quiet, dist::World* world, LoopOptions options = {});
  ~TrainLoop();  // waits for the uploads still in flight before the loader frees their memory
  // Runs until the plan's last step or a stop signal; returns the signal (0 when it ran to the
  // end). A checkpoint holds the steps done either way.
  int run(const StopSignals& stop);
  // Loss means, last statistics, timing and the collapse warning of the steps run.
  void summarize(TrainResult& result) const;

 private:
  // A step queued on the device whose statistics may still be on their way.
  struct PendingStep {
    StepRecord record;
    data::MultiCropLoader::Lease batch;  // held until the upload has read it
    BatchUploader::Upload upload;
    StatsReadback* readback = nullptr;  // pipelined: where its statistics arrive
  };
  PendingStep run_step();
  void finish(PendingStep& p);  // waits for its statistics, then on_step_known
  void on_step_known(const StepRecord& r);
  void checkpoint();
  // The stop signal every rank acts on: any rank's (a signal may reach the ranks at
  // different steps).
  int agreed_stop(int signal);

  const Recipe& recipe_;
  std::unique_ptr<StepGraph> graph_;  // run.cuda_graph
  const RunPlan& plan_;
  TrainState& state_;
  MetricsLog* metrics_;
  dist::Communicator* host_ = nullptr;         // active world: every rank's agreement on stopping
  dist::Communicator* device_comm_ = nullptr;  // active world: the step's collectives
  std::unique_ptr<dist::GradReducer> reducer_;
  const LoopOptions options_;
  data::MultiCropLoader loader_;
  // After the loader: destroyed first, it waits for the copies that read the loader's buffers.
  BatchUploader uploader_;
  StatsReadback readbacks_[2];  // the step being confirmed and the one queued after it
  int next_readback_ = 0;
  StepSchedules schedules_;
  CheckpointPolicy policy_;
  CollapseMonitor monitor_;
  std::optional<std::string> collapse_warning_;
  Progress progress_;
  const int64_t start_step_;
  std::chrono::steady_clock::time_point last_step_end_;
};

}  // namespace dino
