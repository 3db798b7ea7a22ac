// ImageFolder layout: DIR/<class>/<image>, classes sorted by name, images decoded on demand:
// JPEG with libjpeg-turbo (data/image_jpeg.h), PNG and BMP with stb_image. DIR/train and DIR/test,
// when both exist, hold the two splits with the class list taken from train so labels agree. A DIR
// with images and no subdirectories is an unlabelled dataset.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC  // private copy: another TU may include its own implementation
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
// Debian's stb_image copies zero bytes from a null pointer for an empty PNG chunk (memcpy's
// arguments are declared non-null, so UBSan stops there; found by fuzz/fuzz_image.cpp). It
// is harmless and not ours to fix: the sanitizer builds (clang) skip that one check in stb's
// functions only.
#ifdef __clang__
#pragma clang attribute push(__attribute__((no_sanitize("nonnull-attribute"))), apply_to = function)
#endif
#include <stb/stb_image.h>
#ifdef __clang__
#pragma clang attribute pop
#endif

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/datasets.h"
#include "data/image_jpeg.h"

namespace dino::data {
namespace {

namespace fs = std::filesystem;

bool is_image(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

std::vector<fs::path> sorted_entries(const fs::path& dir, bool want_dirs) {
  std::error_code ec;
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.filename().string().rfind('.', 0) == 0) continue;  // hidden files, .DS_Store
    if (want_dirs ? it->is_directory() : (it->is_regular_file() && is_image(p))) out.push_back(p);
  }
  DINO_CHECK(!ec, "[folder] cannot list ", dir.string(), ": ", ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

void read_bytes(const std::string& path, std::vector<uint8_t>& bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  DINO_CHECK(in.good(), "[folder] cannot open ", path);
  const std::streamoff size = in.tellg();
  DINO_CHECK(size >= 0, "[folder] cannot read ", path);
  bytes.resize(size_t(size));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  DINO_CHECK(in.good() || (in.eof() && in.gcount() == size), "[folder] cannot read ", path);
}

// A header may claim any size: a damaged file, or a few hundred bytes made to claim millions
// of pixels (a decompression bomb), would take seconds and gigabytes to decode. No format stb
// or libjpeg-turbo reads packs more than ~8,256 pixels into a byte (PNG: deflate's ~1,032:1 of
// 1-bit pixels; RLE, LZW and JPEG's Huffman-coded blocks less), and no training image is wider
// or taller than JPEG's 65,535.
void check_claimed_size(int w, int h, size_t file_bytes, const std::string& path, const char* who) {
  constexpr double kMaxPixelsPerByte = 8256;
  constexpr int kMaxSide = 65535;
  DINO_CHECK(w > 0 && h > 0 && w <= kMaxSide && h <= kMaxSide, "[", who, "] ", path, " claims ", w,
             " x ", h, " pixels; at most ", kMaxSide, " per side are read");
  DINO_CHECK(double(w) * double(h) <= kMaxPixelsPerByte * double(file_bytes), "[", who, "] ", path,
             " claims ", w, " x ", h, " pixels, more than its ", file_bytes,
             " bytes can hold: the file is damaged");
}

// stb_image grows its buffer for a PNG's compressed data to each chunk's claimed length before
// reading it, so 100 bytes claiming a 1 GB chunk allocate 2 GB (found by fuzz/fuzz_image.cpp).
// No chunk of a real file claims more bytes than the file has left after its 8-byte header.
void check_png_chunks(const uint8_t* bytes, size_t size, const std::string& path, const char* who) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size < 8 || !std::equal(kSignature, kSignature + 8, bytes)) return;
  for (size_t at = 8; at + 8 <= size;) {
    const uint32_t length = uint32_t(bytes[at]) << 24 | uint32_t(bytes[at + 1]) << 16 |
                            uint32_t(bytes[at + 2]) << 8 | uint32_t(bytes[at + 3]);
    const size_t left = size - at - 8;
    DINO_CHECK(length <= left, "[", who, "] ", path, ": PNG chunk at byte ", at, " claims ", length,
               " bytes, more than the ", left, " left in the file: the file is damaged");
    if (std::equal(bytes + at + 4, bytes + at + 8, "IEND")) return;
    at += 12 + size_t(length);  // length, type, data, CRC
  }
}

// One image file as stored (JPEG reduced by the largest power of 2, at most 8, that `plan`
// allows); `who` names the caller in messages ("folder", "image").
void load_source(const std::string& path, int channels, const ReductionPlan& plan, SourceImage& out,
                 const char* who) {
  read_bytes(path, out.file);
  const uint8_t* bytes = out.file.data();
  const size_t size = out.file.size();
  if (is_jpeg(bytes, size)) {
    const JpegHeader header = read_jpeg_header(bytes, size, path);
    check_claimed_size(header.width, header.height, size, path, who);
    const int allowed = plan(header.height, header.width);
    int reduction = 1;
    while (reduction < 8 && reduction * 2 <= allowed) reduction *= 2;
    decode_jpeg(bytes, size, channels, reduction, path, out);
    return;
  }
  check_png_chunks(bytes, size, path, who);
  int w = 0, h = 0, comp = 0;
  DINO_CHECK(stbi_info_from_memory(bytes, int(size), &w, &h, &comp), "[", who, "] cannot decode ",
             path, ": ", stbi_failure_reason());
  check_claimed_size(w, h, size, path, who);
  plan(h, w);
  uint8_t* data = stbi_load_from_memory(bytes, int(size), &w, &h, &comp, channels);
  DINO_CHECK(data != nullptr, "[", who, "] cannot decode ", path, ": ", stbi_failure_reason());
  const size_t plane = size_t(h) * w;
  out.u8.resize(plane * channels);
  for (int c = 0; c < channels; ++c)
    for (size_t i = 0; i < plane; ++i) out.u8[c * plane + i] = data[i * channels + c];
  stbi_image_free(data);
  out.is_u8 = true;
  out.channels = channels;
  out.height = out.full_height = h;
  out.width = out.full_width = w;
}

Image decode(const std::string& path, int channels, const char* who) {
  SourceImage src;
  load_source(
      path, channels, [](int, int) { return 1; }, src, who);
  Image img;
  to_float(src, img);
  return img;
}

class ImageFolder : public Dataset {
 public:
  ImageFolder(const std::string& dir, Split split) : root_(dir), split_(split) {
    DINO_CHECK(fs::is_directory(dir), "[folder] directory not found: ", dir);
    const fs::path train = fs::path(dir) / "train", test = fs::path(dir) / "test";
    const bool split_dirs = fs::is_directory(train) && fs::is_directory(test);
    const fs::path base = split_dirs ? (split == Split::train ? train : test) : fs::path(dir);
    for (const fs::path& d : sorted_entries(split_dirs ? train : base, true))
      classes_.push_back(d.filename().string());

    if (classes_.empty()) {
      files_ = sorted_entries(base, false);
    } else {
      for (const fs::path& d : sorted_entries(base, true)) {
        const std::string name = d.filename().string();
        const auto it = std::lower_bound(classes_.begin(), classes_.end(), name);
        DINO_CHECK(it != classes_.end() && *it == name, "[folder] class directory ", d.string(),
                   " has no counterpart in ", train.string());
        const int label = int(it - classes_.begin());
        for (fs::path& f : sorted_entries(d, false)) {
          files_.push_back(std::move(f));
          labels_.push_back(label);
        }
      }
    }
    DINO_CHECK(!files_.empty(), "[folder] no images (*.png, *.jpg, *.jpeg, *.bmp) found in ",
               base.string(), classes_.empty() ? "" : " or its class subdirectories");
    channels_ = probe_channels();
  }

