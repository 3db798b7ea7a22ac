#pragma once
// The DINO training job behind `dino train`: the recipe validated and the run planned before
// anything is written (train/run_plan.h), then data, student and EMA teacher
// (train/train_state.h), the step loop (train/train_loop.h) with its per-step schedules,
// metrics.jsonl and checkpoints, exact resume, and the k-NN evaluation at the end.
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/rng.h"
#include "core/storage.h"
#include "data/loader.h"
#include "models/multicrop.h"
#include "train/config.h"
#include "train/embed.h"

namespace dino {

namespace dist {
class World;
}

struct TrainOptions {
  std::string out_dir = "runs/dino";
  bool resume = false;  // continue the run in out_dir from its checkpoint
  bool force = false;   // start over in a folder that holds a run, replacing it
  // auto | cpu | cuda. The library default is the CPU, so a caller (the CPU tests) gets the
  // same numbers on any machine; `dino train` passes the user's choice (default auto).
  std::string device = "cpu";
  bool quiet = false;  // no progress lines (tests)
  // Ctrl-C / SIGTERM stop the run at the next step boundary with a checkpoint
  // (train/stop_signal.h); `dino train` sets it.
  bool stop_on_signals = false;
  ProgressFn knn_progress;  // called while the final k-NN extracts features
  // The data-parallel job this process is a rank of (dist/world.h); nullptr or an inactive
  // world: a world of one. optim.batch_size is per rank, the global batch is that times the
  // ranks; rank 0 alone writes the run's files and prints.
  dist::World* world = nullptr;
};

// --device: "cpu", "cuda" (throws one clear error, naming `who`, when this build has no CUDA
// or no GPU is usable) or "auto" (CUDA when kernels::cuda::available(), else the CPU).
Device resolve_device(const std::string& requested, const std::string& who);
// "cpu" or the CUDA device's description ("cuda: NVIDIA H200 (sm_90, ...)").
std::string describe_device(Device device);

struct TrainResult {
  int64_t steps = 0;   // optimizer steps done in total
  double epochs = 0;   // epochs reached
  double seconds = 0;  // wall time of the training loop (this invocation)
  double images_per_second = 0;
  double data_wait_fraction = 0;         // share of `seconds` the loop waited for the data loader
  std::string device = "cpu";            // where the training ran
  int ranks = 1;                         // data-parallel ranks
  int64_t global_batch = 0;              // images per step over every rank
  double first_loss = 0, last_loss = 0;  // mean over the first / last tenth (<= 50 steps)
  double teacher_entropy = 0, batch_entropy = 0, kl = 0;  // last step
  std::optional<std::string> collapse_warning;            // active at the end of training
  std::string checkpoint;                                 // path of the final checkpoint
  int stopped_by = 0;  // SIGINT or SIGTERM when a signal stopped the run early
  nlohmann::json knn;  // {} when not evaluated
  nlohmann::json to_json() const;
};

// The student as a run with this recipe starts: Rng(run.seed) drawn in a fixed order.
// `dino knn` builds its random-init control with the same function.
std::unique_ptr<DinoModel> build_student(const Recipe& recipe, int64_t in_chans);

// The stochastic-depth nonce of optimizer step `step` (0-based) of a run seeded `seed`
// (core/drop_path_mask.h): a function of the two, so a resumed run draws the masks an
// uninterrupted one draws without any checkpointed generator state.
uint64_t drop_path_step_nonce(uint64_t seed, int64_t step);

// The EMA teacher of `student`: the same architecture without stochastic depth, starting
// from the student's weights, no parameter requiring grad.
std::unique_ptr<DinoModel> build_teacher(const DinoModel& student);

TrainResult train(const Recipe& recipe, const TrainOptions& options);
// `cfg` is read and validated with parse_recipe() first.
TrainResult train(const nlohmann::json& cfg, const TrainOptions& options);

}  // namespace dino
