// `dino bench`: benchmarks (ARCHITECTURE §7).
//  train-step: the time of one DINO optimisation step (train/step.h) on the CPU or the GPU,
//    on fixed random crops shaped like the recipe's multi-crop batch, so the data loader is out
//    of the measurement. `--dump DIR` writes the initial weights, the crops and the setting for
//    benchmarks/cpu_train_step.py, which times the same step in PyTorch on identical inputs.
//    `--loop` then runs the training loop as `dino train` does (the real loader, its views made
//    where data.augment says, the upload of the batch, the step; on CUDA pipelined: the upload
//    on the copy stream and the statistics read back one step late) and reports images/s and
//    the time per step spent waiting for data, queueing the upload and in the step, next to
//    the step alone. On CUDA the default
//    recipe is the built-in ViT-S/16 DINO one (2x224 + 8x96 crops, K 65536, batch 64).
//  loader: data::MultiCropLoader alone on a recipe (images/s, per thread and per CPU-second)
//    and one thread's CPU time per image for each stage (decode, crop+resize, jitter, ...).
//  attention, layernorm, dino-loss, gemm: the GPU kernels against cuDNN and composite
//    baselines, with the ceilings measured in the same run (benchmarks/bench.h).
//  augment: the GPU augmentation of a batch against the CPU path on one thread.
#include <omp.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/batch_shard.h"
#include "core/safetensors.h"
#include "data/loader.h"
#ifdef DINO_HAS_CUDA
#include "benchmarks/bench.h"
#include "benchmarks/step_profile.h"
#endif
#include "core/backend.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "tools/bench_dist.h"
#include "tools/commands.h"
#include "train/batch_upload.h"
#include "train/config.h"
#include "train/run_plan.h"
#include "train/stats_readback.h"
#include "train/step.h"
#include "train/step_graph.h"
#include "train/trainer.h"

