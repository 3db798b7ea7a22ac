// DINO's augmentations on the GPU: every view of a batch rendered from the samples' source
// bytes and their drawn parameters (data/augment_params.h), so the CPU only decodes and
// draws. The operations, their order and their arithmetic are the CPU reference's
// (data/multicrop.cpp: apply_view; data/image.cpp: resized_crop; data/augment.cpp): resized
// crop (PIL's bicubic, horizontal pass then vertical, each output one fused multiply-add
// chain over its taps in increasing order, clamped to [0, 1] after the vertical pass), flip,
// colour jitter in the drawn order (identities skipped), grayscale, Gaussian blur (separable,
// edges replicated), solarize, normalise. Tap weights are computed as the CPU computes them
// (bicubic in double, each weight float(raw / total); blur weights expf in float, divided by
// their float sum). What still differs from the CPU, by an ulp or so per operation: the
// compilers' fused multiply-adds in expressions outside the explicit chains (the bicubic
// polynomial, the luminance), CUDA's expf against glibc's (up to 2 ulp), and the order of the
// double sum behind contrast's mean. tests/cuda/test_augment.cpp states the tolerance.
//
// Shape: two launches per view size.
// 1. augment_rows_kernel, one thread per (box row, output column) of every view: the
//    horizontal pass over the rows the crop box covers, into a scratch (P, C, R, S).
// 2. augment_view_kernel, one block per view: everything else, in at most four passes over
//    the view, which the block owns, so the passes need only block barriers:
//    (a) vertical pass, clamp, flip and the jitter operations before contrast; when contrast
//        follows, each thread also sums its pixels' luminance (double), else the view goes on
//        through grayscale (and, without blur, solarize and normalise) and is done;
//    (b) with contrast: the block's mean, then contrast and the rest as in (a);
//    (c, d) with blur: horizontal pass into the scratch (free again by then), then vertical,
//        solarize and normalise.
//    Contrast needs the mean of the whole view between two pixel-wise operations and blur a
//    neighbourhood of the jittered view, so a view has to be revisited; a block per view
//    keeps those revisits in its SM's L1/L2. The cost is parallelism: B x views blocks
//    (128 for the global crops of a 64-image batch), which a multi-block variant with
//    per-block partial means would raise.
//
// Floor per batch (the minimum an implementation must move or compute): read each source
// once and write each view once in f32. DINO ViT-S/16 (2 x 224 + 10 x 96 crops, 3 channels)
// from 500 x 375 sources, B = 64: sources 64 x 562,500 B = 36 MB, views 64 x 3 x (2 x 50,176
// + 10 x 9,216) x 4 B = 148 MB, 184 MB in all (about 55 us at an H100's 3.35 TB/s). This code
// also writes and reads the scratch rows (box height x S x C floats per view, at most the
// views' bytes again for boxes as tall as the output), and re-reads the view once for
// contrast and twice for blur. FLOPs (multiply-adds x 2): resize 2 x C x (box_h x S x taps_x
// + S^2 x taps_y) per view (taps = 2 ceil(2 max(box / S, 1)) + 1, at most 9 at the global
// crops' scales here, 23 at the smallest local boxes); blur 2 x 2 x C x S^2 x (2 ceil(3 sigma)
// + 1); the jitter a few dozen per pixel: about 3 GFLOP per such batch, far below the
// device's rate, so the kernels are bound by memory and latency.
#include <cmath>

#include "kernels/cuda/augment.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

using data::AugmentSource;
using data::ViewParams;

constexpr int kRowThreads = 256;
constexpr int kViewThreads = 512;  // a power of two (the block's tree reduction)
constexpr float kInv255 = 1.f / 255.f;

struct Normalisation {
  float mean[3], inv_std[3];
};

