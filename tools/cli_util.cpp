#include "tools/cli_util.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "train/trainer.h"

namespace dino::tools {

std::string format_hms(double seconds) {
  const int64_t s = int64_t(seconds < 0 ? 0 : seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", long(s / 3600), long(s / 60 % 60),
                long(s % 60));
  return buf;
}

void check_output_file(const std::string& who, const std::string& out,
                       const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  DINO_CHECK(!out.empty() && out.back() != '/' && !fs::is_directory(out, ec), "[", who, "] --out ",
             out, " is a folder; give a file name");
  fs::path parent = fs::path(out).parent_path();
  if (parent.empty()) parent = ".";
  DINO_CHECK(fs::is_directory(parent, ec), "[", who, "] --out ", out, ": its folder ",
             parent.string(), " does not exist");
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    const bool same = fs::exists(out, ec)
                          ? fs::equivalent(out, in, ec)
                          : fs::weakly_canonical(out, ec) == fs::weakly_canonical(in, ec);
    DINO_CHECK(!same, "[", who, "] --out ", out, " is the input ", in,
               "; writing it would destroy it: give another file name");
  }
}

ProgressFn progress_line(std::string label) {
  using clock = std::chrono::steady_clock;
  struct State {
    clock::time_point start = clock::now(), last;
    int quarter = 0;  // quarters already logged
  };
  auto state = std::make_shared<State>();
  const bool tty = isatty(STDERR_FILENO);
  return [label = std::move(label), state, tty](int64_t done, int64_t total) {
    const auto now = clock::now();
    const double frac = total > 0 ? double(done) / double(total) : 1.0;
    if (tty) {
      if (done < total && now - state->last < std::chrono::milliseconds(250)) return;
    } else {
      const int quarter = int(frac * 4);
      if (quarter <= state->quarter) return;
      state->quarter = quarter;
    }
    state->last = now;
    const double elapsed = std::chrono::duration<double>(now - state->start).count();
    const std::string eta =
        done > 0 && done < total
            ? " ETA " + format_hms(elapsed / double(done) * double(total - done))
            : "";
    std::fprintf(stderr, "%s%s %ld/%ld (%.0f%%)%s%s", tty ? "\r" : "", label.c_str(), long(done),
                 long(total), 100.0 * frac, eta.c_str(),
                 done >= total ? " done in " : (tty ? "   " : "\n"));
    if (done >= total) std::fprintf(stderr, "%s\n", format_hms(elapsed).c_str());
    std::fflush(stderr);
  };
}

std::unique_ptr<VisionTransformer> random_init_like(const Backbone& trained) {
  const Device device = trained.model->cls_token.device();
  std::unique_ptr<VisionTransformer> control;
  if (trained.from_training_checkpoint) {
    auto student = build_student(trained.recipe, trained.model->config().in_chans);
    VitConfig vc = student->backbone.config();
    vc.drop_path_rate = 0;
    Rng unused(0);
    control = std::make_unique<VisionTransformer>(vc, unused);
    auto src = student->backbone.named_parameters();
    auto dst = control->named_parameters();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_from(src[i].second);
  } else {
    Rng rng(0);
    control = std::make_unique<VisionTransformer>(trained.model->config(), rng);
  }
  control->train(false);
  control->to(device);
  return control;
}

}  // namespace dino::tools
