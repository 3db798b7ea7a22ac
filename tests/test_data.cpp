// Tests for the data layer: dataset readers on tiny generated files (and the real
// Fashion-MNIST when installed), augmentations against torchvision/PIL semantics, the
// multi-crop policy and the background loader's determinism.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC  // private copy: the library or tools may carry their own
#include <stb/stb_image_write.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "data/loader.h"

using namespace dino;
using namespace dino::data;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path =
        fs::temp_directory_path() / str_cat("dino_test_data_", getpid(), "_", counter.fetch_add(1));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
  std::string str(const std::string& rel) const { return (path / rel).string(); }
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
  gzclose(f);
}

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(uint8_t(x >> s));
}

// n images of side x side with pixel (i, p) = (i * 31 + p) % 256, labels i % 10.
void write_idx(const std::string& dir, const std::string& prefix, uint32_t n, uint32_t side) {
  std::vector<uint8_t> images, labels;
  put_be32(images, 0x803);
  put_be32(images, n);
  put_be32(images, side);
  put_be32(images, side);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t p = 0; p < side * side; ++p) images.push_back(uint8_t((i * 31 + p) % 256));
  put_be32(labels, 0x801);
  put_be32(labels, n);
  for (uint32_t i = 0; i < n; ++i) labels.push_back(uint8_t(i % 10));
  write_gzip(dir + "/" + prefix + "-images-idx3-ubyte.gz", images);
  write_gzip(dir + "/" + prefix + "-labels-idx1-ubyte.gz", labels);
}

// Asserts that `fn` throws dino::Error whose message contains `needle`.
template <class Fn>
void require_error_naming(Fn&& fn, const std::string& needle) {
  try {
    fn();
    FAIL("expected dino::Error mentioning " << needle);
  } catch (const Error& e) {
    INFO("message: " << e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}

Image constant_image(int c, int h, int w, float v) { return make_image(c, h, w, v); }

Image random_image(int c, int h, int w, uint64_t seed) {
  Rng rng(seed);
  Image img = make_image(c, h, w);
  for (float& p : img.pixels) p = float(rng.uniform());
  return img;
}

// A config that makes every view a deterministic function of the image: full crop, no
// flip, no colour, no blur, no solarize.
MultiCropConfig identity_config(int global_size, int local_size) {
  MultiCropConfig cfg;
  cfg.global = {2, global_size, 1.f, 1.f};
  cfg.local = {3, local_size, 1.f, 1.f};
  cfg.flip_p = cfg.jitter_p = cfg.grayscale_p = 0.f;
  cfg.blur_p_global1 = cfg.blur_p_global2 = cfg.blur_p_local = cfg.solarize_p_global2 = 0.f;
  return cfg;
}

// A loader batch copied out of its lent buffers (f32 views).
struct BatchCopy {
  int64_t epoch = 0, index = 0;
  std::vector<int> view_sizes;
  std::vector<std::vector<float>> views;
  std::vector<int> labels;
  std::vector<int64_t> indices;
  bool operator==(const BatchCopy& o) const {
    return epoch == o.epoch && index == o.index && view_sizes == o.view_sizes && views == o.views &&
           labels == o.labels && indices == o.indices;
  }
};

BatchCopy copy_batch(const MultiCropBatch& b) {
  BatchCopy c{b.epoch, b.index, b.view_sizes, {}, b.labels, b.indices};
  for (size_t v = 0; v < b.views.size(); ++v)
    c.views.emplace_back(b.view_f32(v), b.view_f32(v) + b.view_values(v));
  return c;
}

BatchCopy next_copy(MultiCropLoader& loader) { return copy_batch(*loader.next()); }

// Wraps a dataset and fails on one index, like a corrupt file would.
class FailingDataset : public Dataset {
 public:
  FailingDataset(const Dataset& inner, size_t bad) : inner_(inner), bad_(bad) {}
  size_t size() const override { return inner_.size(); }
  Image get(size_t i) const override {
    DINO_CHECK(i != bad_, "[test] /fake/corrupt_", i, ".png cannot be decoded");
    return inner_.get(i);
  }
  int label(size_t i) const override { return inner_.label(i); }
  int num_classes() const override { return inner_.num_classes(); }
  int channels() const override { return inner_.channels(); }
  int native_size() const override { return inner_.native_size(); }
  std::string describe() const override { return "failing " + inner_.describe(); }

 private:
  const Dataset& inner_;
  size_t bad_;
};

}  // namespace

TEST_CASE("IDX reader decodes a tiny gzip Fashion-MNIST layout", "[data]") {
  TempDir dir;
  write_idx(dir.str(), "train", 5, 4);
  write_idx(dir.str(), "t10k", 3, 4);
  auto train = open_dataset("fashion-mnist:" + dir.str(), Split::train);
  auto test = open_dataset("fashion-mnist:" + dir.str(), Split::test);
  REQUIRE(train->size() == 5);
  REQUIRE(test->size() == 3);
  CHECK(train->channels() == 1);
  CHECK(train->native_size() == 4);
  CHECK(train->num_classes() == 10);
  CHECK(train->describe() == "fashion-mnist train (5 images, 4x4x1, 10 classes)");
  for (size_t i = 0; i < 5; ++i) {
    CHECK(train->label(i) == int(i % 10));
    const Image img = train->get(i);
    REQUIRE(img.pixels.size() == 16);
    for (int p = 0; p < 16; ++p) CHECK(img.pixels[p] == Approx(((i * 31 + p) % 256) / 255.0));
  }
  require_error_naming([&] { train->get(5); }, "out of range");
}

TEST_CASE("IDX reader rejects missing, truncated and corrupt files naming the path", "[data]") {
  require_error_naming([] { open_dataset("fashion-mnist:/nonexistent/fmnist_dir", Split::train); },
                       "/nonexistent/fmnist_dir");
  TempDir dir;
  const std::string images = dir.str("train-images-idx3-ubyte.gz");
  require_error_naming([&] { open_dataset("fashion-mnist:" + dir.str(), Split::train); },
                       "train-images-idx3-ubyte");

  write_idx(dir.str(), "train", 5, 4);
  {  // header promises 5 images, the payload holds fewer
    std::vector<uint8_t> bytes;
    put_be32(bytes, 0x803);
    put_be32(bytes, 5);
    put_be32(bytes, 4);
    put_be32(bytes, 4);
    bytes.resize(bytes.size() + 40);
    write_gzip(images, bytes);
    require_error_naming([&] { open_dataset("fashion-mnist:" + dir.str(), Split::train); }, images);
  }
  {  // wrong magic: a label file where the images belong
    std::vector<uint8_t> bytes;
    put_be32(bytes, 0x801);
    put_be32(bytes, 5);
    bytes.resize(bytes.size() + 40);
    write_gzip(images, bytes);
    require_error_naming([&] { open_dataset("fashion-mnist:" + dir.str(), Split::train); },
                         "bad magic");
    require_error_naming([&] { open_dataset("fashion-mnist:" + dir.str(), Split::train); }, images);
  }
  {  // a gzip stream cut short
    write_idx(dir.str(), "train", 50, 8);
    std::ifstream in(images, std::ios::binary);
    std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    gz.resize(gz.size() / 2);
    write_bytes(images, gz);
    require_error_naming([&] { open_dataset("fashion-mnist:" + dir.str(), Split::train); }, images);
  }
}

TEST_CASE("real Fashion-MNIST, when installed, has 60000/10000 images and 10 balanced classes",
          "[data]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz")) return;
  auto train = open_dataset("fashion-mnist", Split::train);
  auto test = open_dataset("fashion-mnist", Split::test);
  REQUIRE(train->size() == 60000);
  REQUIRE(test->size() == 10000);
  CHECK(train->native_size() == 28);
  std::vector<int> counts(10, 0);
  for (size_t i = 0; i < test->size(); ++i) {
    const int l = test->label(i);
    REQUIRE(l >= 0);
    REQUIRE(l < 10);
    ++counts[size_t(l)];
  }
  for (int c : counts) CHECK(c == 1000);
  const Image img = train->get(0);
  CHECK(img.height == 28);
  float lo = 1.f, hi = 0.f;
  for (float p : img.pixels) lo = std::min(lo, p), hi = std::max(hi, p);
  CHECK(lo == 0.f);
  CHECK(hi > 0.5f);
  CHECK(hi <= 1.f);
}