// PIL's bicubic (a = -0.5), as data/image.cpp's bicubic().
__device__ __forceinline__ double pil_bicubic(double x) {
  constexpr double a = -0.5;
  x = fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Output o's taps when in_size inputs are resampled to out_size: data/image.cpp's make_taps,
// region-relative (first in [0, in_size)). Weights are recomputed on demand instead of stored
// (their count depends on the scale, which is per view).
struct ResizeTaps {
  int first, count;
  double center, filter_scale, total;

  __device__ __forceinline__ float weight(int k) const {
    return float(total != 0.0
                     ? pil_bicubic((double(first + k) - center + 0.5) / filter_scale) / total
                     : 0.0);
  }
};

__device__ ResizeTaps resize_taps(int o, int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double filter_scale = fmax(scale, 1.0);
  const double support = 2.0 * filter_scale;
  const double center = (o + 0.5) * scale;
  const int lo = max(int(center - support + 0.5), 0);
  const int hi = min(int(center + support + 0.5), in_size);
  double total = 0.0;
  for (int x = lo; x < hi; ++x) total += pil_bicubic((double(x) - center + 0.5) / filter_scale);
  return {lo, hi - lo, center, filter_scale, total};
}

// data/augment.cpp's gaussian_blur kernel: exp in float, normalised by its float sum.
struct BlurTaps {
  int radius;
  float sigma, total;

  __device__ __forceinline__ float weight(int k) const {  // k in [-radius, radius]
    return expf(-0.5f * float(k * k) / (sigma * sigma)) / total;
  }
};

__device__ BlurTaps blur_taps(float sigma) {
  BlurTaps t{int(ceilf(3.f * sigma)), sigma, 0.f};
  for (int k = -t.radius; k <= t.radius; ++k)
    t.total += expf(-0.5f * float(k * k) / (sigma * sigma));
  return t;
}

__device__ __forceinline__ float clamp01(float x) { return fminf(fmaxf(x, 0.f), 1.f); }

// ITU-R 601-2 as data/augment.cpp's luminance(), with the multiply-adds the host compiler
// makes of it.
__device__ __forceinline__ float luminance(float r, float g, float b) {
  return fmaf(0.114f, b, fmaf(0.299f, r, 0.587f * g));
}

__device__ __forceinline__ float luma(const float* px, int C) {
  return C == 3 ? luminance(px[0], px[1], px[2]) : px[0];
}

// torchvision's _rgb2hsv / _hsv2rgb as data/augment.cpp's shift_hue, one pixel.
__device__ __forceinline__ void shift_hue(float* px, float shift) {
  const float r = px[0], g = px[1], b = px[2];
  const float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
  const float range = maxc - minc;
  if (range <= 0.f) return;  // grey: no hue to shift
  const float s = range / maxc;
  const float rc = (maxc - r) / range, gc = (maxc - g) / range, bc = (maxc - b) / range;
  float h = maxc == r ? bc - gc : (maxc == g ? 2.f + rc - bc : 4.f + gc - rc);
  h = h / 6.f + 1.f + shift;
  h -= float(int(h));  // floor: h > 0 here
  const float v = maxc;
  const float h6 = h * 6.f;
  int sector = int(h6);
  if (sector == 6) sector = 0;  // h rounded up to 1
  const float f = h6 - float(int(h6));
  const float p = clamp01(v * (1.f - s)), q = clamp01(v * fmaf(-s, f, 1.f)),
              t = clamp01(v * fmaf(-s, 1.f - f, 1.f));
  px[0] = sector == 0 || sector == 5 ? v : (sector == 1 ? q : (sector == 4 ? t : p));
  px[1] = sector == 1 || sector == 2 ? v : (sector == 3 ? q : (sector == 0 ? t : p));
  px[2] = sector == 3 || sector == 4 ? v : (sector == 5 ? q : (sector == 2 ? t : p));
}

// The view's jitter operations jitter_order[from .. to), identities skipped; contrast uses
// `mean`, the luminance mean of the whole view before it.
__device__ __forceinline__ void jitter(float* px, const ViewParams& p, int from, int to, float mean,
                                       int C) {
  for (int k = from; k < to; ++k) {
    const int op = p.jitter_order[k];
    if (op == data::kBrightness && p.brightness != 1.f) {
      for (int c = 0; c < C; ++c) px[c] = clamp01(px[c] * p.brightness);
    } else if (op == data::kContrast && p.contrast != 1.f) {
      const float offset = (1.f - p.contrast) * mean;
      for (int c = 0; c < C; ++c) px[c] = clamp01(fmaf(p.contrast, px[c], offset));
    } else if (op == data::kSaturation && p.saturation != 1.f && C == 3) {
      // (1 - f) * gray + f * x, the product with gray fused as the host compiler fuses it
      const float gray = luminance(px[0], px[1], px[2]);
      for (int c = 0; c < C; ++c)
        px[c] = clamp01(fmaf(1.f - p.saturation, gray, p.saturation * px[c]));
    } else if (op == data::kHue && p.hue != 0.f && C == 3) {
      shift_hue(px, p.hue);
    }
  }
}

__device__ __forceinline__ void solarize_normalise(float* px, const ViewParams& p,
                                                   const Normalisation& norm, int C) {
  for (int c = 0; c < C; ++c) {
    float x = px[c];
    if (p.solarize && x >= 0.5f) x = 1.f - x;
    px[c] = (x - norm.mean[c]) * norm.inv_std[c];
  }
}

// After the jitter: grayscale, and when no blur follows, solarize and normalise.
__device__ __forceinline__ void finish_pointwise(float* px, const ViewParams& p,
                                                 const Normalisation& norm, int C) {
  if (p.grayscale && C == 3) px[0] = px[1] = px[2] = luminance(px[0], px[1], px[2]);
  if (p.blur_sigma <= 0.f) solarize_normalise(px, p, norm, C);
}

__device__ __forceinline__ const ViewParams& pair_params(const ViewParams* params, int pair, int B,
                                                         int views_per_sample, int first_view) {
  return params[int64_t(pair % B) * views_per_sample + first_view + pair / B];
}

// A source value in [0, 1] as the CPU's to_float makes it: bytes times 1/255 in float.
__device__ __forceinline__ float source_value(uint8_t x) { return float(x) * kInv255; }
__device__ __forceinline__ float source_value(float x) { return x; }

// Row r of the crop box of view `p` resampled horizontally to S columns, each channel one
// multiply-add chain over its taps; T is the source's value type.
template <class T, int C>
__device__ __forceinline__ void resample_row(float* acc, const T* src, const AugmentSource& s,
                                             const ViewParams& p, int r, const ResizeTaps& t) {
  const int64_t plane = int64_t(s.height) * s.width;
  const T* in = src + int64_t(p.box.top + r) * s.width + p.box.left + t.first;
  for (int c = 0; c < C; ++c) acc[c] = 0.f;
  for (int k = 0; k < t.count; ++k) {
    const float w = t.weight(k);
    for (int c = 0; c < C; ++c) acc[c] = fmaf(source_value(in[c * plane + k]), w, acc[c]);
  }
}

}  // namespace

