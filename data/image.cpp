#include "data/image.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dino::data {

Image make_image(int channels, int height, int width, float fill) {
  DINO_CHECK(channels > 0 && height > 0 && width > 0, "[image] invalid shape ", channels, "x",
             height, "x", width);
  Image img;
  img.channels = channels;
  img.height = height;
  img.width = width;
  img.pixels.assign(size_t(channels) * height * width, fill);
  return img;
}

Image image_from_u8(const uint8_t* chw, int channels, int height, int width) {
  Image img = make_image(channels, height, width);
  constexpr float kInv255 = 1.f / 255.f;
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = chw[i] * kInv255;
  return img;
}

namespace {

double bicubic(double x) {
  constexpr double a = -0.5;  // PIL's choice; torch's tensor bicubic uses -0.75
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Per output position: the first input index and `count` normalised weights (stride `ksize`).
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<float> weight;
};

// Mirrors PIL's precompute_coeffs (Resample.c) over the region [in0, in0 + in_size).
Taps make_taps(int in0, int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  Taps t;
  t.ksize = int(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weight.assign(size_t(out_size) * t.ksize, 0.f);
  std::vector<double> w(t.ksize);
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(int(center - support + 0.5), 0);
    const int hi = std::min(int(center + support + 0.5), in_size);
    double total = 0.0;
    for (int x = lo; x < hi; ++x) {
      w[x - lo] = bicubic((x - center + 0.5) / filter_scale);
      total += w[x - lo];
    }
    for (int x = lo; x < hi; ++x)
      t.weight[size_t(o) * t.ksize + (x - lo)] = float(total != 0.0 ? w[x - lo] / total : 0.0);
    t.first[o] = in0 + lo;
    t.count[o] = hi - lo;
  }
  return t;
}

}  // namespace

Image resized_crop(const Image& src, int top, int left, int height, int width, int out_h,
                   int out_w) {
  DINO_CHECK(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= src.height &&
                 left + width <= src.width,
             "[resized_crop] region (", top, ", ", left, ", ", height, "x", width,
             ") outside a ", src.height, "x", src.width, " image");
  DINO_CHECK(out_h > 0 && out_w > 0, "[resized_crop] invalid output size ", out_h, "x", out_w);
  const Taps tx = make_taps(left, width, out_w);
  const Taps ty = make_taps(top, height, out_h);
  const int C = src.channels;
  // Horizontal pass over the region's rows only, then vertical: PIL's order.
  std::vector<float> tmp(size_t(C) * height * out_w);
  for (int c = 0; c < C; ++c) {
    for (int y = 0; y < height; ++y) {
      const float* row = src.channel(c) + size_t(top + y) * src.width;
      float* out = tmp.data() + (size_t(c) * height + y) * out_w;
      for (int x = 0; x < out_w; ++x) {
        const float* w = &tx.weight[size_t(x) * tx.ksize];
        const float* in = row + tx.first[x];
        float acc = 0.f;
        for (int k = 0; k < tx.count[x]; ++k) acc += w[k] * in[k];
        out[x] = acc;
      }
    }
  }
  Image dst = make_image(C, out_h, out_w);
  for (int c = 0; c < C; ++c) {
    const float* plane = tmp.data() + size_t(c) * height * out_w;
    for (int y = 0; y < out_h; ++y) {
      float* out = dst.channel(c) + size_t(y) * out_w;
      const float* w = &ty.weight[size_t(y) * ty.ksize];
      const int first = ty.first[y] - top;
      std::fill(out, out + out_w, 0.f);
      for (int k = 0; k < ty.count[y]; ++k) {
        const float* in = plane + size_t(first + k) * out_w;
        const float wk = w[k];
        for (int x = 0; x < out_w; ++x) out[x] += wk * in[x];
      }
      for (int x = 0; x < out_w; ++x) out[x] = std::min(std::max(out[x], 0.f), 1.f);
    }
  }
  return dst;
}

Image resize(const Image& src, int out_h, int out_w) {
  return resized_crop(src, 0, 0, src.height, src.width, out_h, out_w);
}

Image crop(const Image& src, int top, int left, int height, int width) {
  DINO_CHECK(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= src.height &&
                 left + width <= src.width,
             "[crop] region (", top, ", ", left, ", ", height, "x", width, ") outside a ",
             src.height, "x", src.width, " image");
  Image dst = make_image(src.channels, height, width);
  for (int c = 0; c < src.channels; ++c)
    for (int y = 0; y < height; ++y) {
      const float* in = src.channel(c) + size_t(top + y) * src.width + left;
      std::copy(in, in + width, dst.channel(c) + size_t(y) * width);
    }
  return dst;
}

void hflip(Image& img) {
  for (int c = 0; c < img.channels; ++c)
    for (int y = 0; y < img.height; ++y) {
      float* row = img.channel(c) + size_t(y) * img.width;
      std::reverse(row, row + img.width);
    }
}

}  // namespace dino::data
