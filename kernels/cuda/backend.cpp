// The CUDA backend's memory, copies, conversions, queues and events (kernels/cuda/runtime.h),
// and the table itself: cuda_backend() is what links this backend into a build (core/backend.h).
#include "kernels/cuda/backend.h"

namespace dino {

namespace kernels::cuda {

void* CudaBackend::alloc(size_t bytes) const { return cuda::alloc(bytes == 0 ? 64 : bytes); }

void CudaBackend::free(void* p, size_t) const { cuda::free(p); }

void CudaBackend::copy(void* dst, Device dst_device, const void* src, Device src_device,
                       size_t bytes) const {
  if (dst_device == Device::cuda && src_device == Device::cpu)
    copy_h2d(dst, src, bytes);
  else if (dst_device == Device::cpu)
    copy_d2h(dst, src, bytes);
  else
    copy_d2d(dst, src, bytes);
}

namespace {

void* stream_of(Queue queue) { return queue == Queue::copy ? copy_stream() : stream(); }
void* event_of(DeviceEvent* e) { return static_cast<void*>(e); }

}  // namespace

cuda::Graph* graph_of(DeviceGraph* g) { return reinterpret_cast<cuda::Graph*>(g); }

DeviceGraph* CudaBackend::graph_end() const {
  return reinterpret_cast<DeviceGraph*>(cuda::capture_end());
}

void CudaBackend::graph_launch(DeviceGraph* graph) const { cuda::graph_launch(graph_of(graph)); }

void CudaBackend::graph_destroy(DeviceGraph* graph) const { cuda::graph_destroy(graph_of(graph)); }

DeviceGraphSize CudaBackend::graph_size(const DeviceGraph* graph) const {
  const cuda::GraphSize s = cuda::graph_size(reinterpret_cast<const cuda::Graph*>(graph));
  return {s.nodes, s.arena_bytes, s.arena_peak};
}

DeviceEvent* CudaBackend::event_create(bool timing) const {
  return static_cast<DeviceEvent*>(cuda::event_create(timing));
}

void CudaBackend::event_destroy(DeviceEvent* event) const { cuda::event_destroy(event_of(event)); }

void CudaBackend::event_record(DeviceEvent* event, Queue queue) const {
  cuda::event_record(event_of(event), stream_of(queue));
}

void CudaBackend::queue_wait(Queue queue, DeviceEvent* event) const {
  stream_wait_event(stream_of(queue), event_of(event));
}

void CudaBackend::event_synchronize(DeviceEvent* event) const {
  cuda::event_synchronize(event_of(event));
}

double CudaBackend::elapsed_ms(DeviceEvent* start, DeviceEvent* end) const {
  return event_elapsed_ms(event_of(start), event_of(end));
}

void CudaBackend::copy_to_device_async(void* dst, const void* pinned_src, size_t bytes,
                                       Queue queue) const {
  copy_h2d_async(dst, pinned_src, bytes, stream_of(queue));
}

void CudaBackend::copy_to_host_async(void* pinned_dst, const void* src, size_t bytes,
                                     Queue queue) const {
  copy_d2h_async(pinned_dst, src, bytes, stream_of(queue));
}

bool CudaBackend::convert(const Tensor& dst, const Tensor& src) const {
  if (dst.dtype() == DType::bf16 && src.dtype() == DType::f32) {
    convert_f32_to_bf16(dst.raw_data(), src.raw_data(), dst.numel());
    return true;
  }
  if (dst.dtype() == DType::f32 && src.dtype() == DType::bf16) {
    convert_bf16_to_f32(dst.raw_data(), src.raw_data(), dst.numel());
    return true;
  }
  return false;
}

bool CudaBackend::fill(const Tensor& t, double value) const {
  if (t.dtype() == DType::f32) {
    fill_f32(t.raw_data(), float(value), t.numel());
    return true;
  }
  if (t.dtype() == DType::bf16) {
    fill_bf16(bf16_ptr(t), float(value), t.numel(), op_stream());
    return true;
  }
  return false;
}

}  // namespace kernels::cuda

const Backend* cuda_backend() {
  static const kernels::cuda::CudaBackend* b = new kernels::cuda::CudaBackend;  // never destroyed
  return b;
}

}  // namespace dino