  size_t size() const override { return files_.size(); }
  int num_classes() const override { return int(classes_.size()); }
  int channels() const override { return channels_; }
  int native_size() const override { return 0; }  // unknown without decoding every file

  int label(size_t index) const override {
    check_index(index);
    return labels_.empty() ? -1 : labels_[index];
  }

  Image get(size_t index) const override {
    check_index(index);
    return decode(files_[index].string(), channels_, "folder");
  }

  void load(size_t index, SourceImage& out, const ReductionPlan& plan) const override {
    check_index(index);
    load_source(files_[index].string(), channels_, plan, out, "folder");
  }

  std::string path(size_t index) const override {
    check_index(index);
    return files_[index].string();
  }

  std::string class_name(int label) const override {
    return label >= 0 && size_t(label) < classes_.size() ? classes_[size_t(label)]
                                                         : Dataset::class_name(label);
  }

  std::string describe() const override {
    return str_cat(
        "folder ", root_, " ", split_name(split_), " (", files_.size(), " images, variable size, ",
        channels_, " channel", channels_ == 1 ? "" : "s", ", ",
        classes_.empty() ? std::string("unlabelled") : str_cat(classes_.size(), " classes"), ")");
  }

 private:
  void check_index(size_t index) const {
    DINO_CHECK(index < files_.size(), "[folder] index ", index, " out of range (", files_.size(),
               " images in ", root_, ")");
  }

