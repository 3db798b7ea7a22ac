#pragma once
// A run's batches on its device. On the CPU the step reads copies of the loader's normalised
// f32 views. On a device (CUDA) the bytes of batch t+1 travel on the backend's copy queue while
// the device still computes step t (core/backend.h: streams, events and pinned memory):
// upload() queues the copy of the batch (the loader's pinned f32 views, or its sources packed
// into pinned memory for data.augment=gpu) into one of a few device buffers, where the copy
// waits only for the kernels that last read that same buffer, records an event, and makes the
// compute queue wait for that event before the kernels that turn the bytes into the step's view
// tensors. A batch's host memory must stay untouched until copied() says the
// copy has landed; the training loop holds the loader's lease until then.
#include <array>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"
#include "data/loader.h"

namespace dino {

class BatchUploader {
 public:
  explicit BatchUploader(Device device);
  // Waits for the copies still in flight: the host memory they read may be freed next.
  ~BatchUploader();
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;

  // Where the loader should put batches for `device`: the backend's pinned host memory on a
  // device (so the copy queue reads them directly), the loader's own (empty functions) on the CPU.
  static data::BufferAllocator allocator(Device device);
  // The batch's views as (B, C, S, S) f32 tensors on the device, ready in the compute stream's
  // order. Returns a ticket for copied().
  struct Upload {
    std::vector<Tensor> views;
    int buffer = -1;  // the device buffer the copy went to; -1 when nothing is in flight
  };
  Upload upload(const data::MultiCropBatch& batch);
  // Blocks until the copy of `u` has read all of its host memory (at once on the CPU).
  void copied(const Upload& u) const;

 private:
  struct DeviceBuffer {
    void* device = nullptr;   // the batch's bytes on the device
    void* staging = nullptr;  // pinned host memory the sources are packed into (sources only)
    size_t capacity = 0;      // bytes of each
    DeviceEvent* uploaded = nullptr;  // on the copy queue: the copy into `device` has landed
    DeviceEvent* consumed = nullptr;  // on the compute queue: the kernels reading `device` ran
  };
  void reserve(DeviceBuffer& d, size_t bytes, bool staging);

  Device device_;
  const Backend* backend_ = nullptr;  // the device's; none on the CPU
  // The views are rendered (or copied) out of the buffer before the step, so the copy of batch
  // t+1 waits for the render of batch t-1, queued before step t-1: two buffers leave it a
  // whole step of slack.
  std::array<DeviceBuffer, 2> buffers_;
  size_t next_ = 0;
};

}  // namespace dino
