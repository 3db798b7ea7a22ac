#include "train/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"

namespace dino {

namespace {

int open_for_append(const std::string& path, int extra_flags) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | extra_flags, 0644);
  DINO_CHECK(fd >= 0, "[train] cannot write ", path, ": ", std::strerror(errno));
  return fd;
}

// The byte length of the leading lines that hold steps 1, 2, ... up to `steps`, each whole
// and parseable; *covered receives the last step they hold.
uint64_t valid_prefix(const std::string& path, int64_t steps, int64_t* covered) {
  std::ifstream in(path, std::ios::binary);
  *covered = 0;
  uint64_t bytes = 0;
  std::string line;
  while (*covered < steps && std::getline(in, line)) {
    if (in.eof()) break;  // no newline: a line torn by a crash
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      break;
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer() ||
        j["step"].get<int64_t>() != *covered + 1)
      break;
    *covered += 1;
    bytes += line.size() + 1;
  }
  return bytes;
}

}  // namespace

MetricsLog MetricsLog::create(const std::string& path) {
  MetricsLog log(path, open_for_append(path, O_TRUNC), 0);
  fsync_parent_directory(path);
  return log;
}

MetricsLog MetricsLog::resume(const std::string& path, int64_t steps, int64_t* kept) {
  const uint64_t bytes = valid_prefix(path, steps, kept);
  MetricsLog log(path, open_for_append(path, 0), bytes);
  DINO_CHECK(::ftruncate(log.fd_, off_t(bytes)) == 0, "[train] cannot cut ", path, " back to step ",
             *kept, ": ", std::strerror(errno));
  log.sync();
  return log;
}

MetricsLog::MetricsLog(MetricsLog&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), bytes_(other.bytes_) {
  other.fd_ = -1;
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const StepRecord& r, int64_t iters_per_epoch) {
  const StepSettings& s = r.settings;
  const DinoLossStats& st = r.stats;
  nlohmann::json fields = nlohmann::json{{"step", r.step},
                                         {"epoch", double(r.step) / double(iters_per_epoch)},
                                         {"loss", st.loss},
                                         {"lr", s.lr},
                                         {"weight_decay", s.weight_decay},
                                         {"teacher_temp", s.teacher_temp},
                                         {"teacher_momentum", s.teacher_momentum},
                                         {"teacher_entropy", st.teacher_entropy},
                                         {"batch_entropy", st.batch_entropy},
                                         {"kl", st.kl},
                                         {"images_per_second", r.images_per_second},
                                         {"data_wait_ms", r.data_wait_ms},
                                         {"ranks", r.ranks},
                                         {"global_batch", r.global_batch}};
  if (s.koleo_weight > 0) fields["koleo"] = r.koleo;
  const std::string line = fields.dump() + "\n";
  // O_APPEND and one write() per line: a line is in the file whole or not at all.
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != ssize_t(line.size())) {
    std::string why = n < 0 ? std::strerror(errno) : "short write";
    // A partly written line is cut back off; should that fail too, --resume cuts it.
    if (n > 0 && ::ftruncate(fd_, off_t(bytes_)) != 0) why += ", a torn line left at the end";
    throw Error(str_cat("[train] cannot write ", path_, " at step ", r.step, ": ", why,
                        " (disk full?); stopping"));
  }
  bytes_ += uint64_t(n);
}

void MetricsLog::sync() {
  DINO_CHECK(::fsync(fd_) == 0, "[train] cannot sync ", path_, ": ", std::strerror(errno),
             "; stopping");
}

}  // namespace dino
