// `dino check`: every CUDA kernel against its CPU reference on this machine's GPU, as a table
// (kernel, shape, output, relative error, tolerance, pass), using the CUDA tests' references
// and tolerances (testing/cuda/selfcheck.h). Exits 0 when every row passes, 1 when one fails,
// and 77 (the code CTest reads as "skipped") with the reason when no GPU is usable.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/storage.h"
#include "tools/commands.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/runtime.h"
#include "testing/cuda/selfcheck.h"
#endif

namespace dino::tools {

namespace {

constexpr int kNoGpuExit = 77;

[[noreturn]] void exit_no_gpu(const std::string& why, bool json) {
  std::printf("dino check: no usable GPU: %s\n", why.c_str());
  if (json) std::cout << nlohmann::json{{"gpu", false}, {"reason", why}}.dump() << std::endl;
  std::fflush(stdout);
  std::exit(kNoGpuExit);
}

}  // namespace

void add_check_command(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("check", "Check every CUDA kernel against the CPU reference");
  cmd->add_flag("--json", *json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([json] {
#ifndef DINO_HAS_CUDA
    exit_no_gpu("this build has no CUDA backend", *json);
#else
    if (!cuda_available()) exit_no_gpu(kernels::cuda::device_description(), *json);
    const std::string device = kernels::cuda::device_description();
    std::printf("dino check on %s\n", device.c_str());
    const auto rows = kernels::cuda::selfcheck::run_all();
    std::printf("%-28s %-26s %-15s %10s %10s  %s\n", "kernel", "shape", "output", "rel error",
                "tolerance", "result");
    nlohmann::json out{{"gpu", true}, {"device", device}, {"rows", nlohmann::json::array()}};
    int failed = 0;
    double worst_ratio = 0;  // the largest error / tolerance among passing rows with tol > 0
    for (const auto& r : rows) {
      failed += !r.pass;
      if (r.pass && r.tol > 0) worst_ratio = std::max(worst_ratio, r.rel_err / r.tol);
      std::printf("%-28s %-26s %-15s %10.3g %10.3g  %s\n", r.kernel.c_str(), r.shape.c_str(),
                  r.output.c_str(), r.rel_err, r.tol, r.pass ? "pass" : "FAIL");
      if (!r.pass) std::printf("FAIL %s %s %s: %s\n", r.kernel.c_str(), r.shape.c_str(),
                               r.output.c_str(), r.worst.c_str());
      // JSON has no NaN: an unwritten or errored output's error is null.
      const nlohmann::json err = std::isfinite(r.rel_err) ? nlohmann::json(r.rel_err) : nullptr;
      out["rows"].push_back({{"kernel", r.kernel}, {"shape", r.shape}, {"output", r.output},
                             {"rel_err", err}, {"tol", r.tol}, {"non_finite", r.non_finite},
                             {"pass", r.pass}});
    }
    std::printf("summary: %zu comparisons, %d failed; largest error / tolerance of a pass %.3g\n",
                rows.size(), failed, worst_ratio);
    out["passed"] = int(rows.size()) - failed;
    out["failed"] = failed;
    if (*json) std::cout << out.dump() << std::endl;
    if (failed)
      throw Error(str_cat("[check] ", failed, " of ", rows.size(), " comparisons failed"));
#endif
  });
}

}  // namespace dino::tools
