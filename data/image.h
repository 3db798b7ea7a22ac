#pragma once
// Images as the data layer passes them: CHW float. Datasets produce values in [0, 1];
// normalisation is the last augmentation step and the only one that leaves that range.
// Image stays an aggregate so callers can brace-initialise it.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dino::data {

struct Image {
  int channels = 0, height = 0, width = 0;
  std::vector<float> pixels;  // CHW

  size_t plane() const { return size_t(height) * size_t(width); }
  float* channel(int c) { return pixels.data() + size_t(c) * plane(); }
  const float* channel(int c) const { return pixels.data() + size_t(c) * plane(); }
  float& at(int c, int y, int x) { return channel(c)[size_t(y) * width + x]; }
  float at(int c, int y, int x) const { return channel(c)[size_t(y) * width + x]; }
};

// An image as a dataset stores it, before any augmentation: 8-bit (files, IDX, CIFAR) or float
// in [0, 1] (procedural data), channel-planar either way. Loading reuses its buffers.
struct SourceImage {
  int channels = 0, height = 0, width = 0;  // as decoded
  int full_height = 0, full_width = 0;      // as stored: larger when a JPEG was decoded reduced
  bool is_u8 = true;
  std::vector<uint8_t> u8;                 // CHW, when is_u8
  Image f32;                               // when !is_u8
  std::vector<uint8_t> file, interleaved;  // the decoder's buffers
};

Image make_image(int channels, int height, int width, float fill = 0.f);
// The source as CHW floats in [0, 1] (bytes scaled by 1/255), into dst's buffer.
void to_float(const SourceImage& src, Image& dst);
// The image as bytes round(255 x), x clamped to [0, 1] (values written in img's layout).
void to_bytes(const Image& img, uint8_t* out);
// chw holds channels*height*width bytes, channel-planar; scaled by 1/255.
Image image_from_u8(const uint8_t* chw, int channels, int height, int width);

// Crops the region (top, left, height, width) and resamples it to (out_h, out_w) the way
// PIL's BICUBIC resize does (a = -0.5, kernel widened by the scale when shrinking, so
// downsampling is antialiased; taps clipped to the region), which is what torchvision's
// RandomResizedCrop does on the PIL images DINO feeds it. Results are clamped to [0, 1].
Image resized_crop(const Image& src, int top, int left, int height, int width, int out_h,
                   int out_w);

// Per output position of one axis: the first input index and `count` normalised weights
// (row stride `ksize`).
struct ResizeTaps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<float> weight;
  std::vector<double> raw;
};
// The buffers of resized_crop, kept from one call to the next so a warm caller allocates
// nothing.
struct ResizeScratch {
  ResizeTaps tx, ty;
  std::vector<int> block_taps, block_first;
  std::vector<float> block_weight, columns, rows;
};
// The same into `dst`, whose buffer is reused.
void resized_crop(const Image& src, int top, int left, int height, int width, int out_h, int out_w,
                  Image& dst, ResizeScratch& scratch);
Image resize(const Image& src, int out_h, int out_w);
Image crop(const Image& src, int top, int left, int height, int width);
void hflip(Image& img);

}  // namespace dino::data
