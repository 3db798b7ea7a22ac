#include "train/batch_upload.h"

#include <algorithm>

#include "core/backend.h"
#include "core/error.h"
#include "core/storage.h"
#include "data/augment_gpu.h"

namespace dino {

BatchUploader::BatchUploader(Device device) : device_(device) {
  if (device_ == Device::cpu) return;
  backend_ = &backend(device_, "train");
  for (DeviceBuffer& d : buffers_) {
    d.uploaded = backend_->event_create(false);
    d.consumed = backend_->event_create(false);
  }
}

BatchUploader::~BatchUploader() {
  if (!backend_) return;
  try {
    const Backend& b = *backend_;
    for (DeviceBuffer& d : buffers_) {
      b.event_synchronize(d.uploaded);
      b.event_synchronize(d.consumed);
      b.free(d.device, d.capacity);
      b.free_pinned(d.staging);
      b.event_destroy(d.uploaded);
      b.event_destroy(d.consumed);
    }
  } catch (const Error&) {  // a failed device: its error surfaced where the failure happened
  }
}

data::BufferAllocator BatchUploader::allocator(Device device) {
  data::BufferAllocator a;
  if (device != Device::cpu) {
    const Backend* b = &backend(device, "train");
    a.allocate = [b](size_t bytes) { return b->alloc_pinned(bytes); };
    a.release = [b](void* p) { b->free_pinned(p); };
  }
  return a;
}

void BatchUploader::reserve(DeviceBuffer& d, size_t bytes, bool staging) {
  const Backend& b = *backend_;
  if (d.capacity >= bytes && (!staging || d.staging)) return;
  // Sources vary in size from batch to batch: room for a quarter more, so growing stays rare.
  const size_t capacity = std::max(bytes + bytes / 4, d.capacity);
  b.event_synchronize(d.uploaded);
  b.event_synchronize(d.consumed);
  b.free(d.device, d.capacity);
  b.free_pinned(d.staging);
  d.staging = nullptr;
  d.device = b.alloc(capacity);
  if (staging) d.staging = b.alloc_pinned(capacity);
  d.capacity = capacity;
  // The allocation is ordered on the compute queue; the copy queue writes it next.
  b.synchronize();
}

BatchUploader::Upload BatchUploader::upload(const data::MultiCropBatch& batch) {
  Upload u;
  DINO_CHECK(batch.format != data::CropFormat::u8,
             "[train] the step reads f32 views or sources; "
             "the loader handed over u8 views");
  if (device_ == Device::cpu) {
    DINO_CHECK(batch.format == data::CropFormat::f32,
               "[train] data.augment=gpu needs --device cuda");
    for (size_t v = 0; v < batch.views.size(); ++v) {
      const int64_t S = batch.view_sizes[v];
      Tensor t = Tensor::empty({batch.batch, batch.channels, S, S}, DType::f32, device_);
      DINO_CHECK(size_t(t.numel()) == batch.view_values(v), "[train] view ", v, " holds ",
                 batch.view_values(v), " values for ", shape_str(t.shape()));
      copy_bytes(t.raw_data(), device_, batch.view_f32(v), Device::cpu, t.nbytes());
      u.views.push_back(t);
    }
    return u;
  }
  const Backend& b = *backend_;
  const bool sources = batch.format == data::CropFormat::sources;
  size_t total = 0;
  if (sources) {
    total = data::packed_sources_bytes(batch.sources, batch.norm);
  } else {
    for (size_t v = 0; v < batch.views.size(); ++v) total += batch.view_values(v) * sizeof(float);
  }
  u.buffer = int(next_);
  DeviceBuffer& d = buffers_[next_];
  next_ = (next_ + 1) % buffers_.size();
  reserve(d, total, sources);
  // The copy overwrites the device buffer only once the kernels that read it last have run:
  // the render of two batches ago, queued before the step the device is computing now.
  b.queue_wait(Queue::copy, d.consumed);
  if (sources) {
    b.event_synchronize(d.uploaded);  // the staging memory's last copy (long done)
    data::pack_sources(batch.sources, d.staging);
    b.copy_to_device_async(d.device, d.staging, total, Queue::copy);
  } else {
    size_t offset = 0;
    for (size_t v = 0; v < batch.views.size(); ++v) {
      const size_t bytes = batch.view_values(v) * sizeof(float);
      b.copy_to_device_async(static_cast<uint8_t*>(d.device) + offset, batch.view_f32(v), bytes,
                             Queue::copy);
      offset += bytes;
    }
  }
  b.event_record(d.uploaded, Queue::copy);
  b.queue_wait(Queue::compute, d.uploaded);
  if (sources) {
    u.views = data::render_packed_views_cuda(batch.sources, d.device, batch.norm);
  } else {
    size_t offset = 0;
    for (size_t v = 0; v < batch.views.size(); ++v) {
      const int64_t S = batch.view_sizes[v];
      Tensor t = Tensor::empty({batch.batch, batch.channels, S, S}, DType::f32, device_);
      b.copy(t.raw_data(), device_, static_cast<const uint8_t*>(d.device) + offset, device_,
             t.nbytes());
      offset += t.nbytes();
      u.views.push_back(t);
    }
  }
  b.event_record(d.consumed, Queue::compute);
  return u;
}

void BatchUploader::copied(const Upload& u) const {
  if (u.buffer >= 0) backend_->event_synchronize(buffers_[size_t(u.buffer)].uploaded);
}

}  // namespace dino
