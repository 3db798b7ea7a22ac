#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>

#include "core/atomic_file.h"
#include "core/backend.h"
#include "core/drop_path_mask.h"
#include "dist/world.h"
#include "train/knn.h"
#include "train/metrics_log.h"
#include "train/run_plan.h"
#include "train/stop_signal.h"
#include "train/train_loop.h"
#include "train/train_state.h"

namespace dino {

using nlohmann::json;

nlohmann::json TrainResult::to_json() const {
  json j{{"steps", steps},
         {"epochs", epochs},
         {"seconds", seconds},
         {"images_per_second", images_per_second},
         {"data_wait_fraction", data_wait_fraction},
         {"first_loss", first_loss},
         {"last_loss", last_loss},
         {"teacher_entropy", teacher_entropy},
         {"batch_entropy", batch_entropy},
         {"kl", kl},
         {"checkpoint", checkpoint},
         {"device", device},
         {"ranks", ranks},
         {"global_batch", global_batch},
         {"collapse_warning", collapse_warning ? json(*collapse_warning) : json(nullptr)}};
  if (stopped_by) j["stopped_by"] = stopped_by == SIGINT ? "SIGINT" : "SIGTERM";
  if (!knn.empty()) j["knn"] = knn;
  return j;
}

std::unique_ptr<DinoModel> build_student(const Recipe& recipe, int64_t in_chans) {
  Rng rng(recipe.run.seed);
  return std::make_unique<DinoModel>(recipe.vit(in_chans), recipe.head, rng);
}

Device resolve_device(const std::string& requested, const std::string& who) {
  DINO_CHECK(requested == "auto" || requested == "cpu" || requested == "cuda", "[", who,
             "] --device must be auto, cpu or cuda, got '", requested, "'");
  if (requested == "cpu") return Device::cpu;
  if (requested == "auto") return cuda_available() ? Device::cuda : Device::cpu;
  const Backend* cuda = cuda_backend();
  DINO_CHECK(cuda, "[", who,
             "] --device cuda: this build has no CUDA support (configure with "
             "-DDINO_CUDA=ON on a machine with the CUDA toolkit); use --device cpu or auto");
  // description() says why: "no CUDA device (cudaErrorInsufficientDriver: ...)".
  DINO_CHECK(cuda->available(), "[", who, "] --device cuda: ", cuda->description(),
             "; use --device cpu or auto");
  return Device::cuda;
}

std::string describe_device(Device device) {
  if (device == Device::cuda && cuda_backend()) return "cuda: " + cuda_backend()->description();
  return device_name(device);
}

uint64_t drop_path_step_nonce(uint64_t seed, int64_t step) {
  return drop_path_nonce(mix64(seed ^ 0xd7097a7full), step);
}

std::unique_ptr<DinoModel> build_teacher(const DinoModel& student) {
  VitConfig vit = student.backbone.config();
  vit.drop_path_rate = 0;
  Rng unused(0);  // every weight is copied from the student below
  auto teacher = std::make_unique<DinoModel>(vit, student.head.config(), unused);
  auto src = student.named_parameters();
  auto dst = teacher->named_parameters();
  for (size_t i = 0; i < src.size(); ++i) {
    dst[i].second.copy_from(src[i].second);
    dst[i].second.set_requires_grad(false);
  }
  return teacher;
}

namespace {

// metrics.jsonl for this invocation: a new file, or on --resume the old one cut back to the
// checkpoint's step.
MetricsLog open_metrics(const RunPlan& plan, const TrainOptions& opt, int64_t step) {
  if (!opt.resume) return MetricsLog::create(plan.folder.metrics);
  int64_t kept = 0;
  MetricsLog log = MetricsLog::resume(plan.folder.metrics, step, &kept);
  if (kept < step && !opt.quiet)
    std::cerr << "train: note: " << plan.folder.metrics << " has lines for steps 1-" << kept
              << " only; steps " << kept + 1 << "-" << step << " of the checkpoint have none"
              << std::endl;
  return log;
}

void print_start(const Recipe& recipe, const RunPlan& plan, const TrainState& state) {
  const int64_t ipe = plan.iters_per_epoch, total = plan.total_steps;
  const int64_t scheduled = std::llround(recipe.optim.epochs * double(ipe));
  std::cout << "train: " << plan.train_set->describe() << "; " << ipe << " steps/epoch, " << total
            << " steps (" << double(total) / double(ipe) << " epochs), batch ";
  if (plan.ranks > 1)
    std::cout << recipe.optim.batch_size << " per rank x " << plan.ranks
              << " ranks = " << plan.global_batch << " (lr scaled on " << plan.global_batch << ")";
  else
    std::cout << plan.global_batch;
  std::cout << ", student " << state.student->num_parameters() << " parameters, device "
            << describe_device(plan.device) << std::endl;
  if (total < scheduled)
    std::cout << "note: run.max_steps=" << recipe.run.max_steps << " stops the run after " << total
              << " of the " << scheduled
              << " steps its schedules are laid out for (optim.epochs=" << recipe.optim.epochs
              << "): the learning rate, weight decay, teacher momentum and "
                 "temperature follow the full schedule and are cut off, not compressed; to train a "
                 "shorter schedule set optim.epochs"
              << std::endl;
  const double uniform = std::log(double(recipe.loss.out_dim));
  std::cout
      << "columns: epoch; steps done/total; loss (mean since the last line; ln K = " << uniform
      << " is a uniform teacher); lr; tau_t (teacher temperature); m (teacher momentum); H(t) "
         "(teacher entropy, nats; a collapse above "
      << kUniformCollapseFraction * uniform << "); KL (teacher to student); images/s; ETA (h:mm:ss)"
      << std::endl;
}

// Every rank must start from what rank 0 starts from: the same initial (or resumed) weights,
// recipe and data; else the ranks would silently train different models. One broadcast of
// rank 0's fingerprints, compared on every rank.
void check_same_start(dist::Communicator& host, const Recipe& recipe, const RunPlan& plan,
                      const TrainState& state) {
  auto fnv = [](uint64_t h, const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
  };
  const uint64_t basis = 0xcbf29ce484222325ull;
  uint64_t params = basis;
  for (const auto* model : {state.student.get(), state.teacher.get()})
    for (const auto& [name, p] : model->named_parameters()) {
      const Tensor host_copy = p.to(Device::cpu);
      params = fnv(fnv(params, name.data(), name.size()), host_copy.raw_data(), host_copy.nbytes());
    }
  const Tensor center = state.loss->center.to(Device::cpu);
  params = fnv(params, center.raw_data(), center.nbytes());
  params = fnv(params, &state.step, sizeof(state.step));
  const std::string text = recipe.json.dump();
  const uint64_t recipe_hash = fnv(basis, text.data(), text.size());
  const std::string data = str_cat(plan.train_set->describe(), " ", plan.train_set->size());
  const uint64_t data_hash = fnv(basis, data.data(), data.size());

  const uint64_t mine[3] = {params, recipe_hash, data_hash};
  Tensor theirs = Tensor::empty({3 * 8}, DType::u8);
  std::memcpy(theirs.raw_data(), mine, sizeof(mine));
  host.broadcast(theirs, 0);
  uint64_t root[3];
  std::memcpy(root, theirs.raw_data(), sizeof(root));
  DINO_CHECK(root[1] == mine[1],
             "[train] this rank's recipe differs from rank 0's (the same "
             "--config and overrides must reach every rank); refusing to start");
  DINO_CHECK(root[2] == mine[2], "[train] this rank's training data (", data,
             ") differs from rank "
             "0's; every rank must read the same dataset");
  DINO_CHECK(root[0] == mine[0],
             "[train] this rank's initial parameters differ from rank 0's (a "
             "different build, init_from file or checkpoint); refusing to start");
}

json knn_json(const KnnResult& r) { return json{{"top1", r.top1}, {"top5", r.top5}}; }

json evaluate_knn(const Recipe& recipe, const RunPlan& plan, const TrainState& state,
                  const ProgressFn& progress, dist::Communicator* host) {
  const auto t0 = std::chrono::steady_clock::now();
  // The control: the student's initial weights, built as TrainState builds them.
  const auto initial = build_student(recipe, plan.in_chans);
  initial->backbone.to(plan.device);
  const KnnReport r = knn_report(
      state.teacher->backbone, initial->backbone, recipe.data.dataset,
      {recipe.run.knn_k, recipe.run.knn_temperature, recipe.run.eval_batch}, progress, host);
  json out{{"trained", knn_json(r.trained)},
           {"random_init", knn_json(r.random_init)},
           {"raw_pixels", knn_json(r.raw_pixels)},
           {"k", r.trained.k},
           {"temperature", r.trained.temperature},
           {"n_train", r.trained.n_train},
           {"n_test", r.trained.n_test}};
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (plan.root()) write_file_atomically(plan.folder.knn, out.dump(2) + "\n");
  return out;
}

}  // namespace

TrainResult train(const json& cfg, const TrainOptions& opt) {
  return train(parse_recipe(cfg), opt);
}

TrainResult train(const Recipe& recipe, const TrainOptions& opt) {
  const RunPlan plan = plan_run(recipe, opt);
  dist::World* world = opt.world && opt.world->active() ? opt.world : nullptr;
  // This rank's GPU (or its share of the cores) before anything is allocated.
  if (world) world->bind(plan.device);
  // The attention kernels on the GPU: ours, or cuDNN's SDPA as the in-binary baseline.
  backend(plan.device, "train").select_attention(recipe.model.attention);
  TrainState state(recipe, plan.in_chans, plan.iters_per_epoch, plan.device);
  if (opt.resume) {
    state.resume(plan.folder.checkpoint, recipe, plan.ranks);
  } else if (!recipe.model.init_from.empty()) {
    state.init_backbones_from(recipe.model.init_from);
    if (!opt.quiet && plan.root())
      std::cout << "init: student and teacher backbones from " << recipe.model.init_from
                << std::endl;
  }
  if (world) {
    check_same_start(*world->host(), recipe, plan, state);
    state.loss->set_communicator(world->comm(plan.device));
  }
  const bool quiet = opt.quiet || !plan.root();
  std::optional<MetricsLog> metrics;
  if (plan.root()) {
    create_run_folder(plan.folder);
    metrics.emplace(open_metrics(plan, opt, state.step));
  }
  if (!quiet) {
    if (world) std::cout << "data-parallel: " << world->describe() << std::endl;
    print_start(recipe, plan, state);
  }

  TrainResult result;
  result.device = device_name(plan.device);
  result.checkpoint = plan.folder.checkpoint;
  result.ranks = plan.ranks;
  result.global_batch = plan.global_batch;
  {
    LoopOptions loop_options;
    loop_options.pipelined = plan.device == Device::cuda;
    TrainLoop loop(recipe, plan, state, metrics ? &*metrics : nullptr, quiet, world, loop_options);
    const StopSignals stop(opt.stop_on_signals);
    result.stopped_by = loop.run(stop);
    loop.summarize(result);
  }
  if (plan.knn && !result.stopped_by)
    result.knn = evaluate_knn(recipe, plan, state, plan.root() ? opt.knn_progress : ProgressFn(),
                              world ? world->host() : nullptr);
  return result;
}

}  // namespace dino