TEST_CASE("CIFAR binary readers parse records into CHW with the right labels", "[data]") {
  TempDir dir;
  auto record = [](const std::vector<int>& labels, int seed) {
    std::vector<uint8_t> r(labels.begin(), labels.end());
    for (int p = 0; p < 3072; ++p) r.push_back(uint8_t((p * 7 + seed) % 256));
    return r;
  };
  for (int b = 1; b <= 5; ++b) {
    std::vector<uint8_t> bytes = record({b}, b);
    const std::vector<uint8_t> second = record({9}, 100 + b);
    bytes.insert(bytes.end(), second.begin(), second.end());
    write_bytes(dir.str(str_cat("data_batch_", b, ".bin")), bytes);
  }
  write_bytes(dir.str("test_batch.bin"), record({3}, 42));
  auto train = open_dataset("cifar10:" + dir.str(), Split::train);
  auto test = open_dataset("cifar10:" + dir.str(), Split::test);
  REQUIRE(train->size() == 10);
  REQUIRE(test->size() == 1);
  CHECK(train->channels() == 3);
  CHECK(train->native_size() == 32);
  CHECK(train->num_classes() == 10);
  CHECK(train->label(0) == 1);
  CHECK(train->label(1) == 9);
  CHECK(train->label(8) == 5);
  const Image img = train->get(2);  // data_batch_2, first record, seed 2
  REQUIRE(img.channels == 3);
  CHECK(img.at(0, 0, 0) == Approx(2 / 255.0));
  CHECK(img.at(1, 0, 0) == Approx(((1024 * 7 + 2) % 256) / 255.0));
  CHECK(img.at(2, 31, 31) == Approx(((3071 * 7 + 2) % 256) / 255.0));

  TempDir dir100;
  std::vector<uint8_t> bytes = record({4, 77}, 0);
  write_bytes(dir100.str("train.bin"), bytes);
  write_bytes(dir100.str("test.bin"), bytes);
  auto c100 = open_dataset("cifar100:" + dir100.str(), Split::train);
  CHECK(c100->num_classes() == 100);
  CHECK(c100->label(0) == 77);  // fine label, not coarse

  bytes.pop_back();
  write_bytes(dir100.str("test.bin"), bytes);
  require_error_naming([&] { open_dataset("cifar100:" + dir100.str(), Split::test); },
                       dir100.str("test.bin"));
  require_error_naming([] { open_dataset("cifar10:/nonexistent/cifar", Split::train); },
                       "/nonexistent/cifar");
}

TEST_CASE("image folder reads generated PNGs and names a corrupt file", "[data]") {
  TempDir dir;
  fs::create_directories(dir.path / "dog");
  fs::create_directories(dir.path / "cat");
  auto write_png = [&](const std::string& rel, int w, int h, int comp, int seed) {
    std::vector<uint8_t> px(size_t(w) * h * comp);
    for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t((i * 13 + size_t(seed)) % 256);
    REQUIRE(stbi_write_png(dir.str(rel).c_str(), w, h, comp, px.data(), w * comp) != 0);
    return px;
  };
  const std::vector<uint8_t> cat0 = write_png("cat/a.png", 5, 4, 3, 1);
  write_png("cat/b.png", 6, 6, 3, 2);
  write_png("dog/a.png", 3, 7, 3, 3);
  write_bytes(dir.str("dog/z_broken.png"), {0x89, 'P', 'N', 'G', 1, 2, 3});

  auto ds = open_dataset("folder:" + dir.str(), Split::train);
  REQUIRE(ds->size() == 4);
  CHECK(ds->num_classes() == 2);
  CHECK(ds->channels() == 3);
  CHECK(ds->native_size() == 0);
  CHECK(ds->label(0) == 0);  // cat sorts before dog
  CHECK(ds->label(2) == 1);
  const Image img = ds->get(0);
  REQUIRE(img.width == 5);
  REQUIRE(img.height == 4);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 5; ++x)
        CHECK(img.at(c, y, x) == Approx(cat0[size_t((y * 5 + x) * 3 + c)] / 255.0));
  CHECK(ds->get(2).height == 7);
  require_error_naming([&] { ds->get(3); }, dir.str("dog/z_broken.png"));

  // The same folder through the loader: the worker's error surfaces in next().
  MultiCropConfig cfg = identity_config(8, 4);
  MultiCropLoader loader(*ds, cfg, 4, 0, 2);
  loader.start(0);
  require_error_naming([&] { loader.next(); }, "z_broken.png");

  require_error_naming([] { open_dataset("folder:/nonexistent/images", Split::train); },
                       "/nonexistent/images");
}

TEST_CASE("an image whose header claims more pixels than its bytes can hold is refused quickly",
          "[data]") {
  // 151 bytes of BMP claiming 16,646,150 x 5 pixels (found by fuzz/fuzz_image.cpp: decoding it
  // took over 10 s under the sanitizers), and one claiming 60,000 x 60.
  TempDir dir;
  fs::create_directories(dir.path / "a");
  std::vector<uint8_t> bomb(151, 0);
  const uint8_t header[] = {'B',  'M',  0x97, 0, 0,    0, 0,    0, 0,    0,
                            0x36, 0,    0,    0, 0x28, 0, 0,    0, 0x06, 0x00,
                            0xfe, 0x00, 0x05, 0, 0,    0, 0x01, 0, 0x18, 0};
  std::copy(std::begin(header), std::end(header), bomb.begin());
  write_bytes(dir.str("a/bomb.bmp"), bomb);
  auto ds = open_dataset("folder:" + dir.str(), Split::train);
  require_error_naming([&] { ds->get(0); }, "claims 16646150 x 5 pixels; at most 65535 per side");
  // 60,000 x 60: within the side limit, but 3.6 M pixels in 151 bytes.
  const uint8_t size[] = {0x60, 0xea, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00};
  std::copy(std::begin(size), std::end(size), bomb.begin() + 18);
  write_bytes(dir.str("a/bomb.bmp"), bomb);
  require_error_naming([&] { ds->get(0); }, "more than its 151 bytes can hold");
}

