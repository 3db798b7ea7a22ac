// Fashion-MNIST in the IDX format (big-endian header: magic 0x0803 + 3 dims for images,
// 0x0801 + 1 dim for labels), gzip-compressed as distributed or already decompressed.
#include <zlib.h>

#include <filesystem>

#include "core/error.h"
#include "data/datasets.h"

namespace dino::data {
namespace {

namespace fs = std::filesystem;
constexpr const char* kName = "fashion-mnist";

// zlib reads plain files transparently, so this serves both forms.
std::vector<uint8_t> read_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  DINO_CHECK(f != nullptr, "[", kName, "] cannot open ", path);
  std::vector<uint8_t> data;
  std::vector<uint8_t> chunk(1 << 20);
  for (;;) {
    const int got = gzread(f, chunk.data(), unsigned(chunk.size()));
    if (got <= 0) {
      int code = Z_OK;
      const char* msg = gzerror(f, &code);
      const std::string what = msg ? msg : "read error";
      gzclose(f);
      // Z_BUF_ERROR is zlib's "unexpected end of file": a truncated gzip stream.
      DINO_CHECK(got == 0 && code == Z_OK, "[", kName, "] ", path, ": corrupt or truncated gzip (",
                 what, ")");
      return data;
    }
    data.insert(data.end(), chunk.begin(), chunk.begin() + got);
  }
}

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

std::string find_file(const std::string& dir, const std::string& base) {
  const fs::path stem = fs::path(dir) / base;
  for (const std::string& candidate : {stem.string() + ".gz", stem.string()})
    if (fs::is_regular_file(candidate)) return candidate;
  throw Error(str_cat("[", kName, "] missing ", stem.string(), ".gz (or uncompressed ", base, ")"));
}

}  // namespace

std::unique_ptr<Dataset> open_fashion_mnist(const std::string& dir, Split split) {
  DINO_CHECK(fs::is_directory(dir), "[", kName, "] directory not found: ", dir);
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string image_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::string label_path = find_file(dir, prefix + "-labels-idx1-ubyte");

  std::vector<uint8_t> images = read_gzip(image_path);
  DINO_CHECK(images.size() >= 16, "[", kName, "] ", image_path, ": truncated header (",
             images.size(), " bytes)");
  DINO_CHECK(be32(images.data()) == 0x803, "[", kName, "] ", image_path, ": bad magic number 0x",
             std::hex, be32(images.data()), std::dec, " (expected 0x803, IDX uint8 images)");
  const size_t n = be32(images.data() + 4), rows = be32(images.data() + 8),
               cols = be32(images.data() + 12);
  DINO_CHECK(rows == cols && rows > 0 && rows <= 4096, "[", kName, "] ", image_path,
             ": unsupported image shape ", rows, "x", cols);
  DINO_CHECK(images.size() - 16 == n * rows * cols, "[", kName, "] ", image_path,
             ": truncated or oversized: header says ", n, " images of ", rows, "x", cols, " (",
             n * rows * cols, " bytes), file holds ", images.size() - 16);

  const std::vector<uint8_t> raw_labels = read_gzip(label_path);
  DINO_CHECK(raw_labels.size() >= 8, "[", kName, "] ", label_path, ": truncated header (",
             raw_labels.size(), " bytes)");
  DINO_CHECK(be32(raw_labels.data()) == 0x801, "[", kName, "] ", label_path,
             ": bad magic number 0x", std::hex, be32(raw_labels.data()), std::dec,
             " (expected 0x801, IDX uint8 labels)");
  const size_t n_labels = be32(raw_labels.data() + 4);
  DINO_CHECK(n_labels == n, "[", kName, "] ", label_path, ": ", n_labels, " labels for ", n,
             " images in ", image_path);
  DINO_CHECK(raw_labels.size() - 8 == n, "[", kName, "] ", label_path,
             ": truncated or oversized: header says ", n, " labels, file holds ",
             raw_labels.size() - 8);
  std::vector<int> labels(n);
  for (size_t i = 0; i < n; ++i) {
    labels[i] = raw_labels[8 + i];
    DINO_CHECK(labels[i] < 10, "[", kName, "] ", label_path, ": label ", labels[i], " at ", i,
               " is not in 0..9");
  }
  images.erase(images.begin(), images.begin() + 16);
  return std::make_unique<U8Dataset>(
      kName, split, 1, int(rows), 10, std::move(images), std::move(labels),
      std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                               "Shirt", "Sneaker", "Bag", "Ankle boot"});
}

}  // namespace dino::data
