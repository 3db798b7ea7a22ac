#include "data/augment.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "data/image_simd.h"

namespace dino::data {
namespace {

inline float clamp01(float x) { return std::min(std::max(x, 0.f), 1.f); }

// Python's round(): ties to even, which the default floating-point rounding mode gives.
inline int round_half_even(double x) { return int(std::nearbyint(x)); }

// luminance() for eight pixels, with the multiply-adds the compiler fuses in the scalar form.
simd::f8 luminance8(simd::f8 r, simd::f8 g, simd::f8 b) {
  using namespace simd;
  return fma(splat(0.114f), b, fma(splat(0.299f), r, splat(0.587f) * g));
}

// The mean in double, over eight interleaved partial sums (pixel i adds to sum i % 8) so the
// additions do not wait on each other; summed in a fixed order, so the mean is reproducible.
float grayscale_mean(const Image& img) {
  using namespace simd;
  typedef double d4 __attribute__((vector_size(32)));
  const size_t n = img.plane();
  d4 lo = {}, hi = {};
  size_t i = 0;
  const bool rgb = img.channels == 3;
  for (; i + kLanes <= n; i += kLanes) {
    const f8 y = rgb ? luminance8(load(img.channel(0) + i), load(img.channel(1) + i),
                                  load(img.channel(2) + i))
                     : load(img.pixels.data() + i);
    lo += __builtin_convertvector(__builtin_shufflevector(y, y, 0, 1, 2, 3), d4);
    hi += __builtin_convertvector(__builtin_shufflevector(y, y, 4, 5, 6, 7), d4);
  }
  double sum = 0.0;
  for (int j = 0; j < 4; ++j) sum += lo[j];
  for (int j = 0; j < 4; ++j) sum += hi[j];
  for (; i < n; ++i)
    sum += rgb ? luminance(img.channel(0)[i], img.channel(1)[i], img.channel(2)[i]) : img.pixels[i];
  return float(sum / double(n));
}

// torchvision's _rgb2hsv / _hsv2rgb for eight pixels, branch-free: every lane computes each
// case and keeps its own, with the scalar formula's operations (so results match it bit for
// bit). Grey pixels (max == min) have no hue to shift and are returned unchanged.
void shift_hue(simd::f8& r, simd::f8& g, simd::f8& b, float shift) {
  using namespace simd;
  const f8 maxc = max(r, max(g, b)), minc = min(r, min(g, b));
  const f8 range = maxc - minc;
  const auto grey = range <= splat(0.f);
  const f8 s = range / maxc;
  const f8 rc = (maxc - r) / range, gc = (maxc - g) / range, bc = (maxc - b) / range;
  f8 h = maxc == r ? bc - gc : (maxc == g ? splat(2.f) + rc - bc : splat(4.f) + gc - rc);
  h = h / splat(6.f) + splat(1.f) + splat(shift);
  h -= __builtin_convertvector(__builtin_convertvector(h, i8), f8);  // floor: h > 0 here
  const f8 v = maxc;
  const f8 h6 = h * splat(6.f);
  i8 sector = __builtin_convertvector(h6, i8);  // 0..6, where 6 (h rounded to 1) means 0
  sector = sector == 6 ? i8{} : sector;
  const f8 f = h6 - __builtin_convertvector(__builtin_convertvector(h6, i8), f8);
  const f8 p = simd::clamp01(v * (splat(1.f) - s)), q = simd::clamp01(v * fma(-s, f, splat(1.f))),
           t = simd::clamp01(v * fma(-s, splat(1.f) - f, splat(1.f)));
  const f8 nr = sector == 0 || sector == 5 ? v : (sector == 1 ? q : (sector == 4 ? t : p));
  const f8 ng = sector == 1 || sector == 2 ? v : (sector == 3 ? q : (sector == 0 ? t : p));
  const f8 nb = sector == 3 || sector == 4 ? v : (sector == 5 ? q : (sector == 2 ? t : p));
  r = grey ? r : nr;
  g = grey ? g : ng;
  b = grey ? b : nb;
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

void normalize(Image& img, const Normalization& norm) { normalize(img, norm, img.pixels.data()); }

void normalize(const Image& img, const Normalization& norm, float* out) {
  const size_t n = img.plane();
  for (int c = 0; c < img.channels; ++c) {
    const float m = norm.mean[c], inv = 1.f / norm.std[c];
    const float* p = img.channel(c);
    float* o = out + size_t(c) * n;
    for (size_t i = 0; i < n; ++i) o[i] = (p[i] - m) * inv;
  }
}

void normalize_bytes(const uint8_t* in, int channels, size_t plane, const Normalization& norm,
                     float* out) {
  constexpr float kInv255 = 1.f / 255.f;
  for (int c = 0; c < channels; ++c) {
    const float m = norm.mean[c], inv = 1.f / norm.std[c];
    const uint8_t* p = in + size_t(c) * plane;
    float* o = out + size_t(c) * plane;
    for (size_t i = 0; i < plane; ++i) o[i] = (p[i] * kInv255 - m) * inv;
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
  using namespace simd;
  if (img.channels != 3) return;
  float* planes[3] = {img.channel(0), img.channel(1), img.channel(2)};
  const size_t n = img.plane();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    f8 rgb[3];
    for (int c = 0; c < 3; ++c) rgb[c] = load(planes[c] + i);
    shift_hue(rgb[0], rgb[1], rgb[2], shift);
    for (int c = 0; c < 3; ++c) store(planes[c] + i, rgb[c]);
  }
  if (i < n) {  // the last pixels, padded with grey ones, which shift_hue leaves alone
    float part[3][kLanes] = {};
    f8 rgb[3];
    for (int c = 0; c < 3; ++c) std::copy(planes[c] + i, planes[c] + n, part[c]);
    for (int c = 0; c < 3; ++c) rgb[c] = load(part[c]);
    shift_hue(rgb[0], rgb[1], rgb[2], shift);
    for (int c = 0; c < 3; ++c) store(part[c], rgb[c]);
    for (int c = 0; c < 3; ++c) std::copy(part[c], part[c] + (n - i), planes[c] + i);
  }
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
  view.brightness =
      p.brightness > 0 ? float(rng.uniform(1.0 - p.brightness, 1.0 + p.brightness)) : 1.f;
  view.contrast = p.contrast > 0 ? float(rng.uniform(1.0 - p.contrast, 1.0 + p.contrast)) : 1.f;
  view.saturation =
      p.saturation > 0 ? float(rng.uniform(1.0 - p.saturation, 1.0 + p.saturation)) : 1.f;
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

void gaussian_blur(Image& img, float sigma, BlurScratch& scratch) {
  using namespace simd;
  DINO_CHECK(sigma > 0.f, "[gaussian_blur] sigma must be positive, got ", sigma);
  const int radius = int(std::ceil(3.f * sigma)), taps = 2 * radius + 1;
  std::vector<float>& kernel = scratch.kernel;
  kernel.resize(size_t(taps));
  float total = 0.f;
  for (int k = -radius; k <= radius; ++k)
    total += kernel[size_t(k + radius)] = std::exp(-0.5f * float(k * k) / (sigma * sigma));
  for (float& k : kernel) k /= total;

  // Rows are processed in blocks of kLanes outputs, four blocks at a time (independent
  // multiply-add chains); `stride` rounds the width up so every block is whole.
  const int H = img.height, W = img.width;
  const int blocks = (W + kLanes - 1) / kLanes, stride = blocks * kLanes;
  scratch.padded.resize(size_t(stride) + 2 * radius);
  scratch.tmp.resize(size_t(H) * stride);
  scratch.row.resize(size_t(stride));
  float* padded = scratch.padded.data();
  float* tmp = scratch.tmp.data();
  for (int c = 0; c < img.channels; ++c) {
    float* plane = img.channel(c);
    for (int y = 0; y < H; ++y) {  // horizontal pass, edges replicated through the padding
      const float* row = plane + size_t(y) * W;
      std::fill(padded, padded + radius, row[0]);
      std::copy(row, row + W, padded + radius);
      std::fill(padded + radius + W, padded + stride + 2 * radius, row[W - 1]);
      float* out = tmp + size_t(y) * stride;
      int b = 0;
      for (; b + 4 <= blocks; b += 4) {
        f8 acc0 = splat(0.f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int k = 0; k < taps; ++k) {
          const f8 wk = splat(kernel[size_t(k)]);
          const float* in = padded + b * kLanes + k;
          acc0 = fma(wk, load(in), acc0);
          acc1 = fma(wk, load(in + kLanes), acc1);
          acc2 = fma(wk, load(in + 2 * kLanes), acc2);
          acc3 = fma(wk, load(in + 3 * kLanes), acc3);
        }
        store(out + b * kLanes, acc0);
        store(out + (b + 1) * kLanes, acc1);
        store(out + (b + 2) * kLanes, acc2);
        store(out + (b + 3) * kLanes, acc3);
      }
      for (; b < blocks; ++b) {
        f8 acc = splat(0.f);
        for (int k = 0; k < taps; ++k)
          acc = fma(splat(kernel[size_t(k)]), load(padded + b * kLanes + k), acc);
        store(out + b * kLanes, acc);
      }
    }
    for (int y = 0; y < H; ++y) {  // vertical pass, edge rows replicated
      float* out = scratch.row.data();
      int b = 0;
      for (; b + 4 <= blocks; b += 4) {
        f8 acc0 = splat(0.f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int k = -radius; k <= radius; ++k) {
          const f8 wk = splat(kernel[size_t(k + radius)]);
          const float* in = tmp + size_t(std::min(std::max(y + k, 0), H - 1)) * stride + b * kLanes;
          acc0 = fma(wk, load(in), acc0);
          acc1 = fma(wk, load(in + kLanes), acc1);
          acc2 = fma(wk, load(in + 2 * kLanes), acc2);
          acc3 = fma(wk, load(in + 3 * kLanes), acc3);
        }
        store(out + b * kLanes, acc0);
        store(out + (b + 1) * kLanes, acc1);
        store(out + (b + 2) * kLanes, acc2);
        store(out + (b + 3) * kLanes, acc3);
      }
      for (; b < blocks; ++b) {
        f8 acc = splat(0.f);
        for (int k = -radius; k <= radius; ++k) {
          const float* in = tmp + size_t(std::min(std::max(y + k, 0), H - 1)) * stride + b * kLanes;
          acc = fma(splat(kernel[size_t(k + radius)]), load(in), acc);
        }
        store(out + b * kLanes, acc);
      }
      std::copy(out, out + W, plane + size_t(y) * W);
    }
  }
}

void gaussian_blur(Image& img, float sigma) {
  BlurScratch scratch;
  gaussian_blur(img, sigma, scratch);
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
