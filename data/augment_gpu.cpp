#include "data/augment_gpu.h"

#include <algorithm>
#include <cstring>

#include "core/backend.h"
#include "core/error.h"
#include "core/storage.h"

namespace dino::data {
namespace {

void validate(const SourceBatch& sb, const Normalization& norm) {
  const size_t B = size_t(sb.batch), V = sb.view_sizes.size();
  DINO_CHECK(sb.batch > 0 && V > 0, "[augment_gpu] a batch needs samples and views, got ", sb.batch,
             " samples and ", V, " views");
  DINO_CHECK(sb.channels == 1 || sb.channels == 3,
             "[augment_gpu] images must have 1 or 3 channels, got ", sb.channels);
  DINO_CHECK(norm.mean.size() == size_t(sb.channels) && norm.std.size() == size_t(sb.channels),
             "[augment_gpu] the normalisation has ", norm.mean.size(), " means for ", sb.channels,
             " channels (resolve it first)");
  DINO_CHECK(sb.samples.size() == B && sb.params.size() == B * V, "[augment_gpu] ",
             sb.samples.size(), " sources and ", sb.params.size(), " view parameters for ", B,
             " samples of ", V, " views");
  for (size_t b = 0; b < B; ++b) {
    const SourceBatch::Sample& s = sb.samples[b];
    const int H = s.height, W = s.width;
    const size_t value_bytes = s.f32 ? sizeof(float) : 1;
    DINO_CHECK(H > 0 && W > 0 && s.bytes.size() == size_t(sb.channels) * H * W * value_bytes,
               "[augment_gpu] sample ", b, " holds ", s.bytes.size(), " bytes for a ", sb.channels,
               "x", H, "x", W, s.f32 ? " float" : " 8-bit", " image");
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
  const uint8_t* p =
      src.is_u8 ? src.u8.data() : reinterpret_cast<const uint8_t*>(src.f32.pixels.data());
  const size_t n = src.is_u8 ? src.u8.size() : src.f32.pixels.size() * sizeof(float);
  s.bytes.assign(p, p + n);
}

namespace {

// The packed layout: the placements (B AugmentSource), the view parameters (B x V), then the
// sources from byte `sources_at`, each at a multiple of 4.
struct PackedLayout {
  size_t params_at = 0, sources_at = 0, bytes = 0;
  std::vector<int64_t> source_offset;  // per sample, from sources_at
};

PackedLayout packed_layout(const SourceBatch& sb) {
  auto align16 = [](size_t n) { return (n + 15) / 16 * 16; };
  PackedLayout l;
  l.params_at = align16(sb.samples.size() * sizeof(AugmentSource));
  l.sources_at = align16(l.params_at + sb.params.size() * sizeof(ViewParams));
  size_t total = 0;
  for (const SourceBatch::Sample& s : sb.samples) {
    l.source_offset.push_back(int64_t(total));
    total += (s.bytes.size() + 3) / 4 * 4;
  }
  l.bytes = l.sources_at + total;
  return l;
}

// The GPU whose kernels render the views; a build without one says what to use instead.
const Backend& gpu_backend() {
  DINO_CHECK(cuda_backend(), "[augment_gpu] this build has no CUDA backend: use data.augment=cpu");
  return *cuda_backend();
}

}  // namespace

size_t packed_sources_bytes(const SourceBatch& sb, const Normalization& norm) {
  validate(sb, norm);
  gpu_backend();
  return packed_layout(sb).bytes;
}

void pack_sources(const SourceBatch& sb, void* dst) {
  const PackedLayout l = packed_layout(sb);
  auto* out = static_cast<uint8_t*>(dst);
  std::vector<AugmentSource> where(sb.samples.size());
  for (size_t b = 0; b < where.size(); ++b) {
    const SourceBatch::Sample& s = sb.samples[b];
    where[b] = {l.source_offset[b], s.height, s.width, s.f32 ? 1 : 0};
    std::memcpy(out + l.sources_at + size_t(l.source_offset[b]), s.bytes.data(), s.bytes.size());
  }
  std::memcpy(out, where.data(), where.size() * sizeof(AugmentSource));
  std::memcpy(out + l.params_at, sb.params.data(), sb.params.size() * sizeof(ViewParams));
}

std::vector<Tensor> render_packed_views_cuda(const SourceBatch& sb, const void* device_packed,
                                             const Normalization& norm) {
  const Backend& gpu = gpu_backend();
  const PackedLayout l = packed_layout(sb);
  const auto* packed = static_cast<const uint8_t*>(device_packed);
  const int B = sb.batch, C = sb.channels, V = int(sb.view_sizes.size());
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
    gpu.augment_views(out, packed + l.sources_at, reinterpret_cast<const AugmentSource*>(packed),
                      reinterpret_cast<const ViewParams*>(packed + l.params_at), B, V, first,
                      max_box_height, norm.mean.data(), norm.std.data());
    for (int v = 0; v < count; ++v) views.push_back(out.narrow(int64_t(v) * B, B));
    first += count;
  }
  return views;
}

std::vector<Tensor> render_views_cuda(const SourceBatch& sb, const Normalization& norm) {
  std::vector<uint8_t> packed(packed_sources_bytes(sb, norm));
  pack_sources(sb, packed.data());
  Tensor dev = Tensor::empty({int64_t(packed.size())}, DType::u8, Device::cuda);
  copy_bytes(dev.raw_data(), Device::cuda, packed.data(), Device::cpu, packed.size());
  return render_packed_views_cuda(sb, dev.raw_data(), norm);
}

}  // namespace dino::data