TEST_CASE("a PNG chunk claiming more bytes than the file holds is refused before any allocation",
          "[data]") {
  // 95 bytes whose second IDAT chunk claims 1,173,094,426 bytes: stb_image would grow its buffer
  // to 2 GiB before finding the file short (found by fuzz/fuzz_image.cpp; the same bytes are its
  // seed fuzz/corpus/image/png-chunk-claims-1173094426).
  const uint8_t png[] = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d,
                         0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x05,
                         0x08, 0x06, 0x00, 0x00, 0x00, 0x66, 0x58, 0x9d, 0xe6, 0x00, 0x00, 0x00,
                         0x1d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x4e, 0x47, 0x0d, 0x0a, 0x1a,
                         0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x0d, 0x00, 0x00,
                         0x06, 0x00, 0x00, 0x00, 0x53, 0x74, 0x35, 0x63, 0x74, 0x79, 0x70, 0x65,
                         0x49, 0x63, 0x45, 0xec, 0x00, 0x1a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c,
                         0x63, 0x64, 0x60, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x42, 0x60, 0x35};
  TempDir dir;
  fs::create_directories(dir.path / "a");
  write_bytes(dir.str("a/chunk.png"), std::vector<uint8_t>(std::begin(png), std::end(png)));
  auto ds = open_dataset("folder:" + dir.str(), Split::train);
  require_error_naming([&] { ds->get(0); },
                       "PNG chunk at byte 74 claims 1173094426 bytes, more than the 13 left");
}

TEST_CASE("image folder uses train/ and test/ per split and detects greyscale", "[data]") {
  TempDir dir;
  for (const char* rel : {"train/b", "train/a", "test/b"}) fs::create_directories(dir.path / rel);
  const std::vector<uint8_t> px(16, 200);
  for (const char* rel : {"train/a/1.png", "train/b/1.png", "train/b/2.png", "test/b/1.png"})
    REQUIRE(stbi_write_png(dir.str(rel).c_str(), 4, 4, 1, px.data(), 4) != 0);
  auto train = open_dataset("folder:" + dir.str(), Split::train);
  auto test = open_dataset("folder:" + dir.str(), Split::test);
  CHECK(train->size() == 3);
  REQUIRE(test->size() == 1);
  CHECK(test->num_classes() == 2);
  CHECK(test->label(0) == 1);  // "b" keeps its train label
  CHECK(test->channels() == 1);
  CHECK(test->get(0).pixels[5] == Approx(200 / 255.0));
}

TEST_CASE("synthetic dataset is deterministic, labelled and split into disjoint images", "[data]") {
  auto a = open_dataset("synthetic:n=50,size=20,classes=5,channels=3,seed=7", Split::train);
  auto b = open_dataset("synthetic:seed=7,channels=3,classes=5,size=20,n=50", Split::train);
  auto other_seed =
      open_dataset("synthetic:n=50,size=20,classes=5,channels=3,seed=8", Split::train);
  auto test = open_dataset("synthetic:n=50,size=20,classes=5,channels=3,seed=7", Split::test);
  REQUIRE(a->size() == 50);
  CHECK(test->size() == 10);
  CHECK(a->channels() == 3);
  CHECK(a->native_size() == 20);
  CHECK(a->num_classes() == 5);
  const Image x = a->get(3);
  CHECK(x.pixels == b->get(3).pixels);
  CHECK(x.pixels != a->get(8).pixels);  // same class, different image
  CHECK(x.pixels != other_seed->get(3).pixels);
  CHECK(x.pixels != test->get(3).pixels);
  std::vector<int> counts(5, 0);
  for (size_t i = 0; i < a->size(); ++i) ++counts[size_t(a->label(i))];
  for (int c : counts) CHECK(c == 10);
  for (float p : x.pixels) REQUIRE((p >= 0.f && p <= 1.f));

  // Class structure that raw pixels only partly reveal: 1-nearest-neighbour (cosine) on
  // pixels lands well above chance (10%) and well below perfect.
  auto tr = open_dataset("synthetic:n=500,test=200,size=20", Split::train);
  auto te = open_dataset("synthetic:n=500,test=200,size=20", Split::test);
  auto unit = [](Image img) {
    double norm = 0.0;
    for (float p : img.pixels) norm += double(p) * p;
    for (float& p : img.pixels) p = float(p / std::sqrt(norm));
    return img.pixels;
  };
  std::vector<std::vector<float>> bank;
  for (size_t i = 0; i < tr->size(); ++i) bank.push_back(unit(tr->get(i)));
  int correct = 0;
  for (size_t j = 0; j < te->size(); ++j) {
    const std::vector<float> q = unit(te->get(j));
    double best = -1.0;
    int best_label = -1;
    for (size_t i = 0; i < bank.size(); ++i) {
      double dot = 0.0;
      for (size_t p = 0; p < q.size(); ++p) dot += q[p] * bank[i][p];
      if (dot > best) best = dot, best_label = tr->label(i);
    }
    correct += best_label == te->label(j);
  }
  const double accuracy = correct / double(te->size());
  INFO("raw-pixel 1-NN accuracy " << accuracy);
  CHECK(accuracy > 0.25);
  CHECK(accuracy < 0.85);

  require_error_naming([] { open_dataset("synthetic:n=10,bogus=3", Split::train); }, "bogus");
  require_error_naming([] { open_dataset("synthetic:n=ten", Split::train); }, "n=ten");
  require_error_naming([] { open_dataset("synthetic:classes=14", Split::train); }, "got 14");
  require_error_naming([] { open_dataset("imagenet:/data", Split::train); }, "imagenet:/data");
}

TEST_CASE("resized_crop matches PIL's bicubic resize", "[data]") {
  Image img = make_image(1, 5, 6);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 6; ++x) img.at(0, y, x) = float((x * 7 + y * 3) % 11) / 10.f;
  // PIL: Image.fromarray(a[1:5, 0:5], 'F').resize((7, 3), BICUBIC), clipped to [0, 1].
  const std::vector<float> up = {0.332039f, 0.600887f, 0.814047f, 0.719908f, 0.335893f, 0.414777f,
                                 0.710066f, 0.816533f, 0.509018f, 0.316645f, 0.500000f, 0.683355f,
                                 0.490982f, 0.183467f, 0.289934f, 0.585223f, 0.664107f, 0.280092f,
                                 0.185953f, 0.399113f, 0.667961f};
  const Image a = resized_crop(img, 1, 0, 4, 5, 3, 7);
  REQUIRE(a.pixels.size() == up.size());
  for (size_t i = 0; i < up.size(); ++i) CHECK(a.pixels[i] == Approx(up[i]).margin(1e-5));
  // Downscaling widens the kernel (antialiasing): PIL resize((3, 2)) of the whole image.
  const std::vector<float> down = {0.497419f, 0.597073f, 0.529919f,
                                   0.539126f, 0.430844f, 0.375604f};
  const Image b = resize(img, 2, 3);
  for (size_t i = 0; i < down.size(); ++i) CHECK(b.pixels[i] == Approx(down[i]).margin(1e-5));
  CHECK(resize(img, 5, 6).pixels == img.pixels);
}