// kernels

// rows (P, C, R, S) <- src (bytes), sources (B), params (B, views_per_sample); P = V * B
// view-major pairs (pair = v * B + b). Row r < box.height of pair P: the box's row r
// resampled horizontally to S columns (before the flip), not clamped. C is a template
// argument so that the per-channel arrays live in registers.
template <int C>
__global__ void augment_rows_kernel(float* rows, const uint8_t* src, const AugmentSource* sources,
                                    const ViewParams* params, int B, int views_per_sample,
                                    int first_view, int S, int R) {
  const int pair = blockIdx.x;
  const ViewParams& p = pair_params(params, pair, B, views_per_sample, first_view);
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  const int r = i / S, x = i % S;
  if (r >= R || r >= p.box.height) return;
  const AugmentSource s = sources[pair % B];
  const ResizeTaps t = resize_taps(x, p.box.width, S);
  float acc[C];
  if (s.f32)
    resample_row<float, C>(acc, reinterpret_cast<const float*>(src + s.offset), s, p, r, t);
  else
    resample_row<uint8_t, C>(acc, src + s.offset, s, p, r, t);
  for (int c = 0; c < C; ++c) rows[((int64_t(pair) * C + c) * R + r) * S + x] = acc[c];
}

// out (P, C, S, S) <- rows (P, C, R, S) from augment_rows_kernel, params; scratch is rows,
// reused as the blur's intermediate (R >= S). One block per pair.
template <int C>
__global__ void __launch_bounds__(kViewThreads)
    augment_view_kernel(float* out, float* rows, const ViewParams* params, int B,
                        int views_per_sample, int first_view, int S, int R, Normalisation norm) {
  const int pair = blockIdx.x;
  const ViewParams p = pair_params(params, pair, B, views_per_sample, first_view);
  const int n = S * S;
  float* view = out + int64_t(pair) * C * n;
  rows += int64_t(pair) * C * R * S;
  if (p.box.height > R) {  // the caller's bound was wrong: say so in the output
    for (int i = threadIdx.x; i < C * n; i += blockDim.x) view[i] = nanf("");
    return;
  }
  int contrast_at = 4;  // the position of an active contrast in the jitter order
  for (int k = 0; k < 4; ++k)
    if (p.jitter_order[k] == data::kContrast && p.contrast != 1.f) contrast_at = k;

  // (a) vertical pass, clamp, flip, jitter up to contrast.
  double lum_sum = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int y = i / S, x = i % S;
    const int xs = p.flip ? S - 1 - x : x;
    const ResizeTaps t = resize_taps(y, p.box.height, S);
    float px[3] = {0.f, 0.f, 0.f};
    for (int k = 0; k < t.count; ++k) {
      const float w = t.weight(k);
      for (int c = 0; c < C; ++c)
        px[c] = fmaf(w, rows[(int64_t(c) * R + t.first + k) * S + xs], px[c]);
    }
    for (int c = 0; c < C; ++c) px[c] = clamp01(px[c]);
    jitter(px, p, 0, contrast_at, 0.f, C);
    if (contrast_at < 4) {
      lum_sum += double(luma(px, C));
    } else {
      finish_pointwise(px, p, norm, C);
    }
    for (int c = 0; c < C; ++c) view[int64_t(c) * n + i] = px[c];
  }

  // (b) contrast against the mean of the view as it stands, then the rest of the jitter.
  if (contrast_at < 4) {
    __shared__ double partial[kViewThreads];
    partial[threadIdx.x] = lum_sum;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
      if (int(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
      __syncthreads();
    }
    const float mean = float(partial[0] / double(n));
    for (int i = threadIdx.x; i < n; i += blockDim.x) {  // each thread revisits its own pixels
      float px[3];
      for (int c = 0; c < C; ++c) px[c] = view[int64_t(c) * n + i];
      jitter(px, p, contrast_at, 4, mean, C);
      finish_pointwise(px, p, norm, C);
      for (int c = 0; c < C; ++c) view[int64_t(c) * n + i] = px[c];
    }
  }
  if (p.blur_sigma <= 0.f) return;

  // (c) horizontal blur into the scratch, edges replicated; (d) vertical, solarize, normalise.
  const BlurTaps bt = blur_taps(p.blur_sigma);
  float* tmp = rows;
  __syncthreads();  // the view is complete and the scratch rows are read
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int y = i / S, x = i % S;
    float acc[3] = {0.f, 0.f, 0.f};
    for (int k = -bt.radius; k <= bt.radius; ++k) {
      const float w = bt.weight(k);
      const int xk = min(max(x + k, 0), S - 1);
      for (int c = 0; c < C; ++c) acc[c] = fmaf(w, view[int64_t(c) * n + y * S + xk], acc[c]);
    }
    for (int c = 0; c < C; ++c) tmp[int64_t(c) * n + i] = acc[c];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int y = i / S, x = i % S;
    float px[3] = {0.f, 0.f, 0.f};
    for (int k = -bt.radius; k <= bt.radius; ++k) {
      const float w = bt.weight(k);
      const int yk = min(max(y + k, 0), S - 1);
      for (int c = 0; c < C; ++c) px[c] = fmaf(w, tmp[int64_t(c) * n + yk * S + x], px[c]);
    }
    solarize_normalise(px, p, norm, C);
    for (int c = 0; c < C; ++c) view[int64_t(c) * n + i] = px[c];
  }
}