  // One channel only if the first image of every class is greyscale: decoding every file at
  // open would be too slow for large folders, and colour is the safe answer for a mixed set.
  int probe_channels() const {
    int last_label = -2;
    for (size_t i = 0; i < files_.size(); ++i) {
      const int lab = labels_.empty() ? -1 : labels_[i];
      if (lab == last_label) continue;
      last_label = lab;
      const std::string path = files_[i].string();
      std::vector<uint8_t> bytes;
      read_bytes(path, bytes);
      if (is_jpeg(bytes.data(), bytes.size())) {
        if (read_jpeg_header(bytes.data(), bytes.size(), path).channels == 3) return 3;
        continue;
      }
      int w = 0, h = 0, comp = 0;
      DINO_CHECK(stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &comp),
                 "[folder] cannot decode ", path, ": ", stbi_failure_reason());
      if (comp >= 3) return 3;
    }
    return 1;
  }

  std::string root_;
  Split split_;
  std::vector<std::string> classes_;
  std::vector<fs::path> files_;
  std::vector<int> labels_;  // empty when unlabelled
  int channels_ = 3;
};

// Image files named one by one (`dino embed --image`): unlabelled, in the order given.
class ImageFiles : public Dataset {
 public:
  ImageFiles(std::vector<std::string> paths, int channels)
      : paths_(std::move(paths)), channels_(channels) {
    DINO_CHECK(!paths_.empty(), "[image] no image files given");
    DINO_CHECK(channels == 1 || channels == 3, "[image] channels must be 1 or 3, got ", channels);
    for (const std::string& p : paths_) {
      std::error_code ec;
      DINO_CHECK(fs::is_regular_file(p, ec), "[image] file not found: ", p);
    }
  }
  size_t size() const override { return paths_.size(); }
  Image get(size_t index) const override { return decode(path(index), channels_, "image"); }
  int label(size_t index) const override { return -1; }
  int num_classes() const override { return 0; }
  int channels() const override { return channels_; }
  int native_size() const override { return 0; }
  std::string path(size_t index) const override {
    DINO_CHECK(index < paths_.size(), "[image] index ", index, " out of range (", paths_.size(),
               " files)");
    return paths_[index];
  }
  std::string describe() const override {
    return str_cat(paths_.size(), " image file", paths_.size() == 1 ? "" : "s", " (", channels_,
                   " channel", channels_ == 1 ? "" : "s", ")");
  }

 private:
  std::vector<std::string> paths_;
  int channels_;
};

}  // namespace

std::unique_ptr<Dataset> open_image_files(const std::vector<std::string>& paths, int channels) {
  return std::make_unique<ImageFiles>(paths, channels);
}

Image read_image_file(const std::string& path, int channels) {
  DINO_CHECK(channels == 1 || channels == 3, "[image] channels must be 1 or 3, got ", channels);
  return decode(path, channels, "image");
}

std::unique_ptr<Dataset> open_image_folder(const std::string& dir, Split split) {
  return std::make_unique<ImageFolder>(dir, split);
}

}  // namespace dino::data