namespace {

// The data kernels' arithmetic, spelled out: each output is one multiply-add chain over its
// taps in increasing input order, fused where the machine has FMA.
float madd(float a, float b, float c) {
#ifdef __FMA__
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// PIL's bicubic taps over [0, in) for `out` outputs, as data/image.cpp computes them.
void pil_taps(int in, int out, std::vector<int>& first, std::vector<std::vector<float>>& w) {
  const double scale = double(in) / out, fs = std::max(scale, 1.0), support = 2.0 * fs;
  auto cubic = [](double x) {
    x = std::fabs(x);
    if (x < 1.0) return ((-0.5 + 2.0) * x - (-0.5 + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5;
    return 0.0;
  };
  first.assign(size_t(out), 0);
  w.assign(size_t(out), {});
  for (int o = 0; o < out; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(int(center - support + 0.5), 0);
    const int hi = std::min(int(center + support + 0.5), in);
    std::vector<double> raw;
    double total = 0.0;
    for (int x = lo; x < hi; ++x) total += raw.emplace_back(cubic((x - center + 0.5) / fs));
    first[size_t(o)] = lo;
    for (double r : raw) w[size_t(o)].push_back(float(total != 0.0 ? r / total : 0.0));
  }
}

}  // namespace

TEST_CASE("resized_crop and gaussian_blur equal their scalar definitions at any size", "[data]") {
  Rng rng(21);
  for (int trial = 0; trial < 12; ++trial) {
    const int H = 3 + int(rng.below(90)), W = 3 + int(rng.below(90));
    const Image img = random_image(trial % 2 ? 3 : 1, H, W, uint64_t(trial));
    const int h = 1 + int(rng.below(uint64_t(H))), w = 1 + int(rng.below(uint64_t(W)));
    const int top = int(rng.below(uint64_t(H - h + 1))), left = int(rng.below(uint64_t(W - w + 1)));
    // Down to a fortieth (dozens of taps per output) and up to 8x, odd sizes included.
    const int oh = 1 + int(rng.below(uint64_t(std::min(8 * h, 70)))), ow = 1 + int(rng.below(70));
    std::vector<int> fx, fy;
    std::vector<std::vector<float>> wx, wy;
    pil_taps(w, ow, fx, wx);
    pil_taps(h, oh, fy, wy);
    const Image got = resized_crop(img, top, left, h, w, oh, ow);
    REQUIRE(got.height == oh);
    REQUIRE(got.width == ow);
    for (int c = 0; c < img.channels; ++c) {
      std::vector<float> rows(size_t(h) * ow);
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < ow; ++x) {
          float acc = 0.f;
          for (size_t k = 0; k < wx[size_t(x)].size(); ++k)
            acc = madd(img.at(c, top + y, left + fx[size_t(x)] + int(k)), wx[size_t(x)][k], acc);
          rows[size_t(y) * ow + x] = acc;
        }
      for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x) {
          float acc = 0.f;
          for (size_t k = 0; k < wy[size_t(y)].size(); ++k)
            acc = madd(wy[size_t(y)][k], rows[size_t(fy[size_t(y)] + int(k)) * ow + x], acc);
          REQUIRE(got.at(c, y, x) == std::min(std::max(acc, 0.f), 1.f));
        }
    }

    const float sigma = float(rng.uniform(0.1, 2.5));
    Image blurred = img;
    gaussian_blur(blurred, sigma);
    const int r = int(std::ceil(3.f * sigma));
    std::vector<float> kernel;
    float total = 0.f;
    for (int k = -r; k <= r; ++k)
      total += kernel.emplace_back(std::exp(-0.5f * float(k * k) / (sigma * sigma)));
    for (float& k : kernel) k /= total;
    for (int c = 0; c < img.channels; ++c) {
      std::vector<float> tmp(img.plane());
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          float acc = 0.f;
          for (int k = -r; k <= r; ++k)
            acc =
                madd(kernel[size_t(k + r)], img.at(c, y, std::min(std::max(x + k, 0), W - 1)), acc);
          tmp[size_t(y) * W + x] = acc;
        }
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          float acc = 0.f;
          for (int k = -r; k <= r; ++k)
            acc = madd(kernel[size_t(k + r)],
                       tmp[size_t(std::min(std::max(y + k, 0), H - 1)) * W + x], acc);
          REQUIRE(blurred.at(c, y, x) == acc);
        }
    }
  }
  // Hue works on eight pixels at a time: a 1 x 13 image (one block and a padded tail) gives
  // what 13 single pixels give.
  const Image row = random_image(3, 1, 13, 5);
  Image shifted = row;
  adjust_hue(shifted, 0.23f);
  for (int x = 0; x < 13; ++x) {
    Image px = make_image(3, 1, 1);
    for (int c = 0; c < 3; ++c) px.at(c, 0, 0) = row.at(c, 0, x);
    adjust_hue(px, 0.23f);
    for (int c = 0; c < 3; ++c) CHECK(shifted.at(c, 0, x) == px.at(c, 0, 0));
  }
}

TEST_CASE("to_bytes equals round-half-up of 255 x, clamped, at any size", "[data]") {
  Rng rng(23);
  for (int trial = 0; trial < 20; ++trial) {
    const int C = trial % 2 ? 3 : 1, H = 1 + int(rng.below(40)), W = 1 + int(rng.below(41));
    Image img = make_image(C, H, W);
    for (float& x : img.pixels) {  // out of range, exact half steps, NaN-free
      const uint64_t kind = rng.below(4);
      x = kind == 0   ? float(rng.uniform(-0.3, 1.3))
          : kind == 1 ? (float(rng.below(511)) - 0.5f) / 255.f
                      : float(rng.uniform());
    }
    std::vector<uint8_t> got(img.pixels.size() + 1, 0xAB);  // one guard byte after the end
    to_bytes(img, got.data());
    for (size_t i = 0; i < img.pixels.size(); ++i) {
      const float y = std::min(std::max(madd(img.pixels[i], 255.f, 0.5f), 0.f), 255.f);
      INFO("trial " << trial << " value " << img.pixels[i]);
      REQUIRE(got[i] == uint8_t(y));
    }
    CHECK(got.back() == 0xAB);
  }
}

TEST_CASE("RandomResizedCrop boxes follow torchvision's sampling and fallback", "[data]") {
  Rng rng(1);
  double centre_x = 0.0, centre_y = 0.0;
  for (int t = 0; t < 500; ++t) {
    const CropBox b = random_resized_crop_box(50, 70, 0.05f, 0.4f, rng);
    centre_x += (b.left + b.width / 2.0) / 500.0;
    centre_y += (b.top + b.height / 2.0) / 500.0;
    REQUIRE(b.top >= 0);
    REQUIRE(b.left >= 0);
    REQUIRE(b.top + b.height <= 50);
    REQUIRE(b.left + b.width <= 70);
    const double frac = double(b.height) * b.width / (50.0 * 70.0);
    CHECK(frac > 0.03);
    CHECK(frac < 0.45);
    const double ratio = double(b.width) / b.height;
    CHECK(ratio > 0.6);
    CHECK(ratio < 1.6);
  }
  CHECK(centre_x == Approx(35.0).margin(3.0));  // positions uniform over the image
  CHECK(centre_y == Approx(25.0).margin(3.0));
  // A 10x40 image cannot hold a full-area crop of ratio <= 4/3: centre crop 10 x round(13.3).
  const CropBox f = random_resized_crop_box(10, 40, 1.f, 1.f, rng);
  CHECK(f.top == 0);
  CHECK(f.height == 10);
  CHECK(f.width == 13);
  CHECK(f.left == 13);
}

