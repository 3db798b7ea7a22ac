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
  typedef uint8_t u8x32 __attribute__((vector_size(32)));
  const float* in = img.pixels.data();
  const size_t n = img.pixels.size();
  // x * 255 + 0.5 (one fused multiply-add, as the compiler makes of the scalar form), clamped
  // to [0, 255] and truncated: round half up.
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const f8 x = min(max(fma(load(in + i), splat(255.f), splat(0.5f)), splat(0.f)), splat(255.f));
    // The low byte of each 32-bit lane, picked by one byte shuffle: converting the vector to
    // bytes directly compiles to a lane-by-lane extraction, ten times slower.
    const u8x32 lanes = u8x32(__builtin_convertvector(x, i8));
    const u8x8 bytes = __builtin_shufflevector(lanes, lanes, 0, 4, 8, 12, 16, 20, 24, 28);
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
  const ResizeTaps& tx = scratch.tx;
  const ResizeTaps& ty = scratch.ty;
  const int C = src.channels;
  const int blocks = (out_w + kLanes - 1) / kLanes, stride = blocks * kLanes;
  // Horizontal pass over the region's rows only, then vertical: PIL's order. The horizontal
  // pass works on eight rows at once, one per lane: the rows are transposed into `columns`
  // (input x holds its eight rows' values), so each output column is one chain of vector
  // multiply-adds over exactly its own taps, and eight outputs' chains run side by side; an
  // 8 x 8 transpose then puts them back as rows. Taps beyond an output's count have weight 0
  // and the columns past the region are 0, so the extra terms add exact zeros.
  scratch.columns.resize((size_t(width) + size_t(tx.ksize)) * kLanes);
  float* columns = scratch.columns.data();
  std::fill(columns + size_t(width) * kLanes, columns + scratch.columns.size(), 0.f);
  // Per block of eight outputs (outputs past the row repeat the last one): the longest tap
  // count, each output's first column, and the weights interleaved by tap (tap k of output j
  // at k * 8 + j), so the inner loop addresses every weight from one pointer.
  scratch.block_taps.resize(size_t(blocks));
  scratch.block_first.resize(size_t(stride));
  scratch.block_weight.assign(size_t(blocks) * tx.ksize * kLanes, 0.f);
  for (int b = 0; b < blocks; ++b) {
    int taps = 0;
    for (int j = 0; j < kLanes; ++j) {
      const int o = std::min(b * kLanes + j, out_w - 1);
      taps = std::max(taps, tx.count[size_t(o)]);
      scratch.block_first[size_t(b) * kLanes + j] = tx.first[size_t(o)] - left;
      for (int k = 0; k < tx.count[size_t(o)]; ++k)
        scratch.block_weight[(size_t(b) * tx.ksize + k) * kLanes + j] =
            tx.weight[size_t(o) * tx.ksize + k];
    }
    scratch.block_taps[size_t(b)] = taps;
  }
  scratch.rows.resize(size_t(C) * height * stride);
  for (int c = 0; c < C; ++c)
    for (int y0 = 0; y0 < height; y0 += kLanes) {
      const int rows = std::min(kLanes, height - y0);
      const float* in[kLanes];
      for (int r = 0; r < kLanes; ++r)  // missing rows repeat the last one and are not stored
        in[r] = src.channel(c) + size_t(top + y0 + std::min(r, rows - 1)) * src.width + left;
      int x = 0;
      for (; x + kLanes <= width; x += kLanes) {
        f8 m[kLanes];
        for (int r = 0; r < kLanes; ++r) m[r] = load(in[r] + x);
        transpose(m);
        for (int j = 0; j < kLanes; ++j) store(columns + size_t(x + j) * kLanes, m[j]);
      }
      for (; x < width; ++x)
        for (int r = 0; r < kLanes; ++r) columns[size_t(x) * kLanes + r] = in[r][x];
      for (int b = 0; b < blocks; ++b) {
        const float* w = scratch.block_weight.data() + size_t(b) * tx.ksize * kLanes;
        const float* col[kLanes];
        for (int j = 0; j < kLanes; ++j)
          col[j] = columns + size_t(scratch.block_first[size_t(b) * kLanes + j]) * kLanes;
        f8 acc[kLanes];
        for (f8& a : acc) a = splat(0.f);
        for (int k = 0, taps = scratch.block_taps[size_t(b)]; k < taps; ++k, w += kLanes)
          for (int j = 0; j < kLanes; ++j)
            acc[j] = fma(splat(w[j]), load(col[j] + size_t(k) * kLanes), acc[j]);
        transpose(acc);
        for (int r = 0; r < rows; ++r)
          store(scratch.rows.data() + (size_t(c) * height + y0 + r) * stride + b * kLanes, acc[r]);
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