namespace dino::tools {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Named = std::vector<std::pair<std::string, Tensor>>;

struct Args {
  std::string device = "cpu", config = "configs/fashion_mnist_cpu.json", dump;
  bool config_given = false;
  std::vector<std::string> overrides;
  int steps = 20, warmup = 3;
  bool loop = false, profile = false, json = false;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Nearest-rank percentile of an ascending vector.
double percentile(const std::vector<double>& sorted, double q) {
  const size_t i = size_t(std::llround(q * double(sorted.size() - 1)));
  return sorted[std::min(i, sorted.size() - 1)];
}

json time_summary(std::vector<double> ms, int64_t images_per_rep) {
  std::sort(ms.begin(), ms.end());
  const double median = percentile(ms, 0.5);
  return json{{"median_ms", median},
              {"p10_ms", percentile(ms, 0.1)},
              {"p90_ms", percentile(ms, 0.9)},
              {"images_per_second", double(images_per_rep) / (median / 1e3)},
              {"reps", ms.size()}};
}

Named prefixed(const Named& tensors, const std::string& prefix) {
  Named out;
  for (const auto& [name, t] : tensors) out.push_back({prefix + name, t});
  return out;
}

double cpu_seconds() {  // this process, all threads
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double thread_seconds() {  // this thread's CPU time: what a stage costs, whoever shares the cores
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// One thread's CPU time per image for each stage of the loader's work, the stages run one by
// one as apply_view runs them, over the first `images` images of the dataset.
json loader_stages(const data::Dataset& ds, const data::MultiCropConfig& mc,
                   const data::LoaderOptions& opt, int images) {
  const char* names[] = {
      "decode", "draw",     "crop_resize",
      "flip",   "jitter",   "grayscale",
      "blur",   "solarize", opt.format == data::CropFormat::f32 ? "normalize" : "to_bytes"};
  constexpr int kStages = 9;
  double t[kStages] = {};
  const data::Normalization norm = data::resolve_normalization(mc.norm, ds.channels());
  const int n = data::view_count(mc);
  std::vector<data::ViewParams> views(static_cast<size_t>(n));
  data::SourceImage src;
  data::Image img, view;
  data::ResizeScratch resize;
  data::BlurScratch blur;
  std::vector<float> out_f32;
  std::vector<uint8_t> out_u8;
  for (int i = 0; i < images; ++i) {
    const size_t index = size_t(i) % ds.size();
    Rng rng = data::sample_rng(0, 0, int64_t(index));
    double draw = 0;
    double t0 = thread_seconds();
    ds.load(index, src, [&](int h, int w) {
      const double d0 = thread_seconds();
      data::draw_views(h, w, mc, rng, views.data());
      draw = thread_seconds() - d0;
      return opt.reduce_jpeg ? data::max_reduction(views.data(), n) : 1;
    });
    if (src.height != src.full_height || src.width != src.full_width)
      data::map_to_reduced(views.data(), n, src.full_height, src.full_width, src.height, src.width);
    const data::Image* in = &src.f32;
    if (src.is_u8) {
      data::to_float(src, img);
      in = &img;
    }
    double t1 = thread_seconds();
    t[0] += t1 - t0 - draw;
    t[1] += draw;
    for (const data::ViewParams& p : views) {
      double s[kStages];
      s[0] = thread_seconds();
      data::resized_crop(*in, p.box.top, p.box.left, p.box.height, p.box.width, p.size, p.size,
                         view, resize);
      s[1] = thread_seconds();
      if (p.flip) data::hflip(view);
      s[2] = thread_seconds();
      data::color_jitter(view, p);
      s[3] = thread_seconds();
      if (p.grayscale) data::to_grayscale(view);
      s[4] = thread_seconds();
      if (p.blur_sigma > 0.f) data::gaussian_blur(view, p.blur_sigma, blur);
      s[5] = thread_seconds();
      if (p.solarize) data::solarize(view, 0.5f);
      s[6] = thread_seconds();
      if (opt.format == data::CropFormat::f32) {
        out_f32.resize(view.pixels.size());
        data::normalize(view, norm, out_f32.data());
      } else {
        out_u8.resize(view.pixels.size());
        data::to_bytes(view, out_u8.data());
      }
      s[7] = thread_seconds();
      for (int k = 0; k < 7; ++k) t[k + 2] += s[k + 1] - s[k];
    }
  }
  json stages = json::object();
  double total = 0;
  for (int k = 0; k < kStages; ++k) {
    stages[names[k]] = t[k] * 1e3 / images;
    total += t[k];
  }
  stages["total"] = total * 1e3 / images;
  return stages;
}

struct LoaderArgs {
  std::string config;
  std::vector<std::string> overrides;
  int threads = 0, images = 512, warmup = 1, stage_images = 64;
  std::string format = "f32";
  bool no_reduce = false, json = false;
};

json run_loader(const Recipe& recipe, const LoaderArgs& a) {
  auto dataset = data::open_dataset(recipe.data.dataset, data::Split::train);
  const int batch = recipe.optim.batch_size;
  data::LoaderOptions opt;
  opt.threads = a.threads > 0 ? a.threads : recipe.data.loader_threads;
  opt.format = a.format == "u8" ? data::CropFormat::u8 : data::CropFormat::f32;
  opt.reduce_jpeg = !a.no_reduce;
  const data::MultiCropConfig mc = recipe.crops_for(dataset->channels());
  const int batches = std::max(1, (a.images + batch - 1) / batch);
  json stages;
  if (a.stage_images > 0) stages = loader_stages(*dataset, mc, opt, a.stage_images);

  data::MultiCropLoader loader(*dataset, mc, batch, recipe.run.seed, opt);
  loader.start(0);
  for (int i = 0; i < a.warmup; ++i) loader.next();
  // The rate over the whole run is the figure: per-batch times mean little with prefetching.
  const double c0 = cpu_seconds();
  const auto t0 = Clock::now();
  for (int i = 0; i < batches; ++i) loader.next();
  const double s = seconds_since(t0), cpu = cpu_seconds() - c0;
  const double images = double(batches) * batch;
  json out{{"bench", "loader"},
           {"dataset", dataset->describe()},
           {"batch", batch},
           {"views", str_cat(mc.global.count, "x", mc.global.size, " + ", mc.local.count, "x",
                             mc.local.size)},
           {"format", a.format},
           {"reduce_jpeg", opt.reduce_jpeg},
           {"threads", opt.threads},
           {"prefetch", loader.prefetch()},
           {"batches", batches},
           {"images_per_second", images / s},
           {"images_per_second_per_thread", images / s / opt.threads},
           {"images_per_cpu_second", images / cpu},
           {"ms_per_batch", s * 1e3 / batches}};
  std::printf("loader: %s, batch %d, views %s (%s), %d thread(s), prefetch %d\n",
              dataset->describe().c_str(), batch, out["views"].get<std::string>().c_str(),
              a.format.c_str(), opt.threads, loader.prefetch());
  std::printf(
      "  %.1f images/s (%.1f per thread, %.1f per CPU-second), %.1f ms per batch over %d batches\n",
      out["images_per_second"].get<double>(), out["images_per_second_per_thread"].get<double>(),
      out["images_per_cpu_second"].get<double>(), out["ms_per_batch"].get<double>(), batches);
  if (!stages.is_null()) {
    out["stages_ms"] = stages;
    out["decode_ms"] = stages["decode"];
    std::printf("  one thread, CPU ms per image over %d images:", a.stage_images);
    for (auto it = stages.begin(); it != stages.end(); ++it)
      std::printf(" %s %.3f", it.key().c_str(), it->get<double>());
    std::printf("\n");
  }
  return out;
}

// --profile: what the device runs over a few steps queued back to back, as dino train queues
// them (no synchronisation between them), kernel by kernel (benchmarks/step_profile.h). A trace
// that fails (CUPTI refusing, say) is a profile saying why: the timings stand without it.
json profile_steps(const std::function<void()>& step, const std::function<void()>& sync,
                   const char* form) {
#ifdef DINO_HAS_CUDA
  constexpr int kSteps = 3;
  json p;
  try {
    const std::vector<bench::DeviceActivity> activity = bench::trace_device_activity([&] {
      for (int i = 0; i < kSteps; ++i) step();
      sync();
    });
    p = bench::summarize_step_profile(activity, kSteps);
  } catch (const Error& e) {
    p = json{{"error", e.what()}};
  }
  p["form"] = form;
  return p;
#else
  (void)step, (void)sync, (void)form;
  throw Error("[bench] --profile traces the GPU's kernels: this build has no CUDA");
#endif
}

// world: launched by mpirun, each rank times the step of its per-rank batch with the gradient
// reducer and the center's all-reduce, as dino train runs it, and reports the bytes each step
// communicates and the reduction time the backward did not hide (rank 0 prints).
json run_train_step(const Recipe& recipe, const Args& a, dist::World& world) {
  // The dataset fixes the channel count; only --loop reads images.
  const int64_t in_chans = data::open_dataset(recipe.data.dataset, data::Split::train)->channels();
  const OptimConfig& optim = recipe.optim;
  const int64_t batch = optim.batch_size;
  const uint64_t seed = recipe.run.seed;
  const bool parallel = world.active();
  DINO_CHECK(!parallel || !a.loop,
             "[bench] --loop times one process's loader and step; run it "
             "without mpirun");
  // The device as dino train resolves it: a build or a machine without CUDA is one clear error.
  const Device device = resolve_device(a.device, "bench");
  DINO_CHECK(!a.profile || device == Device::cuda,
             "[bench] --profile traces the GPU's kernels: add --device cuda");
  if (parallel) world.bind(device);

  // Student, teacher, loss and optimizer as train() builds them: built on the CPU from the
  // seed, moved to the device, the optimizer made after the move.
  const bool cuda = device == Device::cuda;
  auto student = build_student(recipe, in_chans);
  auto teacher_ptr = build_teacher(*student);
  DinoModel& teacher = *teacher_ptr;
  const DinoLossConfig& loss_cfg = recipe.loss;
  DinoLoss loss(loss_cfg, 1);
  if (cuda) {
    DINO_CHECK(a.dump.empty(),
               "[bench] --dump is for the CPU comparison; drop it with --device cuda");
    student->to(Device::cuda);
    teacher.to(Device::cuda);
    loss.to(Device::cuda);
  }
  // The attention kernels model.attention names, selected as dino train selects them.
  const Backend& device_backend = backend(device, "bench");
  device_backend.select_attention(recipe.model.attention);
  AdamW optimizer = make_optimizer(*student);
  DropPathNoise drop = make_drop_path_noise(0, device);
  std::unique_ptr<dist::GradReducer> reducer;
  dist::Communicator* comm = nullptr;
  if (parallel) {
    comm = world.comm(cuda ? Device::cuda : Device::cpu);
    reducer = std::make_unique<dist::GradReducer>(*comm, trainable_parameters(*student));
    reducer->set_timing(true);
    loss.set_communicator(comm);
  }
  const BatchShardScope shard(parallel ? world.rank() : 0, parallel ? world.size() : 1);

  // The setting of a step past warm-up and the last-layer freeze (every parameter updated),
  // which is what most of a run's steps cost; the values themselves do not change the work.
  StepSettings s;
  s.lr = optim.scaled_lr();
  s.weight_decay = optim.weight_decay;
  s.teacher_momentum = optim.momentum_teacher;
  s.teacher_temp = loss_cfg.teacher_temp;
  s.clip_grad = optim.clip_grad;
  s.freeze_last_layer = false;
  s.drop_path_nonce = drop_path_step_nonce(seed, 0);

  const int64_t G = loss_cfg.global_crops, L = recipe.crops.local.count;
  const int64_t global = recipe.crops.global.size, local = recipe.crops.local.size;
  Rng crop_rng = Rng::derive({seed, 0xbe7c4ull});
  std::vector<Tensor> crops;
  for (int64_t v = 0; v < G + L; ++v)
    crops.push_back(
        Tensor::randn({batch, in_chans, v < G ? global : local, v < G ? global : local}, crop_rng));
  if (cuda)
    for (Tensor& c : crops) c = c.to(Device::cuda);

  const VitConfig& vc = student->backbone.config();
  const HeadConfig& hc = student->head.config();
  if (!a.dump.empty()) {
    namespace fs = std::filesystem;
    fs::create_directories(a.dump);
    Named init = prefixed(student->named_parameters(), "student.");
    const Named t = prefixed(teacher.named_parameters(), "teacher.");
    init.insert(init.end(), t.begin(), t.end());
    init.push_back({"loss.center", loss.center});
    save_safetensors((fs::path(a.dump) / "init.safetensors").string(), init);
    Named views;
    for (size_t v = 0; v < crops.size(); ++v)
      views.push_back({"view" + std::to_string(v), crops[v]});
    save_safetensors((fs::path(a.dump) / "crops.safetensors").string(), views);
    // tests/reference/dino_reference.py's config layout, so its build_models reads it as is.
    const json setting{
        {"model",
         {{"img_size", vc.img_size},
          {"patch_size", vc.patch_size},
          {"in_chans", vc.in_chans},
          {"embed_dim", vc.embed_dim},
          {"depth", vc.depth},
          {"num_heads", vc.num_heads},
          {"mlp_ratio", vc.mlp_ratio},
          {"qkv_bias", vc.qkv_bias},
          {"ln_eps", vc.ln_eps},
          {"drop_path_rate", vc.drop_path_rate}}},
        {"head",
         {{"out_dim", hc.out_dim},
          {"hidden_dim", hc.hidden_dim},
          {"bottleneck_dim", hc.bottleneck_dim},
          {"nlayers", hc.nlayers},
          {"norm_last_layer", hc.norm_last_layer}}},
        {"loss",
         {{"student_temp", loss_cfg.student_temp}, {"center_momentum", loss_cfg.center_momentum}}},
        {"crops",
         {{"global", G},
          {"views", G + L},
          {"global_size", global},
          {"local_size", local},
          {"batch", batch}}},
        {"step",
         {{"lr", s.lr},
          {"weight_decay", s.weight_decay},
          {"teacher_temp", s.teacher_temp},
          {"teacher_momentum", s.teacher_momentum},
          {"clip_grad", s.clip_grad},
          {"freeze_last_layer", s.freeze_last_layer}}},
        {"adamw", {{"betas", {0.9, 0.999}}, {"eps", 1e-8}}},
        {"bench", {{"steps", a.steps}, {"warmup", a.warmup}}}};
    std::ofstream((fs::path(a.dump) / "config.json").string()) << setting.dump(1) << "\n";
  }

  // Each step's clock runs from the device being idle to the device having finished the step
  // (a synchronisation), so a step's time is its own. On CUDA the statistics stay on the device
  // as in dino train (read after the clock stops), and the time the host took to queue the step
  // is kept too: when it nears the step's time, the host, not the device, sets the pace.
  auto sync = [&] { device_backend.synchronize(); };
  StepSettings timed = s;
  timed.defer_stats = cuda;
  auto loss_of = [&](const StepOutputs& out) {
    return cuda ? out.pending.loss.decode(out.pending.loss.values.to_vector().data()).loss
                : out.stats.loss;
  };
  struct Timing {
    std::vector<double> ms, host_ms;
    double last_loss = 0;
  };
  auto time_steps = [&](int warmup, const std::function<StepOutputs()>& step,
                        std::vector<double>* exposed) {
    for (int i = 0; i < warmup; ++i) step();
    sync();
    Timing t;
    for (int i = 0; i < a.steps; ++i) {
      const auto t0 = Clock::now();
      StepOutputs out = step();
      t.host_ms.push_back(seconds_since(t0) * 1e3);
      sync();
      t.ms.push_back(seconds_since(t0) * 1e3);
      if (exposed) exposed->push_back(reducer->last_exposed_ms());
      t.last_loss = loss_of(out);
    }
    return t;
  };
  std::vector<double> exposed_ms;
  const Timing eager = time_steps(
      a.warmup,
      [&] {
        return dino_step(*student, teacher, loss, optimizer, crops, timed, &drop, false,
                         reducer.get());
      },
      reducer ? &exposed_ms : nullptr);
  const std::vector<double>& ms = eager.ms;
  const double last_loss = eager.last_loss;
  json profiles;  // --profile: per form of the step ("eager", "graph")
  if (a.profile)
    profiles["eager"] = profile_steps(
        [&] {
          dino_step(*student, teacher, loss, optimizer, crops, timed, &drop, false, reducer.get());
        },
        sync, "eager");
  // run.cuda_graph: the same step through its CUDA graph (train/step_graph.h), timed after the
  // eager one on the same models; at least two warm-up steps, since it records on the second.
  json graphed;
  if (recipe.run.cuda_graph) {
    DINO_CHECK(cuda, "[bench] run.cuda_graph=true needs --device cuda");
    // The exposed reduction is timed with events inside the step, which a graph cannot query.
    if (reducer) reducer->set_timing(false);
    StepGraph graph;
    const Timing g = time_steps(
        std::max(a.warmup, 2),
        [&] {
          return graph.step(*student, teacher, loss, optimizer, crops, timed, &drop, reducer.get(),
                            comm);
        },
        nullptr);
    const DeviceGraphSize size = graph.size();
    graphed = time_summary(g.ms, batch);
    graphed["host_median_ms"] = time_summary(g.host_ms, batch)["median_ms"];
    graphed["nodes"] = size.nodes;
    graphed["arena_mib"] = double(size.arena_bytes) / double(1 << 20);
    graphed["arena_peak_mib"] = double(size.arena_peak) / double(1 << 20);
    graphed["speedup"] = time_summary(eager.ms, batch)["median_ms"].get<double>() /
                         graphed["median_ms"].get<double>();
    graphed["last_loss"] = g.last_loss;
    if (a.profile)
      profiles["graph"] = profile_steps(
          [&] {
            graph.step(*student, teacher, loss, optimizer, crops, timed, &drop, reducer.get(),
                       comm);
          },
          sync, "CUDA graph");
  }

  json loop;
  if (a.loop) {
    // The loop of `dino train` (train/train_loop.h): the loader's next batch, its upload (on
    // CUDA on the copy stream, overlapping the step the device still runs), the step, then on
    // CUDA the previous step's statistics, read back while this step runs. Timed per step on
    // the host: the wait for the loader, queueing the upload, and the step (queueing it plus,
    // on CUDA, waiting for the device to finish the one before); images/s over the whole loop.
    auto dataset = data::open_dataset(recipe.data.dataset, data::Split::train);
    data::LoaderOptions lo;
    lo.threads = recipe.data.loader_threads;
    lo.format = crop_format_for(recipe, device);
    if (lo.format == data::CropFormat::f32) lo.allocator = BatchUploader::allocator(device);
    data::MultiCropLoader loader(*dataset, recipe.crops_for(int(in_chans)), int(batch), seed, lo);
    BatchUploader uploader(device);
    StatsReadback readbacks[2];
    int next_readback = 0;
    StepSettings ls = s;
    ls.defer_stats = cuda;
    // With run.cuda_graph the loop runs its steps through a graph, as dino train does.
    std::unique_ptr<StepGraph> loop_graph =
        recipe.run.cuda_graph ? std::make_unique<StepGraph>() : nullptr;
    struct InFlight {
      data::MultiCropLoader::Lease batch;
      BatchUploader::Upload upload;
      StatsReadback* readback = nullptr;
    };
    std::optional<InFlight> previous;
    auto finish = [&](InFlight& f) {
      if (f.readback) {
        const double l = f.readback->wait().stats.loss;
        DINO_CHECK(std::isfinite(l), "[bench] the loop's loss is ", l);
      }
      uploader.copied(f.upload);
      f.batch.reset();
    };
    std::vector<double> wait_ms, upload_ms, step_ms;
    auto iteration = [&](bool timed) {
      const auto t0 = Clock::now();
      InFlight f;
      f.batch = loader.next();
      const auto t1 = Clock::now();
      f.upload = uploader.upload(*f.batch);
      const auto t2 = Clock::now();
      StepOutputs out =
          loop_graph
              ? loop_graph->step(*student, teacher, loss, optimizer, f.upload.views, ls, &drop)
              : dino_step(*student, teacher, loss, optimizer, f.upload.views, ls, &drop);
      f.upload.views.clear();
      if (cuda) {
        f.readback = &readbacks[next_readback];
        next_readback = 1 - next_readback;
        f.readback->start(out.pending);
      }
      if (previous) finish(*previous);
      previous = std::move(f);
      const auto t3 = Clock::now();
      if (!timed) return;
      wait_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      upload_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      step_ms.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
    };
    loader.start(0);
    for (int i = 0; i < a.warmup; ++i) iteration(false);
    const auto l0 = Clock::now();
    for (int i = 0; i < a.steps; ++i) iteration(true);
    if (previous) finish(*previous);
    previous.reset();
    sync();
    const double total = seconds_since(l0);
    auto mean = [](const std::vector<double>& v) {
      double m = 0;
      for (double x : v) m += x / double(v.size());
      return m;
    };
    loop = json{{"images_per_second", double(a.steps) * double(batch) / total},
                {"loader_threads", lo.threads},
                {"prefetch", loader.prefetch()},
                {"pipelined", cuda},
                {"cuda_graph", recipe.run.cuda_graph},
                {"data_wait_ms", mean(wait_ms)},
                {"upload_ms", mean(upload_ms)},
                {"step_ms", mean(step_ms)},
                {"data_wait_fraction", mean(wait_ms) * a.steps / (total * 1e3)},
                {"dataset", dataset->describe()}};
  }

  // FLOPs: forward of the student over all crops x3 (backward ~ 2x forward) plus the teacher's
  // forward over the global crops; backbone from flops_per_image, head from its linear layers.
  const double student_fwd =
      double(batch) * (double(G) * student->backbone.flops_per_image(global) +
                       double(L) * student->backbone.flops_per_image(local) +
                       double(G + L) * student->head.flops_per_row());
  const double teacher_fwd =
      double(batch) * double(G) *
      (teacher.backbone.flops_per_image(global) + student->head.flops_per_row());
  const double flops = 3.0 * student_fwd + teacher_fwd;
  json out = time_summary(ms, parallel ? batch * world.size() : batch);
  out["bench"] = "train-step";
  out["engine"] = "dino-engine";
  // The keys benchmarks/compare_torch.py joins on; a step with cuDNN's attention is its own row.
  out["impl"] = "ours";
  out["pass"] = "step";
  out["shape"] = str_cat("batch=", batch, " global=", G, "x", global, " local=", L, "x", local,
                         " K=", hc.out_dim);
  out["device"] = a.device;
  if (cuda) {
    out["device_name"] = device_backend.description();
    out["attention_backend"] = recipe.model.attention;
    if (recipe.model.attention != "ours")
      out["impl"] = str_cat("ours+", recipe.model.attention, "-attention");
  }
  out["threads"] = omp_get_max_threads();
#ifdef __AVX512F__
  out["isa"] = "avx512";
#elif defined(__AVX2__)
  out["isa"] = "avx2";
#else
  out["isa"] = "baseline";
#endif
  out["batch"] = batch;
  out["views"] = {{"global", G}, {"global_size", global}, {"local", L}, {"local_size", local}};
  out["warmup"] = a.warmup;
  out["gflop_per_step"] = flops / 1e9;
  out["gflops"] = flops / 1e9 / (out["median_ms"].get<double>() / 1e3);
  out["flop_convention"] =
      "3x student forward (all crops) + 1x teacher forward (globals); backbone "
      "flops_per_image + head linears, 2 FLOPs per multiply-add";
  out["last_loss"] = last_loss;
  out["host_median_ms"] = time_summary(eager.host_ms, batch)["median_ms"];
  std::printf(
      "train-step (%s, %s, %d threads): batch %ld, %ld x %ld px + %ld x %ld px, %d warm-up + %d "
      "timed steps\n",
      a.device.c_str(), out["isa"].get<std::string>().c_str(), out["threads"].get<int>(),
      long(batch), long(G), long(global), long(L), long(local), a.warmup, a.steps);
  std::printf(
      "  median %.1f ms (p10 %.1f, p90 %.1f)  %.1f images/s  %.1f GFLOP/s (%.2f GFLOP per step)\n",
      out["median_ms"].get<double>(), out["p10_ms"].get<double>(), out["p90_ms"].get<double>(),
      out["images_per_second"].get<double>(), out["gflops"].get<double>(), flops / 1e9);
  std::printf("  FLOPs: %s\n", out["flop_convention"].get<std::string>().c_str());
  if (cuda)
    std::printf("  the host queues a step in %.1f ms (median) of the step's %.1f\n",
                out["host_median_ms"].get<double>(), out["median_ms"].get<double>());
  if (!graphed.is_null()) {
    out["graph"] = graphed;
    std::printf(
        "  through a CUDA graph (run.cuda_graph): median %.1f ms (p10 %.1f, p90 %.1f)  %.1f "
        "images/s = %.2fx the eager step; the host queues it in %.1f ms; %zu nodes, arena %.0f "
        "MiB (peak %.0f MiB in use)\n",
        graphed["median_ms"].get<double>(), graphed["p10_ms"].get<double>(),
        graphed["p90_ms"].get<double>(), graphed["images_per_second"].get<double>(),
        graphed["speedup"].get<double>(), graphed["host_median_ms"].get<double>(),
        graphed["nodes"].get<size_t>(), graphed["arena_mib"].get<double>(),
        graphed["arena_peak_mib"].get<double>());
  }
  if (!a.dump.empty())
    std::printf("  initial weights, crops and setting written to %s\n", a.dump.c_str());
#ifdef DINO_HAS_CUDA
  if (!profiles.is_null()) {
    out["profile"] = profiles;
    for (const auto& [form, p] : profiles.items()) {
      const std::string title = p["form"].get<std::string>() + " step";
      if (p.contains("error"))
        std::printf("profile (%s): not traced: %s\n", title.c_str(),
                    p["error"].get<std::string>().c_str());
      else
        bench::print_step_profile(p, title, 25);
    }
  }
#endif
  if (parallel) {
    std::sort(exposed_ms.begin(), exposed_ms.end());
    const int64_t center_bytes =
        (2 * hc.out_dim + 3 + world.size()) * 4;  // losses/dino_loss.cpp's one buffer
    out["data_parallel"] = json{{"ranks", world.size()},
                                {"world", world.describe()},
                                {"gradient_bytes_per_step", reducer->bytes_per_step()},
                                {"buckets", reducer->buckets().size()},
                                {"center_bytes_per_step", center_bytes},
                                {"exposed_allreduce_median_ms", exposed_ms[exposed_ms.size() / 2]}};
    std::printf(
        "  data-parallel, %s: images/s over all ranks; per step %.1f MB of gradients in %zu "
        "buckets + %ld B for the center, %.2f ms of all-reduce not hidden by the backward "
        "(median)\n",
        world.describe().c_str(), double(reducer->bytes_per_step()) / 1e6,
        reducer->buckets().size(), long(center_bytes), exposed_ms[exposed_ms.size() / 2]);
  }
  if (!loop.is_null()) {
    // Against the step the loop runs: the graph's with run.cuda_graph, else the eager one.
    const json& step = graphed.is_null() ? out : graphed;
    loop["fraction_of_step"] =
        loop["images_per_second"].get<double>() / step["images_per_second"].get<double>();
    out["loop"] = loop;
    std::printf(
        "loop (%s, %d loader thread(s), prefetch %d%s%s): %.1f images/s = %.0f%% of the step "
        "alone; "
        "per step "
        "%.1f ms waiting for data, %.1f ms queueing the upload, %.1f ms in the step (data wait "
        "%.0f%% of the loop)\n",
        loop["dataset"].get<std::string>().c_str(), loop["loader_threads"].get<int>(),
        loop["prefetch"].get<int>(), cuda ? ", pipelined" : "",
        graphed.is_null() ? "" : ", CUDA graph", loop["images_per_second"].get<double>(),
        100 * loop["fraction_of_step"].get<double>(), loop["data_wait_ms"].get<double>(),
        loop["upload_ms"].get<double>(), loop["step_ms"].get<double>(),
        100 * loop["data_wait_fraction"].get<double>());
  }
  return out;
}

#ifdef DINO_HAS_CUDA
struct KernelArgs {
  std::string device = "cuda", shapes = "all";
  std::vector<std::string> custom;
  int reps = 50, warmup = 5;
  double budget = 0;
  bool no_check = false, no_ceilings = false, json = false;
};
#endif

void add_kernel_bench(CLI::App& parent, const std::string& name, const std::string& help,
                      const std::string& shape_help) {
  auto* cmd = parent.add_subcommand(name, help);
#ifdef DINO_HAS_CUDA
  auto k = std::make_shared<KernelArgs>();
  cmd->add_option("--device", k->device, "Device; the kernel benchmarks run on cuda only")
      ->capture_default_str();
  // The sets are the op table's (testing/op_cases.h): vit, long (attention), quick (attention:
  // what tools/gpu-check.sh times), smoke (one small shape each, the emulated runs'), all (every
  // set but smoke and quick).
  cmd->add_option("--shapes", k->shapes,
                  "Shape set: vit, long, quick (attention), smoke, all, none (only --shape)")
      ->capture_default_str()
      ->check(CLI::IsMember({"vit", "long", "quick", "smoke", "all", "none"}));
  cmd->add_option("--shape", k->custom, shape_help);
  cmd->add_option("--reps", k->reps, "Timed repetitions per measurement (median reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", k->warmup, "Untimed repetitions first")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--budget", k->budget, "Seconds after which no new shape starts (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-check", k->no_check, "Skip the cross-check of the outputs");
  cmd->add_flag("--no-ceilings", k->no_ceilings,
                "Skip measuring the copy and GEMM ceilings (a 1 GiB copy, an 8192^3 GEMM); rows "
                "then have no floor and percent-of-ceiling columns");
  cmd->add_flag("--json", k->json,
                "Print one JSON object with all results as the last line of stdout");
  cmd->callback([k, name] {
    DINO_CHECK(k->device == "cuda", "[bench] ", name,
               " runs on the GPU only (--device cuda); "
               "`dino bench train-step` runs on the CPU too");
    DINO_CHECK(cuda_backend()->available(), "[bench] ", name, ": no usable CUDA device (",
               cuda_backend()->description(), ")");
    if (k->reps < 50)
      std::fprintf(stderr, "bench: note: --reps %d is under the 50 of docs/ARCHITECTURE.md §7\n",
                   k->reps);
    bench::Options opt;
    opt.reps = k->reps, opt.warmup = k->warmup, opt.budget_s = k->budget, opt.shapes = k->shapes;
    opt.custom = k->custom, opt.check = !k->no_check, opt.ceilings = !k->no_ceilings;
    json out = name == "attention"   ? bench::bench_attention(opt)
               : name == "layernorm" ? bench::bench_layernorm(opt)
               : name == "dino-loss" ? bench::bench_dino_loss(opt)
               : name == "augment"   ? bench::bench_augment(opt)
                                     : bench::bench_gemm(opt);
    std::fflush(stdout);
    if (k->json) std::cout << out.dump() << std::endl;
  });
#else
  std::string device = "cuda";
  cmd->add_option("--device", device, "Device (this build has no CUDA)");
  cmd->allow_extras();
  cmd->callback([name] {
    throw Error(str_cat("[bench] ", name,
                        ": this build has no CUDA support; the kernel benchmarks "
                        "need a CUDA build (`dino bench train-step` runs on the CPU)"));
  });
#endif
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto* cmd = bench->add_subcommand(
      "train-step", "Time one DINO training step on fixed random crops (no data loader)");
  cmd->add_option("--device", args->device, "Device: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--config", args->config,
                  "JSON recipe (default with --device cuda: the built-in "
                  "ViT-S/16 DINO recipe on synthetic 3-channel data)")
      ->capture_default_str();
  cmd->add_option("overrides", args->overrides, "Recipe overrides group.key=value");
  cmd->add_option("--steps", args->steps, "Timed steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", args->warmup, "Untimed steps first")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--dump", args->dump,
                  "Write init.safetensors, crops.safetensors and config.json here "
                  "(for benchmarks/cpu_train_step.py)");
  cmd->add_flag("--loop", args->loop,
                "Also run the training loop (loader, upload, step; pipelined on "
                "CUDA) and report its images/s and data wait next to the step's");
  cmd->add_flag("--profile", args->profile,
                "Also trace 3 more steps of each form timed (eager; through the CUDA graph with "
                "run.cuda_graph) with CUPTI and print where the device's time goes: per kernel "
                "and per family, and the time it sat idle (--device cuda)");
  cmd->add_flag("--json", args->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([args, cmd] {
    std::string config = args->config;
    std::vector<std::string> overrides = args->overrides;
    if (args->device == "cuda" && cmd->count("--config") == 0) {
      // The built-in defaults are ViT-S/16 DINO; the dataset fixes only the channel count here.
      config.clear();
      overrides.insert(overrides.begin(), "data.dataset=synthetic:channels=3,size=224");
    }
    const Recipe recipe = load_recipe(config, overrides);
    dist::World world(dist::world_options_from_environment());
    // Under mpirun every rank steps; rank 0 alone prints.
    if (world.rank() != 0)
      DINO_CHECK(std::freopen("/dev/null", "w", stdout), "[bench] cannot silence rank ",
                 world.rank());
    json out = run_train_step(recipe, *args, world);
    if (world.rank() != 0) return;
    out["config"] = config.empty() ? "built-in defaults" : config;
    std::fflush(stdout);
    if (args->json) std::cout << out.dump() << std::endl;
  });
  auto la = std::make_shared<LoaderArgs>();
  auto* lcmd = bench->add_subcommand(
      "loader", "Time the multi-crop data loader alone, and one thread's cost per stage");
  lcmd->add_option("--config", la->config,
                   "JSON recipe (default: the built-in ViT-S/16 DINO recipe)");
  lcmd->add_option("overrides", la->overrides,
                   "Recipe overrides group.key=value, e.g. data.dataset=folder:DIR");
  lcmd->add_option("--threads", la->threads, "Loader threads (default: data.loader_threads)")
      ->check(CLI::NonNegativeNumber);
  lcmd->add_option("--images", la->images, "Images timed (rounded up to whole batches)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  lcmd->add_option("--warmup", la->warmup, "Untimed batches first")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  lcmd->add_option("--stage-images", la->stage_images,
                   "Images for the per-stage breakdown (0: skip it)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  lcmd->add_option("--format", la->format, "Crops as normalised floats (f32) or bytes (u8)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "u8"}));
  lcmd->add_flag("--no-reduce", la->no_reduce, "Always decode JPEGs at full size");
  lcmd->add_flag("--json", la->json,
                 "Print one JSON object with the results as the last line of stdout");
  lcmd->callback([la] {
    const Recipe recipe = load_recipe(la->config, la->overrides);
    json out = run_loader(recipe, *la);
    out["config"] = la->config.empty() ? "built-in defaults" : la->config;
    std::fflush(stdout);
    if (la->json) std::cout << out.dump() << std::endl;
  });
  add_allreduce_bench(*bench);
  add_kernel_bench(*bench, "attention", "GPU attention: ours vs cuDNN SDPA vs a cuBLAS composite",
                   "Extra shape B,N,H,Dh (repeatable)");
  add_kernel_bench(*bench, "layernorm", "GPU LayerNorm: ours vs cuDNN vs a composite",
                   "Extra shape N,C (repeatable)");
  add_kernel_bench(*bench, "dino-loss", "GPU DINO loss: ours vs an unfused composite",
                   "Extra shape G,V,B,K (repeatable)");
  add_kernel_bench(
      *bench, "gemm",
      "GPU GEMMs of ViT-S/16 and the DINO head: our cuBLASLt wrapper vs plain cuBLASLt",
      "Extra shape rows,in,out (repeatable)");
  add_kernel_bench(*bench, "augment",
                   "GPU augmentation of a batch's views vs the CPU path on one thread",
                   "Extra shape B,C,H,W,global_size,local_crops,local_size (repeatable)");
}

}  // namespace dino::tools