TEST_CASE("colour operations follow torchvision semantics", "[data]") {
  Image rgb = make_image(3, 1, 2);
  rgb.pixels = {1.f, 0.2f, /*g*/ 0.f, 0.4f, /*b*/ 0.f, 0.6f};
  Image h = rgb;
  adjust_hue(h, 1.f / 3.f);  // red turns green
  CHECK(h.at(0, 0, 0) == Approx(0.f).margin(1e-6));
  CHECK(h.at(1, 0, 0) == Approx(1.f));
  CHECK(h.at(2, 0, 0) == Approx(0.f).margin(1e-6));
  // (0.2, 0.4, 0.6) has hue 7/12; +1/3 gives 11/12: max 0.6 in red, min 0.2 in green.
  CHECK(h.at(0, 0, 1) == Approx(0.6f));
  CHECK(h.at(1, 0, 1) == Approx(0.2f));
  CHECK(h.at(2, 0, 1) == Approx(0.4f));

  Image g = rgb;
  to_grayscale(g);
  CHECK(g.at(0, 0, 0) == Approx(0.299f));
  CHECK(g.at(2, 0, 1) == Approx(0.299f * 0.2f + 0.587f * 0.4f + 0.114f * 0.6f));
  Image s = rgb;
  adjust_saturation(s, 0.f);
  CHECK(s.pixels == g.pixels);

  Image c = make_image(1, 1, 4);
  c.pixels = {0.f, 0.2f, 0.4f, 0.6f};
  adjust_contrast(c, 0.5f);  // halfway towards the mean 0.3
  CHECK(c.pixels[0] == Approx(0.15f));
  CHECK(c.pixels[3] == Approx(0.45f));
  adjust_brightness(c, 3.f);
  CHECK(c.pixels[0] == Approx(0.45f));
  CHECK(c.pixels[3] == 1.f);  // clamped

  Image one = c;
  adjust_hue(one, 0.3f);
  adjust_saturation(one, 0.f);
  to_grayscale(one);
  CHECK(one.pixels == c.pixels);  // no colour to change on one channel

  Image sol = make_image(1, 1, 3);
  sol.pixels = {0.2f, 0.5f, 0.9f};
  solarize(sol);
  CHECK(sol.pixels[0] == 0.2f);
  CHECK(sol.pixels[1] == 0.5f);
  CHECK(sol.pixels[2] == Approx(0.1f));
}

TEST_CASE("gaussian blur keeps constants, conserves mass and spreads symmetrically", "[data]") {
  Image flat = constant_image(3, 9, 11, 0.37f);
  gaussian_blur(flat, 1.5f);
  for (float p : flat.pixels) CHECK(p == Approx(0.37f));
  Image delta = constant_image(1, 15, 15, 0.f);
  delta.at(0, 7, 7) = 1.f;
  gaussian_blur(delta, 1.f);
  double sum = 0.0;
  for (float p : delta.pixels) sum += p;
  CHECK(sum == Approx(1.0).epsilon(1e-4));
  CHECK(delta.at(0, 7, 7) < 0.2f);
  CHECK(delta.at(0, 7, 8) == Approx(delta.at(0, 8, 7)));
  CHECK(delta.at(0, 6, 7) == Approx(delta.at(0, 8, 7)));
  CHECK(delta.at(0, 7, 8) / delta.at(0, 7, 7) == Approx(std::exp(-0.5)).epsilon(1e-3));
}

