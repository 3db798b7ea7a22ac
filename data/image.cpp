#include "data/image.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "data/image_simd.h"

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

void to_float(const SourceImage& src, Image& dst) {
  if (!src.is_u8) {
    dst.channels = src.f32.channels;
    dst.height = src.f32.height;
    dst.width = src.f32.width;
    dst.pixels.assign(src.f32.pixels.begin(), src.f32.pixels.end());
    return;
  }
  constexpr float kInv255 = 1.f / 255.f;
  dst.channels = src.channels;
  dst.height = src.height;
  dst.width = src.width;
  dst.pixels.resize(src.u8.size());
  const uint8_t* in = src.u8.data();
  float* out = dst.pixels.data();
  for (size_t i = 0, n = src.u8.size(); i < n; ++i) out[i] = in[i] * kInv255;
}

void to_bytes(const Image& img, uint8_t* out) {
  using namespace simd;
  typedef uint8_t u8x8 __attribute__((vector_size(8)));
  const float* in = img.pixels.data();
  const size_t n = img.pixels.size();
  // x * 255 + 0.5 (one fused multiply-add, as the compiler makes of the scalar form), clamped
  // to [0, 255] and truncated: round half up.
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const f8 x = min(max(fma(load(in + i), splat(255.f), splat(0.5f)), splat(0.f)), splat(255.f));
    const u8x8 bytes = __builtin_convertvector(__builtin_convertvector(x, i8), u8x8);
    std::memcpy(out + i, &bytes, sizeof bytes);
  }
  for (; i < n; ++i) {
    const float x = std::fma(in[i], 255.f, 0.5f);
    out[i] = uint8_t(std::min(std::max(x, 0.f), 255.f));
  }
}

