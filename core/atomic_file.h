#pragma once
// Files that appear whole or not at all. An AtomicFile writes "<path>.tmp"; commit() flushes
// it to the disk (fsync), renames it over <path> and fsyncs the folder, so neither a crash nor
// a power loss leaves a torn file or loses the rename. Destroyed before commit() (an error
// part-way), it removes its temporary file: nothing half-written stays behind.
#include <cstddef>
#include <string>

namespace dino {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // throws naming the file it cannot create
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);  // throws on a short write (disk full)
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// The whole file in one go.
void write_file_atomically(const std::string& path, const std::string& bytes);

// fsync of the folder holding `path`, which makes a rename or a new file in it durable.
void fsync_parent_directory(const std::string& path);

}  // namespace dino