TEST_CASE("multicrop returns global then local views, normalised", "[data]") {
  MultiCropConfig cfg;  // DINO's defaults: 2 x 224 then 8 x 96
  Rng rng(5);
  const std::vector<Image> views = multicrop(random_image(3, 64, 80, 1), cfg, rng);
  REQUIRE(views.size() == 10);
  for (size_t v = 0; v < views.size(); ++v) {
    CHECK(views[v].channels == 3);
    CHECK(views[v].height == (v < 2 ? 224 : 96));
    CHECK(views[v].width == views[v].height);
  }
  // With augmentations off, a constant image maps to (value - mean) / std per channel.
  MultiCropConfig id = identity_config(12, 6);
  Rng r2(0);
  const std::vector<Image> grey = multicrop(constant_image(1, 28, 28, 0.5f), id, r2);
  REQUIRE(grey.size() == 5);
  CHECK(grey[4].height == 6);
  for (const Image& v : grey)
    for (float p : v.pixels) REQUIRE(p == Approx((0.5f - 0.2860f) / 0.3530f));
  Image colour = constant_image(3, 20, 20, 0.5f);
  const std::vector<Image> col = multicrop(colour, id, r2);
  CHECK(col[0].at(0, 3, 3) == Approx((0.5f - 0.485f) / 0.229f));
  CHECK(col[2].at(2, 1, 1) == Approx((0.5f - 0.406f) / 0.225f));
  id.norm = {{0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
  CHECK(multicrop(colour, id, r2)[0].at(1, 0, 0) == Approx(0.f).margin(1e-6));
  id.norm = {{0.5f}, {0.25f}};
  require_error_naming([&] { multicrop(colour, id, r2); }, "expected 3");
  MultiCropConfig bad;
  bad.local.scale_min = 0.f;
  require_error_naming([&] { multicrop(colour, bad, r2); }, "local scale");
}

TEST_CASE("multicrop applies DINO's per-crop blur and solarize probabilities", "[data]") {
  // Full-size crops of uniform noise with only blur and solarize on; normalisation is the
  // identity so the views can be read in [0, 1]. Neighbouring pixels of noise differ by 1/3
  // on average (1/6 once solarized) and by far less once blurred; a solarized view has no
  // value above 0.5.
  MultiCropConfig cfg;
  cfg.global = {2, 32, 1.f, 1.f};
  cfg.local = {3, 32, 1.f, 1.f};
  cfg.flip_p = cfg.jitter_p = cfg.grayscale_p = 0.f;
  cfg.blur_sigma_min = cfg.blur_sigma_max = 7.f;  // sigma 1 at 32 pixels
  cfg.norm = {{0.f}, {1.f}};
  const Image img = random_image(1, 32, 32, 3);
  auto roughness = [](const Image& v) {
    double sum = 0.0;
    for (size_t i = 1; i < v.pixels.size(); ++i) sum += std::fabs(v.pixels[i] - v.pixels[i - 1]);
    return sum / double(v.pixels.size() - 1);
  };
  REQUIRE(roughness(img) > 0.3);
  const int n = 300;
  std::vector<int> blurred(5, 0), solarized(5, 0);
  for (int s = 0; s < n; ++s) {
    Rng rng = sample_rng(0, 0, uint64_t(s));
    const std::vector<Image> views = multicrop(img, cfg, rng);
    for (size_t v = 0; v < 5; ++v) {
      blurred[v] += roughness(views[v]) < 0.1;
      solarized[v] += *std::max_element(views[v].pixels.begin(), views[v].pixels.end()) <= 0.5f;
    }
  }
  CHECK(blurred[0] == n);
  CHECK(solarized[0] == 0);
  CHECK(blurred[1] > n * 0.04);
  CHECK(blurred[1] < n * 0.18);
  CHECK(solarized[1] > n * 0.12);
  CHECK(solarized[1] < n * 0.28);
  for (size_t v = 2; v < 5; ++v) {
    CHECK(blurred[v] > n * 0.4);
    CHECK(blurred[v] < n * 0.6);
    CHECK(solarized[v] == 0);
  }
}

TEST_CASE("view parameters are drawn before the pixels and applied as drawn", "[data]") {
  MultiCropConfig cfg;
  cfg.global.size = 40;
  cfg.local = {6, 16, 0.05f, 0.4f};
  const Image img = random_image(3, 37, 53, 12);
  const Normalization norm = resolve_normalization(cfg.norm, 3);
  for (int64_t index = 0; index < 40; ++index) {
    Rng a = sample_rng(5, 0, index), b = sample_rng(5, 0, index);
    const std::vector<Image> views = multicrop(img, cfg, a);
    const std::vector<ViewParams> params = draw_views(img.height, img.width, cfg, b);
    CHECK(a.state() == b.state());  // the draws are the whole of the stream multicrop uses
    REQUIRE(params.size() == views.size());
    for (size_t v = 0; v < views.size(); ++v) {
      const ViewParams& p = params[v];
      CHECK(p.size == (v < 2 ? 40 : 16));
      CHECK(p.box.top + p.box.height <= img.height);
      CHECK(p.box.left + p.box.width <= img.width);
      CHECK((p.blur_sigma == 0.f ||
             (p.blur_sigma >= 0.1f * p.size / 224.f && p.blur_sigma <= 2.f * p.size / 224.f)));
      if (v != 1) CHECK_FALSE(p.solarize);  // only DINO's second global crop solarizes
      std::set<int> ops(p.jitter_order, p.jitter_order + 4);
      CHECK(ops == std::set<int>{0, 1, 2, 3});
      REQUIRE(apply_view(img, p, norm).pixels == views[v].pixels);
    }
  }
  // DINO's probabilities: flip 0.5, jitter 0.8, grayscale 0.2 per view; blur 1, 0.1, 0.5 and
  // solarize 0, 0.2, 0 for the first global, second global and local views.
  const int n = 400;
  std::vector<double> flip(3), jitter(3), gray(3), blur(3), sol(3);
  for (int64_t index = 0; index < n; ++index) {
    Rng r = sample_rng(5, 1, index);
    const std::vector<ViewParams> p = draw_views(64, 64, cfg, r);
    for (size_t v = 0; v < p.size(); ++v) {
      const size_t kind = std::min<size_t>(v, 2);
      const double w = kind == 2 ? 1.0 / 6 : 1.0;
      flip[kind] += w * p[v].flip / n;
      jitter[kind] += w *
                      !(p[v].brightness == 1.f && p[v].contrast == 1.f && p[v].saturation == 1.f &&
                        p[v].hue == 0.f) /
                      n;
      gray[kind] += w * p[v].grayscale / n;
      blur[kind] += w * (p[v].blur_sigma > 0.f) / n;
      sol[kind] += w * p[v].solarize / n;
    }
  }
  for (size_t k = 0; k < 3; ++k) {
    CHECK(flip[k] == Approx(0.5).margin(0.08));
    CHECK(jitter[k] == Approx(0.8).margin(0.07));
    CHECK(gray[k] == Approx(0.2).margin(0.06));
  }
  CHECK(blur[0] == Approx(1.0));
  CHECK(blur[1] == Approx(0.1).margin(0.05));
  CHECK(blur[2] == Approx(0.5).margin(0.06));
  CHECK(sol[0] == 0.0);
  CHECK(sol[1] == Approx(0.2).margin(0.06));
  CHECK(sol[2] == 0.0);
}

TEST_CASE("apply_view applies each drawn operation in its order", "[data]") {
  const Image img = random_image(3, 20, 24, 7);
  const Normalization unit{{0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}};
  ViewParams p;
  p.size = 12;
  p.box = {2, 3, 15, 18};
  const Image base = resized_crop(img, 2, 3, 15, 18, 12, 12);
  CHECK(apply_view(img, p, unit).pixels == base.pixels);

  p.flip = true;
  Image flipped = base;
  hflip(flipped);
  CHECK(apply_view(img, p, unit).pixels == flipped.pixels);

  // Contrast then brightness differs from brightness then contrast once clamping bites.
  p.flip = false;
  p.brightness = 1.4f;
  p.contrast = 0.6f;
  p.hue = 0.1f;
  const uint8_t bc[4] = {kBrightness, kContrast, kSaturation, kHue};
  const uint8_t cb[4] = {kContrast, kHue, kBrightness, kSaturation};
  std::copy(bc, bc + 4, p.jitter_order);
  Image want = base;
  adjust_brightness(want, 1.4f);
  adjust_contrast(want, 0.6f);
  adjust_hue(want, 0.1f);
  CHECK(apply_view(img, p, unit).pixels == want.pixels);
  std::copy(cb, cb + 4, p.jitter_order);
  Image other = base;
  adjust_contrast(other, 0.6f);
  adjust_hue(other, 0.1f);
  adjust_brightness(other, 1.4f);
  CHECK(apply_view(img, p, unit).pixels == other.pixels);
  CHECK(other.pixels != want.pixels);

  p.grayscale = true;
  p.blur_sigma = 0.7f;
  p.solarize = true;
  to_grayscale(other);
  gaussian_blur(other, 0.7f);
  solarize(other, 0.5f);
  CHECK(apply_view(img, p, unit).pixels == other.pixels);
  const Normalization norm = resolve_normalization({}, 3);
  normalize(other, norm);
  CHECK(apply_view(img, p, norm).pixels == other.pixels);
}

TEST_CASE("multicrop randomness depends only on (seed, epoch, index)", "[data]") {
  MultiCropConfig cfg;
  cfg.global.size = 24;
  cfg.local.size = 12;
  const Image img = random_image(3, 32, 32, 9);
  Rng a = sample_rng(3, 1, 17), b = sample_rng(3, 1, 17), c = sample_rng(3, 2, 17);
  const std::vector<Image> va = multicrop(img, cfg, a), vb = multicrop(img, cfg, b),
                           vc = multicrop(img, cfg, c);
  for (size_t v = 0; v < va.size(); ++v) CHECK(va[v].pixels == vb[v].pixels);
  size_t differ = 0;
  for (size_t v = 0; v < va.size(); ++v) differ += va[v].pixels != vc[v].pixels;
  CHECK(differ == va.size());
  CHECK(va[0].pixels != va[1].pixels);  // two global crops of one image are distinct views
}

namespace {

// A JPEG of `img` (CHW in [0, 1], 1 or 3 channels) through libjpeg-turbo's encoder at
// quality 100 without chroma subsampling, so decoding gives back the pixels within a few
// levels.
std::vector<uint8_t> encode_jpeg(const Image& img) {
  const int C = img.channels, H = img.height, W = img.width;
  std::vector<uint8_t> px(size_t(C) * H * W);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < C; ++c)
        px[(size_t(y) * W + x) * C + c] = uint8_t(std::lround(img.at(c, y, x) * 255.f));
  tjhandle h = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  REQUIRE(tjCompress2(h, px.data(), W, W * C, H, C == 1 ? TJPF_GRAY : TJPF_RGB, &buf, &size,
                      C == 1 ? TJSAMP_GRAY : TJSAMP_444, 100, 0) == 0);
  std::vector<uint8_t> out(buf, buf + size);
  tjFree(buf);
  tjDestroy(h);
  return out;
}

// A smooth colour image: JPEG keeps it within a couple of levels.
Image smooth_image(int c, int h, int w) {
  Image img = make_image(c, h, w);
  for (int k = 0; k < c; ++k)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        img.at(k, y, x) = 0.5f + 0.4f * std::sin(0.05f * (x + 2 * k) + 0.03f * y * (k + 1));
  return img;
}

}  // namespace

TEST_CASE("folder JPEGs decode with libjpeg-turbo, reduced in the DCT domain on request",
          "[data]") {
  TempDir dir;
  fs::create_directories(dir.path / "a");
  fs::create_directories(dir.path / "b");
  const Image colour = smooth_image(3, 75, 100);
  write_bytes(dir.str("a/0.jpg"), encode_jpeg(colour));
  write_bytes(dir.str("b/1.JPEG"), encode_jpeg(smooth_image(3, 40, 33)));
  std::vector<uint8_t> cut = encode_jpeg(colour);
  cut.resize(cut.size() / 2);
  write_bytes(dir.str("b/2_truncated.jpg"), cut);
  auto ds = open_dataset("folder:" + dir.str(), Split::train);
  REQUIRE(ds->size() == 3);
  CHECK(ds->channels() == 3);

  const Image full = ds->get(0);
  REQUIRE(full.height == 75);
  REQUIRE(full.width == 100);
  double worst = 0.0;
  for (size_t i = 0; i < full.pixels.size(); ++i)
    worst = std::max(worst, double(std::fabs(full.pixels[i] - colour.pixels[i])));
  CHECK(worst <= 5.0 / 255);

  // The plan sees the stored size before decoding; a reduction of 2 halves it (rounded up)
  // and gives about the 2x2 means of the full decode.
  SourceImage half;
  int seen_h = 0, seen_w = 0;
  ds->load(0, half, [&](int h, int w) {
    seen_h = h;
    seen_w = w;
    return 3;  // allows 2, not 4
  });
  CHECK(seen_h == 75);
  CHECK(seen_w == 100);
  REQUIRE(half.is_u8);
  CHECK(half.height == 38);
  CHECK(half.width == 50);
  CHECK(half.full_height == 75);
  CHECK(half.full_width == 100);
  worst = 0.0;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 37; ++y)
      for (int x = 0; x < 50; ++x) {
        const double mean = (full.at(c, 2 * y, 2 * x) + full.at(c, 2 * y, 2 * x + 1) +
                             full.at(c, 2 * y + 1, 2 * x) + full.at(c, 2 * y + 1, 2 * x + 1)) /
                            4;
        worst = std::max(worst, std::fabs(half.u8[(size_t(c) * 38 + y) * 50 + x] / 255.0 - mean));
      }
  CHECK(worst < 6.0 / 255);

  require_error_naming([&] { ds->get(2); }, "2_truncated.jpg");
  std::vector<uint8_t> garbage = encode_jpeg(colour);
  for (size_t i = 200; i < garbage.size() - 2; i += 7) garbage[i] = uint8_t(i * 131);
  write_bytes(dir.str("b/2_truncated.jpg"), garbage);
  // Either an error naming the file, or an image of the stored size: never a crash. Either
  // way the next file decodes (a failed call must not leave the decoder mid-stream).
  int height = 0;
  try {
    height = ds->get(2).height;
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("2_truncated.jpg") != std::string::npos);
    height = 75;
  }
  CHECK(height == 75);
  CHECK(ds->get(0).pixels == full.pixels);

  // Greyscale JPEGs make a 1-channel folder.
  TempDir grey;
  fs::create_directories(grey.path / "x");
  write_bytes(grey.str("x/0.jpg"), encode_jpeg(smooth_image(1, 20, 30)));
  auto g = open_dataset("folder:" + grey.str(), Split::train);
  CHECK(g->channels() == 1);
  CHECK(g->get(0).width == 30);
}

