// `dino check`: the op table (testing/op_cases.h) on this machine's GPU against the CPU in
// float64, forward and backward, as a table (case, result, relative error, tolerance, pass, and
// the rule that set the tolerance: bf16 rounding, a composite reference such as attention's plain
// bf16 one, a bit-identical rerun), then the optimizer kernels' comparisons
// (testing/cuda/selfcheck.h), which are not ops.
// The cases and tolerances are the CUDA tests' own. Exits 0 when every comparison passes, 1
// when one fails, and 77 (the code CTest reads as "skipped") with the reason when no GPU is
// usable.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/error.h"
#include "core/storage.h"
#include "testing/op_cases.h"
#include "tools/commands.h"
#ifdef DINO_HAS_CUDA
#include "testing/cuda/op_check.h"
#include "testing/cuda/selfcheck.h"
#endif

namespace dino::tools {

namespace {

constexpr int kNoGpuExit = 77;
// Not an op of the table: the optimizer kernels' own comparisons (AdamW, EMA, norms, clipping).
constexpr const char* kOptimizer = "optimizer";

[[noreturn]] void exit_no_gpu(const std::string& why, bool json) {
  std::printf("dino check: no usable GPU: %s\n", why.c_str());
  if (json) std::cout << nlohmann::json{{"gpu", false}, {"reason", why}}.dump() << std::endl;
  std::fflush(stdout);
  std::exit(kNoGpuExit);
}

struct CheckArgs {
  std::vector<std::string> ops;  // empty: all
  std::string bench;             // also a benchmark set's cases
  bool list = false, json = false;
};

bool wants(const CheckArgs& a, const std::string& op) {
  return a.ops.empty() || std::find(a.ops.begin(), a.ops.end(), op) != a.ops.end();
}

std::vector<const testing::OpCase*> selected_cases(const CheckArgs& a) {
  std::vector<const testing::OpCase*> out;
  for (const testing::OpCase& c : testing::op_cases())
    if (wants(a, c.op) && (c.check || (!a.bench.empty() && c.in_set(a.bench)))) out.push_back(&c);
  return out;
}

void validate(const CheckArgs& a) {
  const std::vector<std::string> known = testing::op_names();
  for (const std::string& op : a.ops)
    DINO_CHECK(op == kOptimizer || std::find(known.begin(), known.end(), op) != known.end(),
               "[check] --op '", op, "' is not in the op table (`dino check --list` names them)");
}

// The selected cases, one a line; with --json also one object with each case's op, name,
// benchmark set, sizes and label (what benchmarks/compare_torch.py reads).
void print_list(const CheckArgs& a) {
  nlohmann::json cases = nlohmann::json::array();
  for (const testing::OpCase* c : selected_cases(a)) {
    std::printf("%-20s %s%s\n", c->op.c_str(), c->name.c_str(),
                c->check ? "" : "  (benchmark shape)");
    cases.push_back({{"op", c->op},
                     {"name", c->name},
                     {"check", c->check},
                     {"bench", c->bench},
                     {"dims", c->dims},
                     {"label", c->label}});
  }
  if (wants(a, kOptimizer))
    std::printf("%-20s adamw_step, ema_update, grad_norms, scale_by_norms (kernel comparisons)\n",
                kOptimizer);
  std::printf("%zu op cases\n", cases.size());
  if (a.json) std::cout << nlohmann::json{{"cases", cases}}.dump() << std::endl;
}

#ifdef DINO_HAS_CUDA
struct Tally {
  int comparisons = 0, failed = 0;
  double worst_ratio = 0;  // the largest error / tolerance among passing comparisons, tol > 0
  nlohmann::json rows = nlohmann::json::array();
  void add(const std::string& what, const std::string& output, double err, double tol,
           size_t non_finite, bool pass, const std::string& worst, const std::string& rule = "") {
    ++comparisons;
    failed += !pass;
    if (pass && tol > 0) worst_ratio = std::max(worst_ratio, err / tol);
    std::printf("%-64s %-12s %10.3g %10.3g  %-4s  %s\n", what.c_str(), output.c_str(), err, tol,
                pass ? "pass" : "FAIL", rule.c_str());
    if (!pass) std::printf("FAIL %s %s: %s\n", what.c_str(), output.c_str(), worst.c_str());
    // JSON has no NaN: an unwritten or errored output's error is null.
    const nlohmann::json e = std::isfinite(err) ? nlohmann::json(err) : nullptr;
    rows.push_back({{"case", what},
                    {"output", output},
                    {"rel_err", e},
                    {"tol", tol},
                    {"non_finite", non_finite},
                    {"pass", pass},
                    {"rule", rule}});
  }
};

void run_checks(const CheckArgs& a) {
  const std::string device = cuda_backend()->description();
  if (!cuda_available()) exit_no_gpu(device, a.json);
  std::printf("dino check on %s\n", device.c_str());
  std::printf("%-64s %-12s %10s %10s  %-4s  %s\n", "case", "output", "rel error", "tolerance",
              "result", "rule");
  Tally t;
  for (const testing::OpCase* c : selected_cases(a)) {
    const testing::CaseCheck r = testing::check_case(*c);
    for (const testing::Result& x : r.results)
      t.add(c->name, x.what, x.rel_err, x.tol, x.non_finite, x.pass, x.worst, x.rule);
    // A thrown error, a wrong output dtype or a missing gradient: one failing row saying so.
    if (!r.error.empty() || r.results.empty())
      t.add(c->name, "(error)", NAN, 0, 0, false, r.error.empty() ? "nothing compared" : r.error);
  }
  if (wants(a, kOptimizer))
    for (const auto& r : kernels::cuda::selfcheck::run_optimizer_checks())
      t.add(r.kernel + " " + r.shape, r.output, r.rel_err, r.tol, r.non_finite, r.pass, r.worst);
  std::printf("summary: %d comparisons, %d failed; largest error / tolerance of a pass %.3g\n",
              t.comparisons, t.failed, t.worst_ratio);
  if (a.json)
    std::cout << nlohmann::json{{"gpu", true},
                                {"device", device},
                                {"rows", t.rows},
                                {"passed", t.comparisons - t.failed},
                                {"failed", t.failed}}
                     .dump()
              << std::endl;
  if (t.failed)
    throw Error(str_cat("[check] ", t.failed, " of ", t.comparisons, " comparisons failed"));
}
#endif

}  // namespace

void add_check_command(CLI::App& app) {
  auto a = std::make_shared<CheckArgs>();
  auto* cmd = app.add_subcommand(
      "check", "Check every op of the op table on the GPU against the CPU reference");
  cmd->add_option(
      "--op", a->ops,
      "Only this op's cases (repeatable; --list names them; 'optimizer': the optimizer kernels)");
  cmd->add_option("--bench", a->bench,
                  "Also the benchmark shapes of this set (large: slow float64 references)")
      ->check(CLI::IsMember({"vit", "long", "quick", "all"}));
  cmd->add_flag("--list", a->list, "List the cases and exit (no GPU needed)");
  cmd->add_flag("--json", a->json,
                "Print one JSON object with the results as the last line of stdout");
  cmd->callback([a] {
    validate(*a);
    if (a->list) return print_list(*a);
#ifndef DINO_HAS_CUDA
    exit_no_gpu("this build has no CUDA backend", a->json);
#else
    run_checks(*a);
#endif
  });
}

}  // namespace dino::tools
