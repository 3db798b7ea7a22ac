#include "data/augment.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dino::data {
namespace {

inline float clamp01(float x) { return std::min(std::max(x, 0.f), 1.f); }

// Python's round(): ties to even, which the default floating-point rounding mode gives.
inline int round_half_even(double x) { return int(std::nearbyint(x)); }

float grayscale_mean(const Image& img) {
  const size_t n = img.plane();
  double sum = 0.0;
  if (img.channels == 3) {
    const float *r = img.channel(0), *g = img.channel(1), *b = img.channel(2);
    for (size_t i = 0; i < n; ++i) sum += luminance(r[i], g[i], b[i]);
  } else {
    for (size_t i = 0; i < n; ++i) sum += img.pixels[i];
  }
  return float(sum / double(n));
}

// torchvision's _rgb2hsv / _hsv2rgb, for one pixel.
void shift_hue(float& r, float& g, float& b, float shift) {
  const float maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
  const float range = maxc - minc;
  if (range <= 0.f) return;  // grey pixels have no hue to shift
  const float s = range / maxc;
  const float rc = (maxc - r) / range, gc = (maxc - g) / range, bc = (maxc - b) / range;
  float h;
  if (maxc == r) h = bc - gc;
  else if (maxc == g) h = 2.f + rc - bc;
  else h = 4.f + gc - rc;
  h = h / 6.f + 1.f + shift;
  h -= std::floor(h);
  const float v = maxc;
  const float h6 = h * 6.f;
  const int i = int(h6) % 6;
  const float f = h6 - std::floor(h6);
  const float p = clamp01(v * (1.f - s)), q = clamp01(v * (1.f - s * f)),
              t = clamp01(v * (1.f - s * (1.f - f)));
  switch (i) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
  }
}

}  // namespace

Normalization default_normalization(int channels) {
  if (channels == 1) return {{0.2860f}, {0.3530f}};
  return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
}

Normalization resolve_normalization(const Normalization& norm, int channels) {
  DINO_CHECK(channels == 1 || channels == 3, "[normalize] images must have 1 or 3 channels, got ",
             channels);
  if (norm.mean.empty() && norm.std.empty()) return default_normalization(channels);
  DINO_CHECK(norm.mean.size() == size_t(channels) && norm.std.size() == size_t(channels),
             "[normalize] mean has ", norm.mean.size(), " and std ", norm.std.size(),
             " values, expected ", channels, " (one per channel)");
  for (float s : norm.std) DINO_CHECK(s > 0.f, "[normalize] std must be positive, got ", s);
  return norm;
}

void normalize(Image& img, const Normalization& norm) {
  const size_t n = img.plane();
  for (int c = 0; c < img.channels; ++c) {
    const float m = norm.mean[c], inv = 1.f / norm.std[c];
    float* p = img.channel(c);
    for (size_t i = 0; i < n; ++i) p[i] = (p[i] - m) * inv;
  }
}

