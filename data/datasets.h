#pragma once
// Datasets: indexable collections of CHW float images in [0, 1] with optional labels.
// open_dataset() turns a spec string into one; the per-format openers below are what it
// dispatches to. Every error a user can cause (missing or corrupt files, bad spec) is a
// dino::Error whose message names the offending path or spec.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/image.h"

namespace dino::data {

enum class Split { train, test };
const char* split_name(Split split);

// Called by Dataset::load with an image's stored height and width before its pixels are
// decoded; returns the largest factor by which the decoder may shrink it.
using ReductionPlan = std::function<int(int height, int width)>;

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual size_t size() const = 0;
  // Thread-safe; throws dino::Error naming the file for corrupt or unreadable images.
  virtual Image get(size_t index) const = 0;
  // Image `index` as stored (8-bit or float), into out's buffers; calls `plan` exactly once,
  // with the stored size, before decoding. JPEG files decode at 1/r for the largest r in
  // {1, 2, 4, 8} that the plan allows (DCT-domain scaling); everything else at full size.
  // Thread-safe; the default goes through get().
  virtual void load(size_t index, SourceImage& out, const ReductionPlan& plan) const;
  virtual int label(size_t index) const = 0;  // -1 when the dataset has no labels
  virtual int num_classes() const = 0;        // 0 when unlabelled
  virtual int channels() const = 0;           // 1 or 3
  virtual int native_size() const = 0;        // square side of stored images, 0 if variable
  virtual std::string describe() const = 0;
  // The file an image is read from; empty for datasets held in memory.
  virtual std::string path(size_t index) const { return {}; }
  // A label's name ("Sneaker", a class folder's name); "class N" when the data has none.
  virtual std::string class_name(int label) const;
};

// Spec forms:
//   "fashion-mnist" | "fashion-mnist:DIR"   IDX files (gzip or plain), default dir
//                                           /usr/share/datasets/fashion-mnist
//   "cifar10:DIR"                           data_batch_1..5.bin / test_batch.bin
//   "cifar100:DIR"                          train.bin / test.bin (fine labels)
//   "folder:DIR"                            DIR/<class>/*.{png,jpg,jpeg,bmp}; DIR/train and
//                                           DIR/test are used per split when both exist
//   "synthetic" | "synthetic:n=2000,test=400,size=28,classes=10,channels=1,seed=0"
//                                           procedural textures (data/synthetic.cpp)
std::unique_ptr<Dataset> open_dataset(const std::string& spec, Split split);

std::unique_ptr<Dataset> open_fashion_mnist(const std::string& dir, Split split);
// cifar_classes: 10 or 100.
std::unique_ptr<Dataset> open_cifar(const std::string& dir, int cifar_classes, Split split);
std::unique_ptr<Dataset> open_image_folder(const std::string& dir, Split split);
// The given image files in order, unlabelled, decoded to `channels` (1: greyscale, 3: RGB).
std::unique_ptr<Dataset> open_image_files(const std::vector<std::string>& paths, int channels);
// One PNG, JPEG or BMP file as `channels` channels in [0, 1]; throws naming the path.
Image read_image_file(const std::string& path, int channels);

struct SyntheticConfig {
  int64_t n = 2000;   // train images
  int64_t test = -1;  // test images; -1 means n / 5
  int size = 28;
  int classes = 10;  // 2..13: one texture each
  int channels = 1;
  uint64_t seed = 0;
};
// Parses "n=2000,size=28,..." (any subset of the keys, in any order).
SyntheticConfig parse_synthetic_config(const std::string& options);
std::unique_ptr<Dataset> open_synthetic(const SyntheticConfig& cfg, Split split);

// Decoded images held in memory as uint8 CHW (Fashion-MNIST, CIFAR): decoding happens once
// at open, and get() only converts to float.
class U8Dataset : public Dataset {
 public:
  U8Dataset(std::string name, Split split, int channels, int side, int num_classes,
            std::vector<uint8_t> pixels, std::vector<int> labels,
            std::vector<std::string> class_names = {});
  size_t size() const override { return labels_.size(); }
  Image get(size_t index) const override;
  void load(size_t index, SourceImage& out, const ReductionPlan& plan) const override;
  int label(size_t index) const override;
  int num_classes() const override { return num_classes_; }
  int channels() const override { return channels_; }
  int native_size() const override { return side_; }
  std::string describe() const override;
  std::string class_name(int label) const override;

 private:
  std::string name_;
  Split split_;
  int channels_, side_, num_classes_;
  std::vector<uint8_t> pixels_;
  std::vector<int> labels_;
  std::vector<std::string> class_names_;
};

}  // namespace dino::data
