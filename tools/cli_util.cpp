#include "tools/cli_util.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>


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
  auto vit = std::make_unique<VisionTransformer>(ck.recipe.vit(ck.meta.in_chans), rng);
  load_module(*vit, ck, "teacher.backbone.");
  const std::string bad = describe_non_finite(vit->named_parameters());
  DINO_CHECK(bad.empty(), "[", ck.path, "] the teacher's ", bad,
             " is not finite: nothing can be computed from this checkpoint");
  return vit;
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
    const bool same = fs::exists(out, ec) ? fs::equivalent(out, in, ec)
                                          : fs::weakly_canonical(out, ec) == fs::weakly_canonical(in, ec);
    DINO_CHECK(!same, "[", who, "] --out ", out, " is the input ", in,
               "; writing it would destroy it: give another file name");
  }
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
