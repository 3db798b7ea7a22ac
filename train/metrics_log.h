#pragma once
// metrics.jsonl: one JSON object per step. Each line goes to the file whole, in one write(),
// as soon as the step's statistics are known: a crash (kill -9) loses no complete line and
// never leaves half of one; sync() (called before each checkpoint) makes the lines durable, so
// the file always reaches at least the checkpoint's step. On --resume the file is cut back to
// the checkpoint's step: no torn line, no gap filled with another run's steps, no duplicate.
// A failed write (disk full) throws, which stops the run.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "losses/dino_loss.h"
#include "train/step.h"

namespace dino {

// One step whose statistics are known: `step` counts the steps done, this one included.
struct StepRecord {
  int64_t step = 0;
  StepSettings settings;
  DinoLossStats stats;
  // The batch over the step's wall time, the wait for the batch included.
  double images_per_second = 0;
  double data_wait_ms = 0;   // time the loop waited for this step's batch
  double koleo = 0;          // the step's unweighted KoLeo term; logged when its weight is not 0
  int ranks = 1;             // data-parallel ranks
  int64_t global_batch = 0;  // images in the step over every rank (per rank: global / ranks)
};

class MetricsLog {
 public:
  // A new run: the file is created or emptied.
  static MetricsLog create(const std::string& path);
  // A resumed run at `steps`: keeps the leading lines for steps 1..steps (stops at the first
  // line that is torn, unparseable or out of sequence) and cuts the rest. `kept` receives how
  // many steps the kept lines cover (less than `steps` when an older run lost some).
  static MetricsLog resume(const std::string& path, int64_t steps, int64_t* kept);
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&&) = delete;
  ~MetricsLog();

  void append(const StepRecord& r, int64_t iters_per_epoch);
  void sync();

 private:
  MetricsLog(std::string path, int fd, uint64_t bytes)
      : path_(std::move(path)), fd_(fd), bytes_(bytes) {}
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;  // the file's length after the last whole line
};

}  // namespace dino
