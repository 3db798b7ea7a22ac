#include "data/augment_gpu.h"

#include <algorithm>

#include "core/error.h"
#include "core/storage.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/augment.h"
#include "kernels/cuda/runtime.h"
#endif

namespace dino::data {
namespace {

void validate(const SourceBatch& sb, const Normalization& norm) {
  const size_t B = size_t(sb.batch), V = sb.view_sizes.size();
  DINO_CHECK(sb.batch > 0 && V > 0, "[augment_gpu] a batch needs samples and views, got ",
             sb.batch, " samples and ", V, " views");
  DINO_CHECK(sb.channels == 1 || sb.channels == 3, "[augment_gpu] images must have 1 or 3 channels, got ",
             sb.channels);
  DINO_CHECK(norm.mean.size() == size_t(sb.channels) && norm.std.size() == size_t(sb.channels),
             "[augment_gpu] the normalisation has ", norm.mean.size(), " means for ",
             sb.channels, " channels (resolve it first)");
  DINO_CHECK(sb.samples.size() == B && sb.params.size() == B * V, "[augment_gpu] ",
             sb.samples.size(), " sources and ", sb.params.size(), " view parameters for ", B,
             " samples of ", V, " views");
  for (size_t b = 0; b < B; ++b) {
    const SourceBatch::Sample& s = sb.samples[b];
    const int H = s.height, W = s.width;
    const size_t value_bytes = s.f32 ? sizeof(float) : 1;
    DINO_CHECK(H > 0 && W > 0 && s.bytes.size() == size_t(sb.channels) * H * W * value_bytes,
               "[augment_gpu] sample ", b, " holds ", s.bytes.size(), " bytes for a ",
               sb.channels, "x", H, "x", W, s.f32 ? " float" : " 8-bit", " image");
    for (size_t v = 0; v < V; ++v) {
      const ViewParams& p = sb.params[b * V + v];
      const CropBox& box = p.box;
      DINO_CHECK(p.size == sb.view_sizes[v], "[augment_gpu] view ", v, " of sample ", b,
                 " has side ", p.size, ", the batch's view ", v, " has ", sb.view_sizes[v]);
      DINO_CHECK(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0 &&
                     box.top + box.height <= H && box.left + box.width <= W,
                 "[augment_gpu] view ", v, " of sample ", b, ": box (", box.top, ", ", box.left,
                 ", ", box.height, "x", box.width, ") outside its ", H, "x", W, " source");
    }
  }
}

}  // namespace

void SourceBatch::set_source(int i, const SourceImage& src) {
  Sample& s = samples.at(size_t(i));
  s.height = src.height;
  s.width = src.width;
  s.f32 = !src.is_u8;
  const uint8_t* p = src.is_u8 ? src.u8.data() : reinterpret_cast<const uint8_t*>(src.f32.pixels.data());
  const size_t n = src.is_u8 ? src.u8.size() : src.f32.pixels.size() * sizeof(float);
  s.bytes.assign(p, p + n);
}

std::vector<Tensor> render_views_cuda(const SourceBatch& sb, const Normalization& norm) {
  validate(sb, norm);
#ifdef DINO_HAS_CUDA
  namespace cu = kernels::cuda;
  const int B = sb.batch, C = sb.channels, V = int(sb.view_sizes.size());
  std::vector<cu::AugmentSource> where(static_cast<size_t>(B));
  int64_t total = 0;  // bytes, each source 4-byte aligned
  for (int b = 0; b < B; ++b) {
    const SourceBatch::Sample& s = sb.samples[size_t(b)];
    where[size_t(b)] = {total, s.height, s.width, s.f32 ? 1 : 0};
    total += (int64_t(s.bytes.size()) + 3) / 4 * 4;
  }
  Tensor src = Tensor::empty({total}, DType::u8, Device::cuda);
  for (int b = 0; b < B; ++b)
    copy_bytes(static_cast<uint8_t*>(src.raw_data()) + where[size_t(b)].offset, Device::cuda,
               sb.samples[size_t(b)].bytes.data(), Device::cpu, sb.samples[size_t(b)].bytes.size());
  Tensor dev_where = Tensor::empty({int64_t(where.size() * sizeof(cu::AugmentSource))}, DType::u8, Device::cuda);
  copy_bytes(dev_where.raw_data(), Device::cuda, where.data(), Device::cpu, dev_where.nbytes());
  Tensor dev_params = Tensor::empty({int64_t(sb.params.size() * sizeof(ViewParams))}, DType::u8, Device::cuda);
  copy_bytes(dev_params.raw_data(), Device::cuda, sb.params.data(), Device::cpu, dev_params.nbytes());

  std::vector<Tensor> views;
  for (int first = 0; first < V;) {  // runs of views of one size: one launch each
    const int S = sb.view_sizes[size_t(first)];
    int count = 1;
    while (first + count < V && sb.view_sizes[size_t(first + count)] == S) ++count;
    int max_box_height = 1;
    for (int b = 0; b < B; ++b)
      for (int v = first; v < first + count; ++v)
        max_box_height = std::max(max_box_height, sb.params[size_t(b) * V + v].box.height);
    Tensor out = Tensor::empty({int64_t(count) * B, C, S, S}, DType::f32, Device::cuda);
    cu::augment_views(out.data<float>(), static_cast<const uint8_t*>(src.raw_data()),
                      static_cast<const cu::AugmentSource*>(dev_where.raw_data()),
                      static_cast<const ViewParams*>(dev_params.raw_data()), B, V, first, count,
                      C, S, max_box_height, norm.mean.data(), norm.std.data(), cu::stream());
    for (int v = 0; v < count; ++v) views.push_back(out.narrow(int64_t(v) * B, B));
    first += count;
  }
  return views;
#else
  throw Error("[augment_gpu] this build has no CUDA backend: use data.augment=cpu");
#endif
}

}  // namespace dino::data