// launchers

void augment_views(float* out, const uint8_t* src, const AugmentSource* sources,
                   const data::ViewParams* params, int B, int views_per_sample, int first_view,
                   int V, int C, int S, int max_box_height, const float* mean, const float* std,
                   void* stream_ptr) {
  DINO_CHECK(B >= 0 && V >= 0 && first_view >= 0 && first_view + V <= views_per_sample &&
                 (C == 1 || C == 3) && S > 0 && max_box_height > 0,
             "[augment_views] bad sizes B=", B, " V=", V, " first_view=", first_view,
             " views_per_sample=", views_per_sample, " C=", C, " S=", S,
             " max_box_height=", max_box_height);
  const int pairs = B * V;
  if (pairs == 0) return;
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  Normalisation norm{};
  for (int c = 0; c < C; ++c) {
    norm.mean[c] = mean[c];
    norm.inv_std[c] = 1.f / std[c];
  }
  const int R = max_box_height > S ? max_box_height : S;  // also the blur's S x S intermediate
  float* rows =
      static_cast<float*>(scratch_alloc(size_t(pairs) * C * R * S * sizeof(float), stream));
  const dim3 row_grid(unsigned(pairs), unsigned((int64_t(R) * S + kRowThreads - 1) / kRowThreads));
  if (C == 3)
    augment_rows_kernel<3><<<row_grid, kRowThreads, 0, stream>>>(
        rows, src, sources, params, B, views_per_sample, first_view, S, R);
  else
    augment_rows_kernel<1><<<row_grid, kRowThreads, 0, stream>>>(
        rows, src, sources, params, B, views_per_sample, first_view, S, R);
  CUDA_CHECK(cudaGetLastError());
  if (C == 3)
    augment_view_kernel<3><<<pairs, kViewThreads, 0, stream>>>(
        out, rows, params, B, views_per_sample, first_view, S, R, norm);
  else
    augment_view_kernel<1><<<pairs, kViewThreads, 0, stream>>>(
        out, rows, params, B, views_per_sample, first_view, S, R, norm);
  CUDA_CHECK(cudaGetLastError());
  scratch_free(rows, stream);
}

void CudaBackend::augment_views(const Tensor& out, const uint8_t* src,
                                const data::AugmentSource* sources, const data::ViewParams* params,
                                int64_t B, int64_t views_per_sample, int64_t first_view,
                                int64_t max_box_height, const float* mean, const float* std) const {
  const char* op = "augment_views";
  const int64_t V = B > 0 ? out.size(0) / B : 0;
  cuda::augment_views(f32_ptr(out), src, sources, params, as_int(op, B, "batch"),
                      as_int(op, views_per_sample, "views per sample"),
                      as_int(op, first_view, "first view"), as_int(op, V, "views"),
                      as_int(op, out.size(1), "channels"), as_int(op, out.size(2), "view side"),
                      as_int(op, max_box_height, "box height"), mean, std, stream());
}

}  // namespace dino::kernels::cuda
