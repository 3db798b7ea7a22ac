#pragma once
// The CUDA backend (core/backend.h): the launchers of kernels/cuda/kernels.h behind the kernel
// table, on the context's stream. Front ends hand it the dtypes core/precision.h chose; it
// checks what only the device limits (int extents, head dims) and names the op when it refuses.
// Each method is defined in its kernel's file, after the kernels and launchers it calls
// (softmax.cu ends with CudaBackend::softmax); backend.cpp holds memory, copies, conversions,
// and the queues: Queue::compute is the context stream, Queue::copy its copy stream.
#include <climits>

#include "core/backend.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

// The one stream every op runs on (kernels/cuda/context.h).
inline cudaStream_t op_stream() { return static_cast<cudaStream_t>(stream()); }
// Typed device pointers for the launchers.
inline float* f32_ptr(const Tensor& t) { return t.data<float>(); }
inline __nv_bfloat16* bf16_ptr(const Tensor& t) {
  return reinterpret_cast<__nv_bfloat16*>(t.data<bf16>());
}
inline bool is_bf16(const Tensor& t) { return t.dtype() == DType::bf16; }

// The kernels index with int; a larger extent is a clear error, not an overflow.
inline int as_int(const char* op, int64_t v, const char* what) {
  DINO_CHECK(v <= INT_MAX, "[", op, "] ", what, " = ", v, " is too large for the CUDA kernels");
  return int(v);
}

// An empty GEMM operand is refused, naming the op (cuBLASLt has no empty layouts).
inline void check_not_empty(const char* op, const Tensor& a, const Tensor& b) {
  DINO_CHECK(a.numel() > 0 && b.numel() > 0, "[", op, "] empty operands ", shape_str(a.shape()),
             " and ", shape_str(b.shape()), " are not supported on CUDA");
}

// Row ops on f32 or bf16 rows: f gets x's typed device pointer (float* or __nv_bfloat16*), and
// same_type(t, p) reads another tensor of the op as that type.
template <class F>
void with_rows(const Tensor& x, F&& f) {
  if (is_bf16(x))
    f(bf16_ptr(x));
  else
    f(f32_ptr(x));
}
template <class P>
P* same_type(const Tensor& t, P*) {
  return reinterpret_cast<P*>(t.raw_data());
}
inline int columns(const char* op, const Tensor& x) { return as_int(op, x.size(-1), "columns"); }

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::cuda; }
  bool available() const override { return cuda::available(); }
  std::string description() const override { return device_description(); }
  void* alloc(size_t bytes) const override;
  void free(void* p, size_t bytes) const override;
  void copy(void* dst, Device dst_device, const void* src, Device src_device,
            size_t bytes) const override;
  void synchronize() const override { cuda::synchronize(); }
  bool convert(const Tensor& dst, const Tensor& src) const override;
  bool fill(const Tensor& t, double value) const override;

  void* alloc_pinned(size_t bytes) const override { return cuda::alloc_pinned(bytes); }
  void free_pinned(void* p) const override { cuda::free_pinned(p); }
  DeviceEvent* event_create(bool timing) const override;
  void event_destroy(DeviceEvent* event) const override;
  void event_record(DeviceEvent* event, Queue queue) const override;
  void queue_wait(Queue queue, DeviceEvent* event) const override;
  void event_synchronize(DeviceEvent* event) const override;
  double elapsed_ms(DeviceEvent* start, DeviceEvent* end) const override;
  void copy_to_device_async(void* dst, const void* pinned_src, size_t bytes,
                            Queue queue) const override;
  void copy_to_host_async(void* pinned_dst, const void* src, size_t bytes,
                          Queue queue) const override;
  int device_count() const override { return cuda::device_count(); }
  void select_device(int index) const override { cuda::set_device(index); }
  bool graph_supported() const override { return true; }
  void graph_begin() const override { cuda::capture_begin(); }
  DeviceGraph* graph_end() const override;
  void graph_abort() const override { cuda::capture_abort(); }
  void graph_launch(DeviceGraph* graph) const override;
  void graph_destroy(DeviceGraph* graph) const override;
  DeviceGraphSize graph_size(const DeviceGraph* graph) const override;

#define DINO_KERNEL(name, params) void name params const override;
#include "core/kernel_table.def"
#undef DINO_KERNEL
};

}  // namespace dino::kernels::cuda
