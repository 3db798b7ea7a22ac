#pragma once
// Storage owns memory. Host memory is 64-byte aligned (vector loads, no false sharing);
// CUDA memory comes from the stream-ordered pool in kernels/cuda/runtime.h.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace dino {

struct Storage {
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::cpu;
  // Bumped by every in-place write that goes through Tensor (copy_from, fill,
  // mark_modified), so a cached bf16 copy of a parameter knows when it is stale.
  uint64_t version = 0;
};

bool cuda_available();  // false when built without CUDA or when no GPU is usable
// Copies bytes between any two devices (CPU<->CUDA, CUDA<->CUDA, CPU<->CPU).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace dino