namespace {

double bicubic(double x) {
  constexpr double a = -0.5;  // PIL's choice; torch's tensor bicubic uses -0.75
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Mirrors PIL's precompute_coeffs (Resample.c) over the region [in0, in0 + in_size).
void make_taps(int in0, int in_size, int out_size, ResizeTaps& t) {
  const double scale = double(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  t.ksize = int(std::ceil(support)) * 2 + 1;
  t.first.resize(size_t(out_size));
  t.count.resize(size_t(out_size));
  t.weight.assign(size_t(out_size) * t.ksize, 0.f);
  t.raw.resize(size_t(t.ksize));
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(int(center - support + 0.5), 0);
    const int hi = std::min(int(center + support + 0.5), in_size);
    double total = 0.0;
    for (int x = lo; x < hi; ++x) {
      t.raw[size_t(x - lo)] = bicubic((x - center + 0.5) / filter_scale);
      total += t.raw[size_t(x - lo)];
    }
    for (int x = lo; x < hi; ++x)
      t.weight[size_t(o) * t.ksize + (x - lo)] =
          float(total != 0.0 ? t.raw[size_t(x - lo)] / total : 0.0);
    t.first[size_t(o)] = in0 + lo;
    t.count[size_t(o)] = hi - lo;
  }
}

// The horizontal taps regrouped per block of kLanes consecutive outputs: the block reads the
// inputs [start, start + span) and holds a span x kLanes weight matrix that is zero wherever
// an input is not one of that output's taps. Each output still sums its own taps in
// increasing input order (the extra terms add an exact zero), so the result is the scalar
// loop's, while a block costs span vector multiply-adds instead of kLanes x taps scalar ones.
void make_bands(const ResizeTaps& t, int out_size, ResizeBands& bands) {
  const int blocks = (out_size + simd::kLanes - 1) / simd::kLanes;
  bands.start.resize(size_t(blocks));
  bands.span.resize(size_t(blocks));
  bands.offset.resize(size_t(blocks));
  size_t total = 0;
  for (int b = 0; b < blocks; ++b) {
    const int o0 = b * simd::kLanes, o1 = std::min(o0 + simd::kLanes, out_size) - 1;
    bands.start[size_t(b)] = t.first[size_t(o0)];  // taps move right with the output
    bands.span[size_t(b)] = t.first[size_t(o1)] + t.count[size_t(o1)] - t.first[size_t(o0)];
    bands.offset[size_t(b)] = total;
    total += size_t(bands.span[size_t(b)]) * simd::kLanes;
  }
  bands.weight.assign(total, 0.f);
  for (int o = 0; o < out_size; ++o) {
    const int b = o / simd::kLanes, lane = o % simd::kLanes;
    float* w = bands.weight.data() + bands.offset[size_t(b)];
    const int shift = t.first[size_t(o)] - bands.start[size_t(b)];
    for (int k = 0; k < t.count[size_t(o)]; ++k)
      w[size_t(shift + k) * simd::kLanes + lane] = t.weight[size_t(o) * t.ksize + k];
  }
}

}  // namespace

void resized_crop(const Image& src, int top, int left, int height, int width, int out_h, int out_w,
                  Image& dst, ResizeScratch& scratch) {
  using namespace simd;
  DINO_CHECK(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= src.height &&
                 left + width <= src.width,
             "[resized_crop] region (", top, ", ", left, ", ", height, "x", width, ") outside a ",
             src.height, "x", src.width, " image");
  DINO_CHECK(out_h > 0 && out_w > 0, "[resized_crop] invalid output size ", out_h, "x", out_w);
  make_taps(left, width, out_w, scratch.tx);
  make_taps(top, height, out_h, scratch.ty);
  make_bands(scratch.tx, out_w, scratch.bands);
  const ResizeBands& bands = scratch.bands;
  const ResizeTaps& ty = scratch.ty;
  const int C = src.channels;
  const int blocks = int(bands.start.size()), stride = blocks * kLanes;
  // Horizontal pass over the region's rows only, then vertical: PIL's order. Four rows (then
  // four column blocks) at a time: independent multiply-add chains that share each weight
  // load, so the loops run at the FMA units' rate rather than at one chain's latency.
  scratch.rows.resize(size_t(C) * height * stride);
  for (int c = 0; c < C; ++c)
    for (int y0 = 0; y0 < height; y0 += 4) {
      const int rows = std::min(4, height - y0);
      const float* in[4];
      float* out[4];
      for (int r = 0; r < 4; ++r) {  // missing rows repeat the last one and are not stored
        const int y = y0 + std::min(r, rows - 1);
        in[r] = src.channel(c) + size_t(top + y) * src.width;
        out[r] = scratch.rows.data() + (size_t(c) * height + y) * stride;
      }
      for (int b = 0; b < blocks; ++b) {
        const int start = bands.start[size_t(b)], span = bands.span[size_t(b)];
        const float* w = bands.weight.data() + bands.offset[size_t(b)];
        f8 acc0 = splat(0.f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int i = 0; i < span; ++i) {
          const f8 wi = load(w + i * kLanes);
          acc0 = fma(splat(in[0][start + i]), wi, acc0);
          acc1 = fma(splat(in[1][start + i]), wi, acc1);
          acc2 = fma(splat(in[2][start + i]), wi, acc2);
          acc3 = fma(splat(in[3][start + i]), wi, acc3);
        }
        store(out[3] + b * kLanes, acc3);  // rows repeated at the end store the same values
        store(out[2] + b * kLanes, acc2);
        store(out[1] + b * kLanes, acc1);
        store(out[0] + b * kLanes, acc0);
      }
    }
  dst.channels = C;
  dst.height = out_h;
  dst.width = out_w;
  dst.pixels.resize(size_t(C) * out_h * out_w);
  float last[kLanes];
  auto put = [&](float* out, int b, f8 acc) {
    acc = clamp01(acc);
    const int n = std::min(kLanes, out_w - b * kLanes);
    if (n == kLanes) {
      store(out + b * kLanes, acc);
    } else {
      store(last, acc);
      std::copy(last, last + n, out + b * kLanes);
    }
  };
  for (int c = 0; c < C; ++c) {
    const float* plane = scratch.rows.data() + size_t(c) * height * stride;
    for (int y = 0; y < out_h; ++y) {
      float* out = dst.channel(c) + size_t(y) * out_w;
      const float* w = &ty.weight[size_t(y) * ty.ksize];
      const float* in = plane + size_t(ty.first[size_t(y)] - top) * stride;
      const int count = ty.count[size_t(y)];
      int b = 0;
      for (; b + 4 <= blocks; b += 4) {
        f8 acc0 = splat(0.f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int k = 0; k < count; ++k) {
          const f8 wk = splat(w[k]);
          const float* row = in + size_t(k) * stride + b * kLanes;
          acc0 = fma(wk, load(row), acc0);
          acc1 = fma(wk, load(row + kLanes), acc1);
          acc2 = fma(wk, load(row + 2 * kLanes), acc2);
          acc3 = fma(wk, load(row + 3 * kLanes), acc3);
        }
        put(out, b, acc0);
        put(out, b + 1, acc1);
        put(out, b + 2, acc2);
        put(out, b + 3, acc3);
      }
      for (; b < blocks; ++b) {
        f8 acc = splat(0.f);
        for (int k = 0; k < count; ++k)
          acc = fma(splat(w[k]), load(in + size_t(k) * stride + b * kLanes), acc);
        put(out, b, acc);
      }
    }
  }
}

Image resized_crop(const Image& src, int top, int left, int height, int width, int out_h,
                   int out_w) {
  Image dst;
  ResizeScratch scratch;
  resized_crop(src, top, left, height, width, out_h, out_w, dst, scratch);
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