TEST_CASE("the loader decodes reduced only when every view still downsamples", "[data]") {
  ViewParams v[2];
  v[0].size = 20;
  v[0].box = {0, 0, 90, 85};
  v[1].size = 10;
  v[1].box = {5, 7, 40, 45};
  CHECK(max_reduction(v, 2) == 4);  // 85 >= 4 x 20, 40 >= 4 x 10
  v[1].box.height = 39;
  CHECK(max_reduction(v, 2) == 2);
  v[0].box.width = 19;
  CHECK(max_reduction(v, 2) == 1);
  // Boxes map onto the reduced image covering the pixels they touch.
  v[0].box = {3, 5, 10, 11};
  map_to_reduced(v, 1, 75, 100, 38, 50);
  CHECK(v[0].box.top == 1);
  CHECK(v[0].box.left == 2);
  CHECK(v[0].box.height == 6);  // rows 3..12 -> 1..6
  CHECK(v[0].box.width == 6);   // columns 5..15 -> 2..7
}

TEST_CASE("loader is deterministic across thread counts, prefetch depths and resumption",
          "[data]") {
  auto ds = open_dataset("synthetic:n=44,size=16,classes=4", Split::train);
  MultiCropConfig cfg;
  cfg.global.size = 16;
  cfg.local = {4, 8, 0.05f, 0.4f};
  MultiCropLoader one(*ds, cfg, 8, 11, 1, 1);
  MultiCropLoader three(*ds, cfg, 8, 11, 3, 4);
  REQUIRE(one.batches_per_epoch() == 5);  // drop_last: 44 = 5 * 8 + 4
  one.start(2);
  three.start(2);
  std::vector<BatchCopy> full;
  std::set<int64_t> seen;
  for (int b = 0; b < 5; ++b) {
    full.push_back(next_copy(one));
    const BatchCopy& x = full.back();
    CHECK(x == next_copy(three));
    CHECK(x.epoch == 2);
    CHECK(x.index == b);
    REQUIRE(x.views.size() == 6);
    CHECK(x.view_sizes == std::vector<int>{16, 16, 8, 8, 8, 8});
    CHECK(x.views[0].size() == size_t(8 * 16 * 16));
    CHECK(x.views[5].size() == size_t(8 * 8 * 8));
    for (int i = 0; i < 8; ++i) {
      CHECK(x.labels[size_t(i)] == ds->label(size_t(x.indices[size_t(i)])));
      seen.insert(x.indices[size_t(i)]);
    }
  }
  CHECK(seen.size() == 40);
  // The stream runs on into the next epoch; start() there keeps what was prefetched.
  const BatchCopy after = next_copy(one);
  CHECK(after.epoch == 3);
  CHECK(after.index == 0);

  // Sample i of a batch is exactly multicrop of its image with sample_rng(seed, epoch, index).
  const int64_t idx = full[1].indices[3];
  Rng rng = sample_rng(11, 2, idx);
  const std::vector<Image> views = multicrop(ds->get(size_t(idx)), cfg, rng);
  const std::vector<float> first(full[1].views[2].begin() + 3 * 64,
                                 full[1].views[2].begin() + 4 * 64);
  CHECK(first == views[2].pixels);

  three.start(2, 3);  // resume mid-epoch
  CHECK(next_copy(three) == full[3]);
  CHECK(next_copy(three) == full[4]);
  three.start(3);  // where the stream already is
  CHECK(next_copy(three) == after);
  three.start(2, 1);  // abandon epoch 3 mid-way
  CHECK(next_copy(three) == full[1]);
  CHECK(epoch_order(44, 11, 2) != epoch_order(44, 11, 3));

  // Leases: the caller holds at most max_held batches; buffers come back when released.
  MultiCropLoader::Lease a = three.next(), b = three.next();
  require_error_naming([&] { three.next(); }, "max_held");
  const BatchCopy kept = copy_batch(*b);
  a.reset();
  const BatchCopy c = next_copy(three);
  CHECK(copy_batch(*b) == kept);  // a held batch is not overwritten while others are made
  CHECK(c == full[4]);
}

