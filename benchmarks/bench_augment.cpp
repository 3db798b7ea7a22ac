// `dino bench augment`: DINO's augmentations on the GPU (kernels/cuda/augment.cu), one batch's
// views rendered from sources and drawn parameters already on the device, against the CPU
// reference path (apply_view) on one thread for the same parameters, timed in the same run.
//
// Minimum bytes (the kernel file's floor): read each source once (bytes) and write each view
// once (f32). No FLOPs are counted: the resampling and blur taps are a few GFLOP per batch,
// far below the device's rate. The GPU rows rotate among input sets (sources and parameters
// drawn afresh) so sources come from memory; the cross-check is the max abs difference of
// set 0's views from apply_view (normalised units).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "benchmarks/bench.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/multicrop.h"
#include "kernels/cuda/augment.h"
#include "kernels/cuda/check.h"
#include "testing/augment_cases.h"

namespace dino::bench {

namespace {

namespace kc = dino::kernels::cuda;

struct Shape {
  int B, C, H, W, global_size, local_crops, local_size;
  std::string label;
  std::string str() const {
    return str_cat("B=", B, " C=", C, " ", H, "x", W, " -> 2x", global_size, "+", local_crops, "x",
                   local_size);
  }
};

std::vector<Shape> shapes_for(const Options& opt) {
  std::vector<Shape> s;
  // The augmentation's benchmark sets (testing/augment_cases.h), shared with its CUDA tests.
  for (const testing::AugmentCase* c : testing::augment_bench_cases(opt.shapes)) {
    DINO_CHECK(c->uniform(), "[bench] augment: case '", c->label, "' mixes source sizes");
    s.push_back({c->batch(), c->channels, c->sources[0].first, c->sources[0].second, c->global_size,
                 c->local_crops, c->local_size, c->label});
  }
  for (const std::string& c : opt.custom) {
    Shape x{0, 0, 0, 0, 0, 0, 0, "custom"};
    char a, b, d, e, f, g;
    std::istringstream in(c);
    DINO_CHECK((in >> x.B >> a >> x.C >> b >> x.H >> d >> x.W >> e >> x.global_size >> f >>
                x.local_crops >> g >> x.local_size) &&
                   x.B > 0 && (x.C == 1 || x.C == 3) && x.H > 0 && x.W > 0 && x.global_size > 0 &&
                   x.local_crops >= 0 && x.local_size > 0,
               "[bench] augment --shape wants B,C,H,W,global_size,local_crops,local_size, got '", c,
               "'");
    s.push_back(x);
  }
  DINO_CHECK(!s.empty(), "[bench] augment: no shapes for --shapes '", opt.shapes,
             "' (smoke, vit, all)");
  return s;
}

// A copy on the benchmark stream, waited for (set-up and read-back only).
void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

data::MultiCropConfig crop_config(const Shape& sh) {
  data::MultiCropConfig cfg;
  cfg.global = {2, sh.global_size, 0.4f, 1.f};
  cfg.local = {sh.local_crops, sh.local_size, 0.05f, 0.4f};
  return cfg;
}

// One input set: the batch's sources and drawn parameters, on the host and the device.
struct Set {
  std::vector<uint8_t> bytes;
  std::vector<data::ViewParams> params;
  int max_global_box = 1, max_local_box = 1;
  DeviceBuffer src, where, dparams;
};

void run_shape(const Shape& sh, const Options& opt, const Ceilings& c, Report& report) {
  const data::MultiCropConfig cfg = crop_config(sh);
  const int V = data::view_count(cfg), B = sh.B, C = sh.C;
  const size_t source_bytes = size_t(C) * sh.H * sh.W;
  const int nsets = rotation_sets(size_t(B) * source_bytes, c.l2_bytes);
  const cudaStream_t s = stream();
  Rng rng(77);
  std::vector<Set> sets(static_cast<size_t>(nsets));
  std::vector<data::AugmentSource> where(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b)
    where[size_t(b)] = {int64_t(b) * int64_t(source_bytes), sh.H, sh.W, 0};
  for (Set& x : sets) {
    x.bytes.resize(size_t(B) * source_bytes);
    for (uint8_t& v : x.bytes) v = uint8_t(rng.below(256));
    for (int b = 0; b < B; ++b) {
      const std::vector<data::ViewParams> p = data::draw_views(sh.H, sh.W, cfg, rng);
      for (int v = 0; v < V; ++v) {
        int& bound = v < cfg.global.count ? x.max_global_box : x.max_local_box;
        bound = std::max(bound, p[size_t(v)].box.height);
      }
      x.params.insert(x.params.end(), p.begin(), p.end());
    }
    x.src = DeviceBuffer(x.bytes.size());
    x.where = DeviceBuffer(where.size() * sizeof(data::AugmentSource));
    x.dparams = DeviceBuffer(x.params.size() * sizeof(data::ViewParams));
    copy(x.src.as(), x.bytes.data(), x.bytes.size(), cudaMemcpyHostToDevice);
    copy(x.where.as(), where.data(), x.where.bytes(), cudaMemcpyHostToDevice);
    copy(x.dparams.as(), x.params.data(), x.dparams.bytes(), cudaMemcpyHostToDevice);
  }
  const data::Normalization norm = data::default_normalization(C);
  const size_t global_values = size_t(cfg.global.count) * B * C * sh.global_size * sh.global_size;
  const size_t local_values = size_t(cfg.local.count) * B * C * sh.local_size * sh.local_size;
  DeviceBuffer out_global(global_values * sizeof(float)),
      out_local(std::max<size_t>(local_values, 1) * sizeof(float));
  auto render = [&](int i) {
    const Set& x = sets[size_t(i % nsets)];
    const auto* w = x.where.as<const data::AugmentSource>();
    const auto* p = x.dparams.as<const data::ViewParams>();
    kc::augment_views(out_global.as<float>(), x.src.as<const uint8_t>(), w, p, B, V, 0,
                      cfg.global.count, C, sh.global_size, x.max_global_box, norm.mean.data(),
                      norm.std.data(), s);
    kc::augment_views(out_local.as<float>(), x.src.as<const uint8_t>(), w, p, B, V,
                      cfg.global.count, cfg.local.count, C, sh.local_size, x.max_local_box,
                      norm.mean.data(), norm.std.data(), s);
  };
  const Work work{0, double(B) * double(source_bytes) + 4.0 * double(global_values + local_values)};

  // Cross-check set 0 against apply_view, and time apply_view on one thread for a few samples.
  json check;
  double cpu_ms_per_sample = 0;
  {
    render(0);
    std::vector<float> g(global_values), l(local_values);
    copy(g.data(), out_global.as(), g.size() * sizeof(float), cudaMemcpyDeviceToHost);
    if (local_values)
      copy(l.data(), out_local.as(), l.size() * sizeof(float), cudaMemcpyDeviceToHost);
    const Set& x = sets[0];
    const int samples = std::min(B, opt.check ? 4 : 1);
    double max_diff = 0;
    data::ViewScratch scratch;
    std::vector<float> view;
    std::vector<double> ms;
    for (int b = 0; b < samples; ++b) {
      const data::Image img =
          data::image_from_u8(x.bytes.data() + size_t(b) * source_bytes, C, sh.H, sh.W);
      const auto t0 = std::chrono::steady_clock::now();
      for (int v = 0; v < V; ++v) {
        const data::ViewParams& p = x.params[size_t(b) * V + v];
        view.resize(size_t(C) * p.size * p.size);
        data::apply_view(img, p, norm, scratch, view.data());
        const bool global = v < cfg.global.count;
        const int k = global ? v : v - cfg.global.count;
        const float* gpu = (global ? g.data() : l.data()) + (size_t(k) * B + b) * view.size();
        for (size_t i = 0; i < view.size(); ++i)
          max_diff = std::max(
              max_diff, std::isfinite(gpu[i]) ? std::fabs(double(gpu[i]) - view[i]) : INFINITY);
      }
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    cpu_ms_per_sample = ms[ms.size() / 2];
    check = json{{"max_abs_diff_cpu", max_diff}, {"checked_samples", samples}};
  }

  try {
    const Timing t = time_reps(opt.warmup, opt.reps, render);
    json row = measurement("augment", sh.str(), "forward", "ours", t, work, c);
    row["label"] = sh.label;
    row["input_sets"] = nsets;
    row.update(check);
    report.add(row);
  } catch (const std::exception& e) {
    report.add(error_row("augment", sh.str(), "forward", "ours", e.what()));
  }
  // The CPU path on one thread, per batch: the median sample's time x B (host clock).
  Timing cpu;
  cpu.median_ms = cpu.p10_ms = cpu.p90_ms = cpu.min_ms = cpu_ms_per_sample * B;
  cpu.reps = 1;
  json row = measurement("augment", sh.str(), "forward", "cpu-1-thread", cpu, work, c);
  row["label"] = sh.label;
  row["note"] = "apply_view on one host thread, median of the checked samples x batch";
  report.add(row);
  CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

json bench_augment(const Options& opt) {
  const std::vector<Shape> shapes = shapes_for(opt);
  const Ceilings c = measure_ceilings(opt);
  std::cout << c.to_json().dump() << std::endl;
  std::printf("augment: %s\n", c.describe().c_str());
  Report report("augment");
  for (const Shape& sh : shapes) {
    if (opt.budget_s > 0 && seconds_since_start() > opt.budget_s) {
      report.add(error_row("augment", sh.str(), "forward", "all", "skipped: past --budget"));
      continue;
    }
    try {
      run_shape(sh, opt, c, report);
    } catch (const std::exception& e) {
      report.add(error_row("augment", sh.str(), "forward", "all", e.what()));
    }
  }
  report.add_ratios();
  report.print_table();
  return json{{"bench", "augment"}, {"ceilings", c.to_json()}, {"results", report.rows()}};
}

}  // namespace dino::bench
