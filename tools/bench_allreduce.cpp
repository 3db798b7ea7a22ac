// `dino bench allreduce [--device cpu|cuda]`: times the mean all-reduce of each gradient bucket
// the trainer's reducer makes for a recipe (default: ViT-S/16 + the DINO head, K = 65,536,
// 44M parameters, 25 MB buckets), the DINO center's all-reduce, and all buckets back to back
// as one step sends them. Run alone it is a world of one (the collective's fixed cost); under
// `mpirun -np N` it measures the transport. Bandwidth as nccl-tests reports it: algbw = bytes /
// time, busbw = algbw x 2 (n - 1) / n, the per-link rate a ring all-reduce needs (0 with one
// rank), so figures compare across rank counts and against the link's rate.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "tools/bench_dist.h"
#include "train/config.h"
#include "train/step.h"
#include "train/trainer.h"

namespace dino::tools {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct AllreduceArgs {
  std::string device = "cpu", config;
  std::vector<std::string> overrides;
  int reps = 20, iters = 5, warmup = 3;
  double bucket_mb = 25, timeout_s = 60;
  bool json = false;
};

void sync_device(Device d) { backend(d, "bench").synchronize(); }

// Median seconds per all-reduce of `tensors` (each reduced in turn, `iters` rounds back to back
// per measurement, a barrier before each measurement so the ranks start together).
double time_reductions(dist::Communicator& comm, dist::Communicator& host,
                       const std::vector<Tensor>& tensors, const AllreduceArgs& a) {
  auto round = [&] {
    std::vector<std::unique_ptr<dist::Pending>> p;
    for (const Tensor& t : tensors) p.push_back(comm.start_all_reduce(t, dist::ReduceOp::mean));
    for (auto& x : p) x->wait();
  };
  for (int i = 0; i < a.warmup; ++i) round();
  sync_device(comm.device());
  std::vector<double> s;
  for (int r = 0; r < a.reps; ++r) {
    host.barrier();
    const auto t0 = Clock::now();
    for (int i = 0; i < a.iters; ++i) round();
    sync_device(comm.device());
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / a.iters);
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

json row(const std::string& what, int64_t bytes, double seconds, int ranks) {
  const double algbw = double(bytes) / seconds / 1e9;
  const double busbw = algbw * 2.0 * double(ranks - 1) / double(ranks);
  return json{{"what", what},
              {"bytes", bytes},
              {"time_us", seconds * 1e6},
              {"algbw_gbs", algbw},
              {"busbw_gbs", busbw}};
}

json run(const AllreduceArgs& a) {
  dist::WorldOptions wo;
  wo.collectives = "always";
  wo.timeout_s = a.timeout_s;
  dist::World world(wo);
  const Device device = resolve_device(a.device, "bench");
  world.bind(device);
  dist::Communicator* comm = world.comm(device);
  // Barriers go through MPI when it runs (NCCL alone in a world of one: through NCCL).
  dist::Communicator* host = world.host() ? world.host() : comm;
  const bool root = world.rank() == 0;

  std::vector<std::string> overrides = a.overrides;
  overrides.insert(overrides.begin(), "data.dataset=synthetic:channels=3,size=224");
  const Recipe recipe = load_recipe(a.config, overrides);
  auto student = build_student(recipe, 3);
  if (device != Device::cpu) student->to(device);
  const auto params = trainable_parameters(*student);
  dist::GradReducer reducer(*comm, params, int64_t(a.bucket_mb * double(1 << 20)));
  const int64_t K = recipe.head.out_dim;

  json rows = json::array();
  std::vector<Tensor> all;
  const auto& buckets = reducer.buckets();
  for (size_t b = 0; b < buckets.size(); ++b) {
    const auto& bk = buckets[b];
    all.push_back(bk.flat);
    const double s = time_reductions(*comm, *host, {bk.flat}, a);
    rows.push_back(row(str_cat("bucket ", b, " (", bk.params.size(), " tensors, from ",
                               params[bk.params.front()].first, ")"),
                       bk.bytes, s, comm->size()));
  }
  // The loss's one all-reduce per step (losses/dino_loss.cpp): the teacher's and q's column
  // sums, 3 statistics and one slot per rank.
  Tensor center = Tensor::zeros({2 * K + 3 + comm->size()}, DType::f32, device);
  rows.push_back(row(str_cat("DINO center and statistics (2 K + 3 + ranks, K = ", K, ")"),
                     int64_t(center.nbytes()), time_reductions(*comm, *host, {center}, a),
                     comm->size()));
  const double step_s = time_reductions(*comm, *host, all, a);
  rows.push_back(
      row("all buckets of one step, back to back", reducer.bytes_per_step(), step_s, comm->size()));

  json out{{"bench", "allreduce"},
           {"rank", world.rank()},
           {"device", device_name(device)},
           {"backend", comm->backend()},
           {"ranks", comm->size()},
           {"world", world.describe()},
           {"parameters", student->num_parameters()},
           {"bucket_mb", a.bucket_mb},
           {"reps", a.reps},
           {"iters", a.iters},
           {"rows", rows},
           {"bandwidth", "nccl-tests: algbw = bytes / time; busbw = algbw * 2 (n - 1) / n"}};
  if (root) {
    std::printf(
        "allreduce (%s, %s, %s): %ld parameters in %zu buckets of <= %.0f MB; median of %d x %d\n",
        device_name(device), comm->backend(), world.describe().c_str(),
        long(student->num_parameters()), buckets.size(), a.bucket_mb, a.reps, a.iters);
    std::printf("  %-64s %12s %11s %10s %10s\n", "what", "bytes", "time us", "algbw GB/s",
                "busbw GB/s");
    for (const json& r : rows)
      std::printf("  %-64s %12ld %11.1f %10.2f %10.2f\n", r["what"].get<std::string>().c_str(),
                  long(r["bytes"].get<int64_t>()), r["time_us"].get<double>(),
                  r["algbw_gbs"].get<double>(), r["busbw_gbs"].get<double>());
  }
  return out;
}

}  // namespace

void add_allreduce_bench(CLI::App& bench) {
  auto a = std::make_shared<AllreduceArgs>();
  auto* cmd = bench.add_subcommand(
      "allreduce",
      "Time the gradient all-reduce at the trainer's bucket sizes (run under mpirun "
      "-np N for N ranks)");
  cmd->add_option("--device", a->device, "cpu (MPI) or cuda (NCCL)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--config", a->config,
                  "JSON recipe whose student is bucketed (default: the "
                  "built-in ViT-S/16 + DINO head)");
  cmd->add_option("overrides", a->overrides, "Recipe overrides group.key=value");
  cmd->add_option("--bucket-mb", a->bucket_mb, "Bucket size cap in MiB")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--reps", a->reps, "Measurements (median reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--iters", a->iters, "All-reduces back to back per measurement")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", a->warmup, "Untimed rounds first")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--comm-timeout", a->timeout_s,
                  "Seconds a collective may wait before the job is aborted")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([a] {
    const json out = run(*a);
    std::fflush(stdout);
    if (a->json && out["rank"] == 0) std::cout << out.dump() << std::endl;
  });
}

}  // namespace dino::tools
