#include "train/batch_upload.h"

#include <algorithm>

#include "core/error.h"
#include "core/storage.h"
#include "data/augment_gpu.h"
#ifdef DINO_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace dino {

#ifdef DINO_HAS_CUDA
namespace cu = kernels::cuda;
#endif

BatchUploader::BatchUploader(Device device) : device_(device) {
#ifdef DINO_HAS_CUDA
  if (device_ == Device::cuda)
    for (DeviceBuffer& d : buffers_) {
      d.uploaded = cu::event_create();
      d.consumed = cu::event_create();
    }
#endif
}

BatchUploader::~BatchUploader() {
#ifdef DINO_HAS_CUDA
  if (device_ != Device::cuda) return;
  try {
    for (DeviceBuffer& d : buffers_) {
      cu::event_synchronize(d.uploaded);
      cu::event_synchronize(d.consumed);
      cu::free(d.device);
      cu::free_pinned(d.staging);
      cu::event_destroy(d.uploaded);
      cu::event_destroy(d.consumed);
    }
  } catch (const Error&) {  // a failed device: its error surfaced where the failure happened
  }
#endif
}

data::BufferAllocator BatchUploader::allocator(Device device) {
  data::BufferAllocator a;
#ifdef DINO_HAS_CUDA
  if (device == Device::cuda) {
    a.allocate = [](size_t bytes) { return cu::alloc_pinned(bytes); };
    a.release = [](void* p) { cu::free_pinned(p); };
  }
#else
  (void)device;
#endif
  return a;
}

void BatchUploader::reserve(DeviceBuffer& d, size_t bytes, bool staging) {
#ifdef DINO_HAS_CUDA
  if (d.capacity >= bytes && (!staging || d.staging)) return;
  // Sources vary in size from batch to batch: room for a quarter more, so growing stays rare.
  const size_t capacity = std::max(bytes + bytes / 4, d.capacity);
  cu::event_synchronize(d.uploaded);
  cu::event_synchronize(d.consumed);
  cu::free(d.device);
  cu::free_pinned(d.staging);
  d.staging = nullptr;
  d.device = cu::alloc(capacity);
  if (staging) d.staging = cu::alloc_pinned(capacity);
  d.capacity = capacity;
  // The allocation is ordered on the compute stream; the copy stream writes it next.
  cu::synchronize();
#else
  (void)d;
  (void)bytes;
  (void)staging;
#endif
}

BatchUploader::Upload BatchUploader::upload(const data::MultiCropBatch& b) {
  Upload u;
  DINO_CHECK(b.format != data::CropFormat::u8,
             "[train] the step reads f32 views or sources; "
             "the loader handed over u8 views");
  if (device_ == Device::cpu) {
    DINO_CHECK(b.format == data::CropFormat::f32, "[train] data.augment=gpu needs --device cuda");
    for (size_t v = 0; v < b.views.size(); ++v) {
      const int64_t S = b.view_sizes[v];
      Tensor t = Tensor::empty({b.batch, b.channels, S, S}, DType::f32, device_);
      DINO_CHECK(size_t(t.numel()) == b.view_values(v), "[train] view ", v, " holds ",
                 b.view_values(v), " values for ", shape_str(t.shape()));
      copy_bytes(t.raw_data(), device_, b.view_f32(v), Device::cpu, t.nbytes());
      u.views.push_back(t);
    }
    return u;
  }
#ifdef DINO_HAS_CUDA
  const bool sources = b.format == data::CropFormat::sources;
  size_t total = 0;
  if (sources) {
    total = data::packed_sources_bytes(b.sources, b.norm);
  } else {
    for (size_t v = 0; v < b.views.size(); ++v) total += b.view_values(v) * sizeof(float);
  }
  u.buffer = int(next_);
  DeviceBuffer& d = buffers_[next_];
  next_ = (next_ + 1) % buffers_.size();
  reserve(d, total, sources);
  void* copy = cu::copy_stream();
  void* compute = cu::stream();
  // The copy overwrites the device buffer only once the kernels that read it last have run:
  // the render of two batches ago, queued before the step the device is computing now.
  cu::stream_wait_event(copy, d.consumed);
  if (sources) {
    cu::event_synchronize(d.uploaded);  // the staging memory's last copy (long done)
    data::pack_sources(b.sources, d.staging);
    cu::copy_h2d_async(d.device, d.staging, total, copy);
  } else {
    size_t offset = 0;
    for (size_t v = 0; v < b.views.size(); ++v) {
      const size_t bytes = b.view_values(v) * sizeof(float);
      cu::copy_h2d_async(static_cast<uint8_t*>(d.device) + offset, b.view_f32(v), bytes, copy);
      offset += bytes;
    }
  }
  cu::event_record(d.uploaded, copy);
  cu::stream_wait_event(compute, d.uploaded);
  if (sources) {
    u.views = data::render_packed_views_cuda(b.sources, d.device, b.norm);
  } else {
    size_t offset = 0;
    for (size_t v = 0; v < b.views.size(); ++v) {
      const int64_t S = b.view_sizes[v];
      Tensor t = Tensor::empty({b.batch, b.channels, S, S}, DType::f32, Device::cuda);
      cu::copy_d2d(t.raw_data(), static_cast<const uint8_t*>(d.device) + offset, t.nbytes());
      offset += t.nbytes();
      u.views.push_back(t);
    }
  }
  cu::event_record(d.consumed, compute);
  return u;
#else
  throw Error("[train] --device cuda: this build has no CUDA support");
#endif
}

void BatchUploader::copied(const Upload& u) const {
#ifdef DINO_HAS_CUDA
  if (u.buffer >= 0) cu::event_synchronize(buffers_[size_t(u.buffer)].uploaded);
#else
  (void)u;
#endif
}

}  // namespace dino