TEST_CASE("sharded loaders together draw one loader's batches of ranks x the batch size",
          "[data]") {
  // 47 images over 3 ranks: each rank's share is 15 (drop_last cuts 2), 3 batches of 4 each;
  // one loader with batch 12 also has 47 / 12 = 3.
  auto ds = open_dataset("synthetic:n=47,size=16,classes=4", Split::train);
  MultiCropConfig cfg;
  cfg.global.size = 16;
  cfg.local = {2, 8, 0.05f, 0.4f};
  const int ranks = 3, per_rank = 4;
  MultiCropLoader whole(*ds, cfg, ranks * per_rank, 5, 2);
  std::vector<std::unique_ptr<MultiCropLoader>> shards;
  for (int r = 0; r < ranks; ++r) {
    LoaderOptions o;
    o.threads = 1 + r;  // the stream does not depend on it
    o.rank = r;
    o.ranks = ranks;
    shards.push_back(std::make_unique<MultiCropLoader>(*ds, cfg, per_rank, 5, o));
    REQUIRE(shards.back()->batches_per_epoch() == 3);
  }
  REQUIRE(whole.batches_per_epoch() == 3);
  for (int epoch : {0, 1}) {
    whole.start(epoch);
    for (auto& s : shards) s->start(epoch);
    for (int b = 0; b < 3; ++b) {
      const BatchCopy w = next_copy(whole);
      for (int r = 0; r < ranks; ++r) {
        const BatchCopy x = next_copy(*shards[size_t(r)]);
        CHECK(x.epoch == epoch);
        CHECK(x.index == b);
        // Sample i of rank r is sample r + ranks * i of the whole batch, views and all.
        for (int i = 0; i < per_rank; ++i) {
          const size_t g = size_t(r + ranks * i);
          REQUIRE(x.indices[size_t(i)] == w.indices[g]);
          CHECK(x.labels[size_t(i)] == w.labels[g]);
          for (size_t v = 0; v < x.views.size(); ++v) {
            const size_t n = x.views[v].size() / per_rank;
            CHECK(std::equal(x.views[v].begin() + ptrdiff_t(i * n),
                             x.views[v].begin() + ptrdiff_t((i + 1) * n),
                             w.views[v].begin() + ptrdiff_t(g * n)));
          }
        }
      }
    }
  }
  LoaderOptions bad;
  bad.rank = 3;
  bad.ranks = 3;
  require_error_naming([&] { MultiCropLoader(*ds, cfg, 4, 5, bad); }, "rank 3 of 3");
  bad.rank = 0;
  require_error_naming([&] { MultiCropLoader(*ds, cfg, 16, 5, bad); }, "on each of 3 ranks");
}

TEST_CASE("loader hands views over as bytes, through a caller's allocator", "[data]") {
  auto ds = open_dataset("synthetic:n=40,size=20,classes=4,channels=3", Split::train);
  MultiCropConfig cfg;
  cfg.global.size = 20;
  cfg.local = {3, 12, 0.05f, 0.4f};
  std::atomic<int> allocated{0}, released{0};
  LoaderOptions opt;
  opt.threads = 2;
  opt.format = CropFormat::u8;
  opt.allocator.allocate = [&](size_t bytes) {
    ++allocated;
    return ::operator new(bytes);
  };
  opt.allocator.release = [&](void* p) {
    ++released;
    ::operator delete(p);
  };
  {
    MultiCropLoader bytes(*ds, cfg, 4, 5, opt);
    MultiCropLoader floats(*ds, cfg, 4, 5, 1);
    CHECK(allocated == bytes.prefetch() + opt.max_held);  // the whole pool, once
    bytes.start(0);
    floats.start(0);
    for (int k = 0; k < 12; ++k) {  // more batches than the pool holds, across epochs
      const MultiCropLoader::Lease u = bytes.next(), f = floats.next();
      REQUIRE(u->format == CropFormat::u8);
      require_error_naming([&] { u->view_f32(0); }, "u8");
      CHECK(u->indices == f->indices);
      for (size_t v = 0; v < u->views.size(); ++v) {
        const size_t n = u->view_values(v), plane = size_t(u->view_sizes[v]) * u->view_sizes[v];
        std::vector<float> normalised(n);
        for (int i = 0; i < u->batch; ++i)
          normalize_bytes(u->view_u8(v) + size_t(i) * 3 * plane, 3, plane, u->norm,
                          normalised.data() + size_t(i) * 3 * plane);
        double worst = 0.0;
        for (size_t j = 0; j < n; ++j)
          worst = std::max(worst, double(std::fabs(normalised[j] - f->view_f32(v)[j])));
        CHECK(worst <= 0.5 / 255 / 0.224 + 1e-5);  // half a byte step over the smallest std
        CHECK(worst > 0.0);
      }
    }
    CHECK(allocated == bytes.prefetch() + opt.max_held);
  }
  CHECK(released == allocated);
}

TEST_CASE("loader rethrows a worker's error in order and shuts down mid-epoch", "[data]") {
  auto inner = open_dataset("synthetic:n=64,size=12,classes=4", Split::train);
  const std::vector<int64_t> order = epoch_order(64, 1, 0);
  const size_t bad = size_t(order[20]);  // sample 20 sits in batch 2 of 8
  FailingDataset ds(*inner, bad);
  MultiCropConfig cfg = identity_config(12, 6);
  MultiCropLoader loader(ds, cfg, 8, 1, 2, 3);
  loader.start(0);
  CHECK(loader.next()->indices[0] == order[0]);
  CHECK(loader.next()->indices[0] == order[8]);
  require_error_naming([&] { loader.next(); }, str_cat("corrupt_", bad, ".png"));

  MultiCropLoader early(*inner, cfg, 8, 1, 2, 2);
  early.start(0);
  early.next();  // the destructor then joins workers that are mid-epoch
  require_error_naming([&] { MultiCropLoader(*inner, cfg, 100, 1, 1); }, "fewer images");
}

TEST_CASE("eval_transform resizes the short side, centre-crops and normalises", "[data]") {
  const Normalization norm;  // Fashion-MNIST defaults for one channel
  const Image same = random_image(1, 28, 28, 4);
  const Image t = eval_transform(same, 28, norm);
  REQUIRE(t.height == 28);
  for (size_t i = 0; i < t.pixels.size(); ++i)
    REQUIRE(t.pixels[i] == Approx((same.pixels[i] - 0.2860f) / 0.3530f));

  const Image wide = constant_image(3, 40, 90, 0.25f);
  const Image w = eval_transform(wide, 28, {});
  CHECK(w.channels == 3);
  CHECK(w.height == 28);
  CHECK(w.width == 28);
  CHECK(w.at(1, 10, 10) == Approx((0.25f - 0.456f) / 0.224f));

  // Left half dark, right half bright: the centre crop of a symmetric layout stays symmetric.
  Image split_img = make_image(1, 64, 48);
  for (int y = 0; y < 64; ++y)
    for (int x = 24; x < 48; ++x) split_img.at(0, y, x) = 1.f;
  const Image s = eval_transform(split_img, 14, {{0.f}, {1.f}});
  REQUIRE(s.width == 14);
  CHECK(s.at(0, 5, 0) == Approx(0.f).margin(1e-6));
  CHECK(s.at(0, 5, 13) == Approx(1.f));
  CHECK(s.at(0, 5, 6) + s.at(0, 5, 7) == Approx(1.f));

  auto ds = open_dataset("synthetic:n=10,size=20,channels=3", Split::test);
  const std::vector<float> batch = eval_batch(*ds, 0, 2, 16, {});
  REQUIRE(batch.size() == size_t(2 * 3 * 16 * 16));
  const Image second = eval_transform(ds->get(1), 16, {});
  CHECK(std::vector<float>(batch.begin() + 768, batch.end()) == second.pixels);
  require_error_naming([&] { eval_batch(*ds, 1, 5, 16, {}); }, "outside");
}
