#pragma once
// The CPU backend (core/backend.h): the reference kernels of kernels/cpu/kernels.h behind the
// kernel table, templated on the op's one dtype, f32 (training) or f64 (gradient checks).
// Each method is defined in its kernel's file, after the kernels it calls (softmax.cpp holds
// softmax_forward and CpuBackend::softmax); backend.cpp holds memory, copies and the
// synchronous streams, events and pinned memory (core/backend.h says what they mean here),
// elementwise.cpp and shape.cpp the maps, reductions and copies that are their own kernels.
#include <algorithm>

#include "core/backend.h"

namespace dino::kernels::cpu {

// Calls f(T{}) with T = float or double for the dtype; the front ends admit no other.
template <class F>
void dispatch_float(const char* op, DType t, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  throw Error(str_cat("[", op, "] expects f32 or f64 tensors on the cpu, got ", dtype_name(t)));
}

// out (C) = the column sums of g (R, C): each column's rows added in order into an Acc, and
// threads (when `parallel`) share out blocks of columns, so the result does not depend on the
// thread count.
template <class Acc, class T>
void column_sums(T* out, const T* g, int64_t R, int64_t C, bool parallel) {
  constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t n = std::min(kBlock, C - c0);
    Acc acc[kBlock] = {};
    for (int64_t r = 0; r < R; ++r) {
      const T* row = g + r * C + c0;
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) acc[c] += Acc(row[c]);
    }
    for (int64_t c = 0; c < n; ++c) out[c0 + c] = T(acc[c]);
  }
}

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  bool available() const override { return true; }
  std::string description() const override { return "cpu"; }
  void* alloc(size_t bytes) const override;
  void free(void* p, size_t bytes) const override;
  void copy(void* dst, Device dst_device, const void* src, Device src_device,
            size_t bytes) const override;
  void synchronize() const override {}
  bool convert(const Tensor&, const Tensor&) const override { return false; }
  bool fill(const Tensor&, double) const override { return false; }

  void* alloc_pinned(size_t bytes) const override;
  void free_pinned(void* p) const override;
  DeviceEvent* event_create(bool timing) const override;
  void event_destroy(DeviceEvent* event) const override;
  void event_record(DeviceEvent* event, Queue queue) const override;
  void queue_wait(Queue, DeviceEvent*) const override {}
  void event_synchronize(DeviceEvent*) const override {}
  double elapsed_ms(DeviceEvent* start, DeviceEvent* end) const override;
  void copy_to_device_async(void* dst, const void* pinned_src, size_t bytes,
                            Queue queue) const override;
  void copy_to_host_async(void* pinned_dst, const void* src, size_t bytes,
                          Queue queue) const override;
  int device_count() const override { return 1; }
  void select_device(int index) const override;
  bool graph_supported() const override { return false; }
  void graph_begin() const override { no_graphs(); }
  DeviceGraph* graph_end() const override { no_graphs(); }
  void graph_abort() const override { no_graphs(); }
  void graph_launch(DeviceGraph*) const override { no_graphs(); }
  void graph_destroy(DeviceGraph*) const override {}
  DeviceGraphSize graph_size(const DeviceGraph*) const override { no_graphs(); }

#define DINO_KERNEL(name, params) void name params const override;
#include "core/kernel_table.def"
#undef DINO_KERNEL

 private:
  [[noreturn]] static void no_graphs();
};

}  // namespace dino::kernels::cpu
