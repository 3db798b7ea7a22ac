#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/schedule.h"
#include "core/storage.h"
#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/knn.h"
#include "train/step.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#endif

namespace dino {

using nlohmann::json;
namespace fs = std::filesystem;

nlohmann::json TrainResult::to_json() const {
  json j{{"steps", steps}, {"epochs", epochs}, {"seconds", seconds},
         {"images_per_second", images_per_second}, {"first_loss", first_loss},
         {"last_loss", last_loss}, {"teacher_entropy", teacher_entropy},
         {"batch_entropy", batch_entropy}, {"kl", kl}, {"checkpoint", checkpoint},
         {"device", device},
         {"collapse_warning", collapse_warning ? json(*collapse_warning) : json(nullptr)}};
  if (!knn.empty()) j["knn"] = knn;
  return j;
}

std::unique_ptr<DinoModel> build_student(const json& cfg, int64_t in_chans) {
  const VitConfig vc = vit_config(cfg, in_chans);
  Rng rng(cfg.at("run").at("seed").get<uint64_t>());
  return std::make_unique<DinoModel>(vc, head_config(cfg, vc.embed_dim), rng);
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

// Keys a resumed run may change: how long it runs and what it reports, not what it computes.
bool resumable_difference(const std::string& key) {
  return key == "max_steps" || key == "log_every" || key == "checkpoint_every" ||
         key.rfind("knn", 0) == 0 || key == "eval_batch" || key == "loader_threads";
}

void check_same_recipe(const json& saved, const json& now, const std::string& path,
                       const std::string& where = "") {
  for (auto it = saved.begin(); it != saved.end(); ++it) {
    const std::string key = where.empty() ? it.key() : where + "." + it.key();
    if (it->is_object()) {
      check_same_recipe(*it, now.at(it.key()), path, key);
      continue;
    }
    DINO_CHECK(resumable_difference(it.key()) || *it == now.at(it.key()), "[train] --resume: ",
               path, " was trained with ", key, " = ", it->dump(), ", this recipe says ",
               now.at(it.key()).dump());
  }
}

// The batch's views as (B, C, S, S) f32 tensors on `device`, copied straight from the loader's
// buffers (on CUDA one upload per view, with no host tensor in between).
std::vector<Tensor> batch_tensors(const data::MultiCropBatch& b, Device device) {
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

json knn_json(const KnnResult& r) {
  return json{{"top1", r.top1}, {"top5", r.top5}};
}

json knn_report_json(const KnnReport& r) {
  return json{{"trained", knn_json(r.trained)},
              {"random_init", knn_json(r.random_init)},
              {"raw_pixels", knn_json(r.raw_pixels)},
              {"k", r.trained.k},
              {"temperature", r.trained.temperature},
              {"n_train", r.trained.n_train},
              {"n_test", r.trained.n_test}};
}

std::string format_duration(double seconds) {
  const int64_t s = int64_t(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", long(s / 60), long(s % 60));
  return buf;
}

}  // namespace

TrainResult train(const json& cfg_in, const TrainOptions& opt) {
  const Device device = resolve_device(opt.device, "train");
  json cfg = cfg_in;
  // The attention kernels on the GPU: ours, or cuDNN's SDPA as the in-binary baseline.
  const std::string attention = cfg.at("model").at("attention").get<std::string>();
  DINO_CHECK(attention == "ours" || attention == "cudnn", "[config] model.attention must be "
             "'ours' or 'cudnn', got '", attention, "'");
  DINO_CHECK(attention == "ours" || device == Device::cuda, "[config] model.attention=cudnn "
             "needs the GPU (--device cuda): cuDNN has no CPU kernels");
#ifdef DINO_HAS_CUDA
  if (device == Device::cuda) kernels::cuda::set_attention_backend(attention.c_str());
#endif
  const std::string spec = cfg.at("data").at("dataset").get<std::string>();
  auto dataset = data::open_dataset(spec, data::Split::train);
  const int64_t in_chans = dataset->channels();
  const json& optim = cfg.at("optim");
  const json& run = cfg.at("run");
  const uint64_t seed = run.at("seed").get<uint64_t>();
  const int batch = optim.at("batch_size").get<int>();
  DINO_CHECK(batch >= 1 && size_t(batch) <= dataset->size(), "[train] batch_size ", batch,
             " does not fit the ", dataset->size(), " training images");

  data::MultiCropLoader loader(*dataset, multicrop_config(cfg, int(in_chans)), batch, seed,
                               std::max(1, cfg.at("data").at("loader_threads").get<int>()));
  const int64_t ipe = loader.batches_per_epoch();
  const double epochs = optim.at("epochs").get<double>();
  int64_t total = std::llround(epochs * double(ipe));
  const int64_t max_steps = run.at("max_steps").get<int64_t>();
  if (max_steps > 0) total = std::min(total, max_steps);

  // Built on the CPU from the seed, so a run starts from the same weights on either device,
  // then moved; the optimizer is made after the move (its moments live with the parameters).
  auto student = build_student(cfg, in_chans);
  auto teacher_ptr = build_teacher(*student);
  DinoModel& teacher = *teacher_ptr;
  DinoLoss loss(loss_config(cfg), ipe);
  if (device != Device::cpu) {
    student->to(device);
    teacher.to(device);
    loss.to(device);
  }
  AdamW optimizer = make_optimizer(*student);
  Rng drop_rng = drop_path_rng(seed);
  int64_t step = 0;

  fs::create_directories(opt.out_dir);
  const std::string ck_path = (fs::path(opt.out_dir) / "checkpoint.safetensors").string();
  if (opt.resume) {
    Checkpoint ck = read_checkpoint(ck_path);
    check_same_recipe(ck.meta.config, cfg, ck_path);
    load_module(*student, ck, "student.");
    load_module(teacher, ck, "teacher.");
    load_module(loss, ck, "loss.");
    load_optimizer(optimizer, ck);
    step = ck.meta.step;
    drop_rng.set_state(ck.meta.drop_rng);
  }

  const double lr_base = optim.at("lr").get<double>() * double(batch) / 256.0;  // linear scaling
  const CosineSchedule lr{lr_base, optim.at("min_lr").get<double>(), 0.0,
                          optim.at("warmup_epochs").get<double>(), epochs, ipe};
  const CosineSchedule wd{optim.at("weight_decay").get<double>(),
                          optim.at("weight_decay_end").get<double>(), 0.0, 0.0, epochs, ipe};
  const CosineSchedule momentum{optim.at("momentum_teacher").get<double>(), 1.0, 0.0, 0.0, epochs, ipe};
  const double freeze_iters = optim.at("freeze_last_layer").get<double>() * double(ipe);
  const double clip = optim.at("clip_grad").get<double>();
  const int64_t log_every = std::max<int64_t>(1, run.at("log_every").get<int64_t>());
  const int64_t ck_every = run.at("checkpoint_every").get<int64_t>();

  CheckpointMeta meta;
  meta.config = cfg;
  meta.in_chans = in_chans;
  auto save = [&](int64_t steps_done) {
    meta.step = steps_done;
    meta.drop_rng = drop_rng.state();
    save_checkpoint(ck_path, meta, *student, teacher, loss, optimizer);
  };

  std::ofstream metrics((fs::path(opt.out_dir) / "metrics.jsonl").string(),
                        opt.resume ? std::ios::app : std::ios::trunc);
  DINO_CHECK(metrics, "[train] cannot write metrics in ", opt.out_dir);
  if (!opt.quiet)
    std::cout << "train: " << dataset->describe() << "; " << ipe << " steps/epoch, " << total
              << " steps (" << epochs << " epochs" << (max_steps > 0 ? ", capped by run.max_steps" : "")
              << "), batch " << batch << ", student " << student->num_parameters()
              << " parameters, device " << describe_device(device) << std::endl;

  CollapseMonitor monitor(loss.config().out_dim);
  TrainResult result;
  result.device = device_name(device);
  std::vector<double> losses;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t start_step = step;
  for (; step < total; ++step) {
    const int64_t epoch = step / ipe, in_epoch = step % ipe;
    if (step == start_step || in_epoch == 0) loader.start(epoch, in_epoch);
    const data::MultiCropLoader::Lease b = loader.next();
    StepSettings s;
    s.lr = lr.at(step);
    s.weight_decay = wd.at(step);
    s.teacher_momentum = momentum.at(step);
    s.teacher_temp = loss.teacher_temp_at(step);
    s.clip_grad = clip;
    s.freeze_last_layer = double(step) < freeze_iters;
    StepOutputs out = dino_step(*student, teacher, loss, optimizer, batch_tensors(*b, device), s,
                                &drop_rng);
    const DinoLossStats& st = out.stats;
    result.collapse_warning = monitor.update(st);
    metrics << json{{"step", step + 1}, {"epoch", double(step + 1) / double(ipe)},
                    {"loss", st.loss}, {"lr", s.lr}, {"weight_decay", s.weight_decay},
                    {"teacher_temp", s.teacher_temp}, {"teacher_momentum", s.teacher_momentum},
                    {"teacher_entropy", st.teacher_entropy}, {"batch_entropy", st.batch_entropy},
                    {"kl", st.kl}}
                   .dump()
            << "\n";
    losses.push_back(st.loss);
    result.teacher_entropy = st.teacher_entropy;
    result.batch_entropy = st.batch_entropy;
    result.kl = st.kl;
    const bool last = step + 1 == total;
    if ((step + 1 - start_step) % log_every == 0 || last) {
      const size_t n = std::min<size_t>(losses.size(), size_t(log_every));
      double mean_loss = 0;
      for (size_t i = losses.size() - n; i < losses.size(); ++i) mean_loss += losses[i] / double(n);
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double ips = double((step + 1 - start_step) * batch) / elapsed;
      const double eta = elapsed / double(step + 1 - start_step) * double(total - step - 1);
      if (!opt.quiet) {
        char line[320];
        std::snprintf(line, sizeof line,
                      "epoch %.2f step %ld/%ld  loss %.4f  lr %.2e  tau_t %.3f  m %.4f  H(t) %.3f  "
                      "KL %.3f  %.1f img/s  ETA %s",
                      double(step + 1) / double(ipe), long(step + 1), long(total), mean_loss, s.lr,
                      s.teacher_temp, s.teacher_momentum, st.teacher_entropy, st.kl, ips,
                      format_duration(eta).c_str());
        std::cout << line << std::endl;
        if (result.collapse_warning) std::cout << "warning: " << *result.collapse_warning << std::endl;
      }
    }
    if (ck_every > 0 && (step + 1) % ck_every == 0 && !last) save(step + 1);
  }
  // Loss at the start and the end of this invocation: means over a tenth of its steps.
  const size_t w = std::max<size_t>(1, std::min<size_t>(50, losses.size() / 10));
  for (size_t i = 0; i < w && i < losses.size(); ++i) {
    result.first_loss += losses[i] / double(w);
    result.last_loss += losses[losses.size() - 1 - i] / double(w);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.steps = step;
  result.epochs = double(step) / double(ipe);
  result.images_per_second = result.seconds > 0 ? double((step - start_step) * batch) / result.seconds : 0;
  save(step);
  result.checkpoint = ck_path;

  if (run.at("knn").get<bool>() && dataset->num_classes() > 0) {
    const auto t_knn = std::chrono::steady_clock::now();
    KnnReport report = knn_report(teacher.backbone, cfg, in_chans, spec, run.at("knn_k").get<int64_t>(),
                                  run.at("knn_temperature").get<double>(),
                                  run.at("eval_batch").get<int64_t>(), {});
    result.knn = knn_report_json(report);
    result.knn["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_knn).count();
    std::ofstream((fs::path(opt.out_dir) / "knn.json").string()) << result.knn.dump(2) << "\n";
  }
  return result;
}

}  // namespace dino
