#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <iostream>

#include "core/atomic_file.h"
#include "train/knn.h"
#include "train/metrics_log.h"
#include "train/run_plan.h"
#include "train/stop_signal.h"
#include "train/train_loop.h"
#include "train/train_state.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#endif

namespace dino {

using nlohmann::json;

nlohmann::json TrainResult::to_json() const {
  json j{{"steps", steps}, {"epochs", epochs}, {"seconds", seconds},
         {"images_per_second", images_per_second}, {"data_wait_fraction", data_wait_fraction},
         {"first_loss", first_loss},
         {"last_loss", last_loss}, {"teacher_entropy", teacher_entropy},
         {"batch_entropy", batch_entropy}, {"kl", kl}, {"checkpoint", checkpoint},
         {"device", device},
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
#ifdef DINO_HAS_CUDA
  // device_description() says why: "no CUDA device (cudaErrorInsufficientDriver: ...)".
  DINO_CHECK(kernels::cuda::available(), "[", who, "] --device cuda: ",
             kernels::cuda::device_description(), "; use --device cpu or auto");
  return Device::cuda;
#else
  throw Error(str_cat("[", who, "] --device cuda: this build has no CUDA support (configure with "
                      "-DDINO_CUDA=ON on a machine with the CUDA toolkit); use --device cpu or auto"));
#endif
}

std::string describe_device(Device device) {
#ifdef DINO_HAS_CUDA
  if (device == Device::cuda) return "cuda: " + kernels::cuda::device_description();
#endif
  return device_name(device);
}

Rng drop_path_rng(uint64_t seed) { return Rng::derive({seed, 0xd7097a7full}); }

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
            << " steps (" << double(total) / double(ipe) << " epochs), batch "
            << recipe.optim.batch_size << ", student " << state.student->num_parameters()
            << " parameters, device " << describe_device(plan.device) << std::endl;
  if (total < scheduled)
    std::cout << "note: run.max_steps=" << recipe.run.max_steps << " stops the run after " << total
              << " of the " << scheduled << " steps its schedules are laid out for (optim.epochs="
              << recipe.optim.epochs << "): the learning rate, weight decay, teacher momentum and "
                 "temperature follow the full schedule and are cut off, not compressed; to train a "
                 "shorter schedule set optim.epochs" << std::endl;
  const double uniform = std::log(double(recipe.loss.out_dim));
  std::cout << "columns: epoch; steps done/total; loss (mean since the last line; ln K = " << uniform
            << " is a uniform teacher); lr; tau_t (teacher temperature); m (teacher momentum); H(t) "
               "(teacher entropy, nats; a collapse above " << kUniformCollapseFraction * uniform
            << "); KL (teacher to student); images/s; ETA (h:mm:ss)" << std::endl;
}

json knn_json(const KnnResult& r) { return json{{"top1", r.top1}, {"top5", r.top5}}; }

json evaluate_knn(const Recipe& recipe, const RunPlan& plan, const TrainState& state,
                  const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  // The control: the student's initial weights, built as TrainState builds them.
  const auto initial = build_student(recipe, plan.in_chans);
  initial->backbone.to(plan.device);
  const KnnReport r = knn_report(state.teacher->backbone, initial->backbone, recipe.data.dataset,
                                 {recipe.run.knn_k, recipe.run.knn_temperature, recipe.run.eval_batch},
                                 progress);
  json out{{"trained", knn_json(r.trained)},
           {"random_init", knn_json(r.random_init)},
           {"raw_pixels", knn_json(r.raw_pixels)},
           {"k", r.trained.k},
           {"temperature", r.trained.temperature},
           {"n_train", r.trained.n_train},
           {"n_test", r.trained.n_test}};
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_file_atomically(plan.folder.knn, out.dump(2) + "\n");
  return out;
}

}  // namespace

TrainResult train(const json& cfg, const TrainOptions& opt) { return train(parse_recipe(cfg), opt); }

TrainResult train(const Recipe& recipe, const TrainOptions& opt) {
  const RunPlan plan = plan_run(recipe, opt);
#ifdef DINO_HAS_CUDA
  // The attention kernels on the GPU: ours, or cuDNN's SDPA as the in-binary baseline.
  if (plan.device == Device::cuda) kernels::cuda::set_attention_backend(recipe.model.attention.c_str());
#endif
  TrainState state(recipe, plan.in_chans, plan.iters_per_epoch, plan.device);
  if (opt.resume) {
    state.resume(plan.folder.checkpoint, recipe);
  } else if (!recipe.model.init_from.empty()) {
    state.init_backbones_from(recipe.model.init_from);
    if (!opt.quiet)
      std::cout << "init: student and teacher backbones from " << recipe.model.init_from << std::endl;
  }
  create_run_folder(plan.folder);
  MetricsLog metrics = open_metrics(plan, opt, state.step);
  if (!opt.quiet) print_start(recipe, plan, state);

  TrainResult result;
  result.device = device_name(plan.device);
  result.checkpoint = plan.folder.checkpoint;
  {
    TrainLoop loop(recipe, plan, state, metrics, opt.quiet);
    const StopSignals stop(opt.stop_on_signals);
    result.stopped_by = loop.run(stop);
    loop.summarize(result);
  }
  if (plan.knn && !result.stopped_by) result.knn = evaluate_knn(recipe, plan, state, opt.knn_progress);
  return result;
}

}  // namespace dino