CropBox random_resized_crop_box(int height, int width, float scale_min, float scale_max, Rng& rng,
                                float ratio_min, float ratio_max) {
  const double area = double(height) * width;
  const double log_lo = std::log(double(ratio_min)), log_hi = std::log(double(ratio_max));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(scale_min, scale_max);
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    const int w = round_half_even(std::sqrt(target * aspect));
    const int h = round_half_even(std::sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int top = int(rng.below(uint64_t(height - h + 1)));
      const int left = int(rng.below(uint64_t(width - w + 1)));
      return {top, left, h, w};
    }
  }
  const double in_ratio = double(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio_min) {
    h = round_half_even(w / double(ratio_min));
  } else if (in_ratio > ratio_max) {
    w = round_half_even(h * double(ratio_max));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

float luminance(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

void adjust_brightness(Image& img, float factor) {
  for (float& x : img.pixels) x = clamp01(x * factor);
}

void adjust_contrast(Image& img, float factor) {
  const float offset = (1.f - factor) * grayscale_mean(img);
  for (float& x : img.pixels) x = clamp01(factor * x + offset);
}

void adjust_saturation(Image& img, float factor) {
  if (img.channels != 3) return;
  float *r = img.channel(0), *g = img.channel(1), *b = img.channel(2);
  for (size_t i = 0, n = img.plane(); i < n; ++i) {
    const float gray = (1.f - factor) * luminance(r[i], g[i], b[i]);
    r[i] = clamp01(factor * r[i] + gray);
    g[i] = clamp01(factor * g[i] + gray);
    b[i] = clamp01(factor * b[i] + gray);
  }
}

void adjust_hue(Image& img, float shift) {
  if (img.channels != 3) return;
  float *r = img.channel(0), *g = img.channel(1), *b = img.channel(2);
  for (size_t i = 0, n = img.plane(); i < n; ++i) shift_hue(r[i], g[i], b[i], shift);
}

void to_grayscale(Image& img) {
  if (img.channels != 3) return;
  float *r = img.channel(0), *g = img.channel(1), *b = img.channel(2);
  for (size_t i = 0, n = img.plane(); i < n; ++i) r[i] = g[i] = b[i] = luminance(r[i], g[i], b[i]);
}

void draw_color_jitter(const ColorJitterParams& p, Rng& rng, ViewParams& view) {
  int order[4] = {kBrightness, kContrast, kSaturation, kHue};
  for (int i = 3; i > 0; --i) std::swap(order[i], order[rng.below(uint64_t(i + 1))]);
  for (int i = 0; i < 4; ++i) view.jitter_order[i] = uint8_t(order[i]);
  // A zero strength disables that adjustment without a draw, as torchvision's None does.
  view.brightness = p.brightness > 0 ? float(rng.uniform(1.0 - p.brightness, 1.0 + p.brightness)) : 1.f;
  view.contrast = p.contrast > 0 ? float(rng.uniform(1.0 - p.contrast, 1.0 + p.contrast)) : 1.f;
  view.saturation = p.saturation > 0 ? float(rng.uniform(1.0 - p.saturation, 1.0 + p.saturation)) : 1.f;
  view.hue = p.hue > 0 ? float(rng.uniform(-p.hue, p.hue)) : 0.f;
}

void color_jitter(Image& img, const ViewParams& view) {
  // Skipping an identity factor changes nothing (x * 1 and 1 * x + 0 are exact), except that a
  // hue of exactly 0 skips the HSV round trip, whose rounding torchvision would apply.
  for (uint8_t op : view.jitter_order) {
    if (op == kBrightness && view.brightness != 1.f) adjust_brightness(img, view.brightness);
    if (op == kContrast && view.contrast != 1.f) adjust_contrast(img, view.contrast);
    if (op == kSaturation && view.saturation != 1.f) adjust_saturation(img, view.saturation);
    if (op == kHue && view.hue != 0.f) adjust_hue(img, view.hue);
  }
}

void gaussian_blur(Image& img, float sigma) {
  DINO_CHECK(sigma > 0.f, "[gaussian_blur] sigma must be positive, got ", sigma);
  const int radius = int(std::ceil(3.f * sigma));
  std::vector<float> kernel(2 * radius + 1);
  float total = 0.f;
  for (int k = -radius; k <= radius; ++k)
    total += kernel[k + radius] = std::exp(-0.5f * float(k * k) / (sigma * sigma));
  for (float& k : kernel) k /= total;

  const int H = img.height, W = img.width;
  std::vector<float> padded(size_t(W) + 2 * radius), tmp(img.plane());
  for (int c = 0; c < img.channels; ++c) {
    float* plane = img.channel(c);
    for (int y = 0; y < H; ++y) {  // horizontal pass, edges replicated through the padding
      const float* row = plane + size_t(y) * W;
      for (int x = -radius; x < W + radius; ++x)
        padded[x + radius] = row[std::min(std::max(x, 0), W - 1)];
      float* out = tmp.data() + size_t(y) * W;
      for (int x = 0; x < W; ++x) {
        float acc = 0.f;
        for (int k = 0; k <= 2 * radius; ++k) acc += kernel[k] * padded[x + k];
        out[x] = acc;
      }
    }
    for (int y = 0; y < H; ++y) {  // vertical pass, row by row so the inner loop is contiguous
      float* out = plane + size_t(y) * W;
      std::fill(out, out + W, 0.f);
      for (int k = -radius; k <= radius; ++k) {
        const float* in = tmp.data() + size_t(std::min(std::max(y + k, 0), H - 1)) * W;
        const float wk = kernel[k + radius];
        for (int x = 0; x < W; ++x) out[x] += wk * in[x];
      }
    }
  }
}

void solarize(Image& img, float threshold) {
  for (float& x : img.pixels)
    if (x >= threshold) x = 1.f - x;
}

Image eval_transform(const Image& img, int size, const Normalization& norm) {
  DINO_CHECK(size > 0, "[eval_transform] size must be positive, got ", size);
  const Normalization n = resolve_normalization(norm, img.channels);
  if (img.height == size && img.width == size) {
    Image out = img;
    normalize(out, n);
    return out;
  }
  // torchvision Resize(int): the shorter side becomes `target`, the longer keeps the aspect.
  const int target = size * 256 / 224;
  const bool wide = img.width > img.height;
  const int short_side = wide ? img.height : img.width, long_side = wide ? img.width : img.height;
  const int new_long = int(int64_t(target) * long_side / short_side);
  const int oh = wide ? target : new_long, ow = wide ? new_long : target;
  const Image resized = resize(img, oh, ow);
  Image out = crop(resized, round_half_even((oh - size) / 2.0), round_half_even((ow - size) / 2.0),
                   size, size);
  normalize(out, n);
  return out;
}

}  // namespace dino::data
