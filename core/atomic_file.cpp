#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace dino {

namespace {

std::string os_error() { return std::strerror(errno); }

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  DINO_CHECK(fd_ >= 0, "[", path_, "] cannot create '", tmp_, "': ", os_error());
}

AtomicFile::~AtomicFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  DINO_CHECK(fd_ >= 0, "[", path_, "] write after commit");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    DINO_CHECK(n > 0, "[", path_, "] write failed: ", n < 0 ? os_error() : "no progress",
               " (disk full?); the previous file, if any, is unchanged");
    p += n;
    bytes -= size_t(n);
  }
}

void AtomicFile::commit() {
  DINO_CHECK(fd_ >= 0, "[", path_, "] committed twice");
  // The data must be on the disk before the rename makes it the file: otherwise a power loss
  // can leave the new name pointing at blocks never written.
  DINO_CHECK(::fsync(fd_) == 0, "[", path_, "] fsync failed: ", os_error(),
             "; the previous file, if any, is unchanged");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0 || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = os_error();
    ::unlink(tmp_.c_str());
    std::error_code ec;
    DINO_CHECK(!std::filesystem::is_directory(path_, ec), "[", path_,
               "] is a folder; give a file name");
    throw Error(str_cat("[", path_, "] cannot move '", tmp_, "' into place: ", why));
  }
  fsync_parent_directory(path_);
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void fsync_parent_directory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DINO_CHECK(fd >= 0, "[", path, "] cannot open its folder to sync it: ", os_error());
  const int rc = ::fsync(fd);
  const std::string why = rc == 0 ? "" : os_error();
  ::close(fd);
  DINO_CHECK(rc == 0, "[", path, "] fsync of its folder failed: ", why);
}

}  // namespace dino
