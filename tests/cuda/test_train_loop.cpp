// The training loop on CUDA one step ahead of its statistics (train/train_loop.h,
// LoopOptions::pipelined): the batch's upload on the copy stream, the loss and collapse
// statistics read back while the next step is queued. It must train exactly as the
// synchronous order does, and a non-finite loss must stop the run one step later with a message
// naming the step, and with no checkpoint holding it.
#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/cuda/test_util.h"
#include "tests/train_fixtures.h"
#include "train/config.h"
#include "train/metrics_log.h"
#include "train/run_plan.h"
#include "train/stop_signal.h"
#include "train/train_loop.h"
#include "train/train_state.h"

using namespace dino;

namespace {

struct Run {
  Recipe recipe;
  RunPlan plan;
  TrainState state;
  MetricsLog metrics;

  Run(const nlohmann::json& cfg, const std::string& dir)
      : recipe(parse_recipe(cfg)),
        plan(plan_run(recipe, options(dir))),
        state(recipe, plan.in_chans, plan.iters_per_epoch, plan.device),
        metrics(open(plan)) {}

  static TrainOptions options(const std::string& dir) {
    TrainOptions o;
    o.out_dir = dir;
    o.device = "cuda";
    o.quiet = true;
    return o;
  }
  static MetricsLog open(const RunPlan& plan) {
    create_run_folder(plan.folder);
    return MetricsLog::create(plan.folder.metrics);
  }
  // Runs the loop up to `steps` steps in all.
  void train_to(int64_t steps, bool pipelined) {
    plan.total_steps = steps;
    LoopOptions o;
    o.pipelined = pipelined;
    TrainLoop loop(recipe, plan, state, &metrics, true, nullptr, o);
    loop.run(StopSignals(false));
  }
};

// metrics.jsonl without the keys that time the steps.
std::vector<nlohmann::json> metrics_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    j.erase("images_per_second");
    j.erase("data_wait_ms");
    lines.push_back(j);
  }
  return lines;
}

nlohmann::json loop_recipe() {
  nlohmann::json cfg = test::small_recipe();
  cfg["run"]["knn"] = false;
  cfg["run"]["checkpoint_every"] = 4;
  cfg["loss"]["koleo_weight"] = 0.1;  // the KoLeo term travels with the statistics
  return cfg;
}

}  // namespace

TEST_CASE("pipelined CUDA loop: the same steps and metrics as the synchronous order", "[train]") {
  const nlohmann::json cfg = loop_recipe();
  Run sync(cfg, test::fresh_dir("dino_cuda_tests", "loop_sync"));
  Run piped(cfg, test::fresh_dir("dino_cuda_tests", "loop_pipelined"));
  sync.train_to(5, false);
  piped.train_to(5, true);
  CHECK(piped.state.step == 5);
  const auto a = metrics_lines(sync.plan.folder.metrics);
  const auto b = metrics_lines(piped.plan.folder.metrics);
  REQUIRE(a.size() == 5);
  REQUIRE(b.size() == 5);
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << i + 1 << ": " << a[i].dump() << " vs " << b[i].dump());
    CHECK(b[i]["koleo"].get<double>() != 0);
    CHECK(a[i] == b[i]);  // bit for bit: the same kernels on the same data
  }
  const SafeTensors x = load_safetensors(sync.plan.folder.checkpoint);
  const SafeTensors y = load_safetensors(piped.plan.folder.checkpoint);
  CHECK(y.metadata.at("step") == "5");
  REQUIRE(x.tensors.size() == y.tensors.size());
  for (size_t i = 0; i < x.tensors.size(); ++i) {
    INFO(x.tensors[i].first);
    const Tensor& t = x.tensors[i].second;
    const Tensor& u = y.tensors[i].second;
    REQUIRE(t.nbytes() == u.nbytes());
    CHECK(std::memcmp(t.raw_data(), u.raw_data(), t.nbytes()) == 0);
  }
}

// The test's poison: a NaN center makes the next step's loss NaN (every teacher logit minus NaN).
void poison(Run& run) { run.state.loss->center.fill(std::numeric_limits<double>::quiet_NaN()); }

std::string train_error(Run& run, int64_t steps) {
  try {
    run.train_to(steps, true);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

int64_t checkpoint_step(const Run& run) {
  return std::stoll(load_safetensors(run.plan.folder.checkpoint).metadata.at("step"));
}

TEST_CASE(
    "pipelined CUDA loop: a non-finite loss at step k stops the run at step k+1, naming k, "
    "with no checkpoint holding k",
    "[train]") {
  Run run(loop_recipe(), test::fresh_dir("dino_cuda_tests", "loop_nan"));
  run.train_to(2, true);
  REQUIRE(checkpoint_step(run) == 2);
  poison(run);
  const std::string message = train_error(run, 8);
  INFO(message);
  CHECK_THAT(message, Catch::Contains("the loss of step 3 is ") && Catch::Contains("nan"));
  CHECK_THAT(message, Catch::Contains("stopping at step 4, queued before step 3's loss arrived"));
  CHECK_THAT(message, Catch::Contains("No checkpoint holds step 3 or later"));
  CHECK(run.state.step == 4);  // step 4 was queued before step 3's loss arrived
  // checkpoint_every 4 wants a checkpoint after step 4, which holds step 3: not written.
  CHECK(checkpoint_step(run) == 2);
  CHECK(metrics_lines(run.plan.folder.metrics).size() == 2);
}

TEST_CASE("pipelined CUDA loop: a checkpoint waits for the statistics of the steps it holds",
          "[train]") {
  Run run(loop_recipe(), test::fresh_dir("dino_cuda_tests", "loop_nan_checkpoint"));
  run.train_to(3, true);
  REQUIRE(checkpoint_step(run) == 3);
  poison(run);
  // Step 4's loss is NaN and a checkpoint is due after step 4: the loop waits for step 4's
  // statistics before queueing step 5, finds the NaN, and writes nothing. A loop that saved
  // first would fail differently (the checkpoint refuses non-finite tensors).
  const std::string message = train_error(run, 8);
  INFO(message);
  CHECK_THAT(message, Catch::Contains("the loss of step 4 is ") &&
                          Catch::Contains("; stopping. No checkpoint"));
  CHECK(run.state.step == 4);
  CHECK(checkpoint_step(run) == 3);
  CHECK(metrics_lines(run.plan.folder.metrics).size() == 3);
}
