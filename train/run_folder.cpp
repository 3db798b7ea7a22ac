#include "train/run_folder.h"

#include <filesystem>

#include "core/error.h"

namespace dino {

namespace fs = std::filesystem;

RunFolder run_folder_paths(const std::string& dir) {
  const fs::path d(dir);
  return {dir, (d / "checkpoint.safetensors").string(), (d / "metrics.jsonl").string(),
          (d / "knn.json").string()};
}

RunFolder check_run_folder(const std::string& dir, bool resume, bool force) {
  DINO_CHECK(!dir.empty(), "[train] --out is empty; give the run's folder");
  DINO_CHECK(!(resume && force), "[train] --resume continues the run in ", dir,
             ", --force starts it over: give one of them");
  const RunFolder f = run_folder_paths(dir);
  const fs::path d(dir);
  std::error_code ec;
  const fs::file_status st = fs::status(d, ec);
  DINO_CHECK(!fs::exists(st) || fs::is_directory(st), "[train] --out ", dir,
             " is a file, not a folder");
  const bool has_checkpoint = fs::exists(f.checkpoint, ec);
  const bool has_metrics = fs::exists(f.metrics, ec) && fs::file_size(f.metrics, ec) > 0 && !ec;
  if (resume) {
    DINO_CHECK(has_checkpoint, "[train] --resume: no checkpoint to continue from in ", dir, " (",
               f.checkpoint, " does not exist)");
  } else {
    DINO_CHECK(force || (!has_checkpoint && !has_metrics), "[train] ", dir,
               " already holds a run (", has_checkpoint ? f.checkpoint : f.metrics,
               "): add --resume to continue it, --force to start over and replace it, or give "
               "another --out");
  }
  return f;
}

void create_run_folder(const RunFolder& folder) {
  std::error_code ec;
  fs::create_directories(folder.dir, ec);
  DINO_CHECK(!ec, "[train] cannot create the run folder ", folder.dir, ": ", ec.message());
  // A k-NN report from before describes another checkpoint than the one this run will leave.
  fs::remove(folder.knn, ec);
  DINO_CHECK(!ec, "[train] cannot remove the old ", folder.knn, ": ", ec.message());
}

}  // namespace dino
