// CIFAR-10/100 binary versions: fixed-size records of label byte(s) then 3072 pixel bytes,
// already channel-planar (1024 R, 1024 G, 1024 B) 32x32, so records copy straight to CHW.
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/datasets.h"

namespace dino::data {
namespace {

namespace fs = std::filesystem;
constexpr size_t kPixels = 3 * 32 * 32;

// The archives unpack into a subdirectory; accept DIR or DIR/<that subdirectory>.
std::string locate(const std::string& dir, const std::string& subdir, const std::string& file,
                   const std::string& name) {
  DINO_CHECK(fs::is_directory(dir), "[", name, "] directory not found: ", dir);
  for (const fs::path& d : {fs::path(dir), fs::path(dir) / subdir})
    if (fs::is_regular_file(d / file)) return (d / file).string();
  throw Error(str_cat("[", name, "] missing ", (fs::path(dir) / file).string()));
}

void read_records(const std::string& path, int label_bytes, int num_classes,
                  const std::string& name, std::vector<uint8_t>& pixels, std::vector<int>& labels) {
  std::ifstream in(path, std::ios::binary);
  DINO_CHECK(in.good(), "[", name, "] cannot open ", path);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  const size_t record = label_bytes + kPixels;
  DINO_CHECK(!bytes.empty() && bytes.size() % record == 0, "[", name, "] ", path,
             ": truncated or not a CIFAR binary file (", bytes.size(),
             " bytes is not a whole number of ", record, "-byte records)");
  const size_t n = bytes.size() / record;
  for (size_t r = 0; r < n; ++r) {
    const uint8_t* rec = bytes.data() + r * record;
    // CIFAR-100 records hold (coarse, fine); we use the fine label, the last label byte.
    const int label = rec[label_bytes - 1];
    DINO_CHECK(label < num_classes, "[", name, "] ", path, ": record ", r, " has label ", label,
               ", expected 0..", num_classes - 1);
    labels.push_back(label);
    pixels.insert(pixels.end(), rec + label_bytes, rec + record);
  }
}

}  // namespace

std::unique_ptr<Dataset> open_cifar(const std::string& dir, int cifar_classes, Split split) {
  DINO_CHECK(cifar_classes == 10 || cifar_classes == 100,
             "[cifar] cifar_classes must be 10 or 100, got ", cifar_classes);
  const bool ten = cifar_classes == 10;
  const std::string name = ten ? "cifar10" : "cifar100";
  const std::string subdir = ten ? "cifar-10-batches-bin" : "cifar-100-binary";
  std::vector<std::string> files;
  if (ten && split == Split::train) {
    for (int i = 1; i <= 5; ++i) files.push_back(str_cat("data_batch_", i, ".bin"));
  } else if (ten) {
    files.push_back("test_batch.bin");
  } else {
    files.push_back(split == Split::train ? "train.bin" : "test.bin");
  }
  std::vector<uint8_t> pixels;
  std::vector<int> labels;
  for (const std::string& f : files)
    read_records(locate(dir, subdir, f, name), ten ? 1 : 2, cifar_classes, name, pixels, labels);
  std::vector<std::string> names;  // CIFAR-100's fine labels stay numbered
  if (ten)
    names = {"airplane", "automobile", "bird",  "cat",  "deer",
             "dog",      "frog",       "horse", "ship", "truck"};
  return std::make_unique<U8Dataset>(name, split, 3, 32, cifar_classes, std::move(pixels),
                                     std::move(labels), std::move(names));
}

}  // namespace dino::data
