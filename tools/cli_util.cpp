#include "tools/cli_util.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "train/config.h"

namespace dino::tools {

Checkpoint open_checkpoint(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  DINO_CHECK(fs::exists(path, ec), "[", path, "] checkpoint not found");
  DINO_CHECK(!fs::is_directory(path, ec), "[", path, "] is a directory, not a checkpoint file "
             "(`dino train` writes OUT/checkpoint.safetensors)");
  return read_checkpoint(path);
}

std::unique_ptr<VisionTransformer> load_teacher_backbone(const Checkpoint& ck) {
  Rng rng(0);  // every weight is overwritten by load_module
  auto vit = std::make_unique<VisionTransformer>(vit_config(ck.meta.config, ck.meta.in_chans), rng);
  load_module(*vit, ck, "teacher.backbone.");
  return vit;
}

ProgressFn progress_line(std::string label) {
  if (!isatty(STDERR_FILENO)) return {};
  using clock = std::chrono::steady_clock;
  auto last = std::make_shared<clock::time_point>();
  return [label = std::move(label), last](int64_t done, int64_t total) {
    const auto now = clock::now();
    if (done < total && now - *last < std::chrono::milliseconds(250)) return;
    *last = now;
    std::fprintf(stderr, "\r%s %ld/%ld (%.0f%%)%s", label.c_str(), long(done), long(total),
                 total > 0 ? 100.0 * double(done) / double(total) : 100.0, done >= total ? "\n" : "");
    std::fflush(stderr);
  };
}

}  // namespace dino::tools
