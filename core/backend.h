#pragma once
// The kernel table behind the op front ends: one Backend per device (ARCHITECTURE §2).
//
// An op (core/ops_<family>.cpp) validates its arguments, decides its dtypes (core/precision.h),
// allocates its outputs, calls its device's forward here and records ONE autograd node whose
// backward calls the same device's backward. A backend does not validate shapes (the front end
// has); it throws dino::Error naming the op only for what its device cannot do (a head dim the
// CUDA attention has no kernel for). Signatures put outputs first (written, never accumulated
// into), then inputs, then sizes; tensors are contiguous.
//
// The CPU backend (kernels/cpu/backend*.cpp) is always there. The CUDA backend
// (kernels/cuda/backend*.cpp) is linked into a build with CUDA, its emulated form into the
// emulator's build (tests/simt), and kernels/no_cuda.cpp into a build without: the core is
// compiled once and knows none of them.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/op_codes.h"
#include "core/tensor.h"

namespace dino {

namespace data {
struct AugmentSource;
struct ViewParams;
}  // namespace data

// The two queues a device runs work on, each in order: the ops' (compute) and one for
// transfers that overlap them (copy: the next batch's upload while the step computes).
// Events order one after the other.
enum class Queue { compute, copy };
// A point in a device's queue (opaque: a cudaEvent_t on CUDA, a time stamp on the CPU).
struct DeviceEvent;
// Work of the compute queue recorded once and replayed (opaque: a CUDA graph with its arena).
struct DeviceGraph;
struct DeviceGraphSize {
  size_t nodes = 0;        // kernels and copies recorded
  size_t arena_bytes = 0;  // device memory its buffers live in
  size_t arena_peak = 0;   // the most of it in use at once while recording
};

// Rows and columns of a tensor seen as (numel / last, last): how the row ops (softmax, the
// norms, the row reductions) and their kernels see it.
inline int64_t rows_of(const Tensor& t) { return t.dim() ? t.numel() / t.size(-1) : 1; }
inline int64_t cols_of(const Tensor& t) { return t.dim() ? t.size(-1) : 1; }

// One parameter's AdamW update (torch.optim.AdamW): param, exp_avg, exp_avg_sq updated in place
// from grad; param_bf16 (undefined: none) is written with bf16(param) after the update.
struct AdamWUpdate {
  Tensor param, grad, exp_avg, exp_avg_sq, param_bf16;
  double lr = 0, weight_decay = 0;
  int64_t step = 0;  // this update's step count: 1 on the parameter's first update
};

// One teacher parameter following its student parameter (the EMA): teacher updated in place;
// teacher_bf16 (undefined: none) is written with bf16(teacher) after the update.
struct EmaUpdate {
  Tensor teacher, student, teacher_bf16;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // ---- the device: memory, copies, conversions --------------------------------------------
  virtual Device device() const = 0;
  // A usable device; description() says which or why not ("no CUDA device (...)").
  virtual bool available() const = 0;
  virtual std::string description() const = 0;
  // alloc(0) returns a valid pointer of no bytes; free(nullptr) does nothing.
  virtual void* alloc(size_t bytes) const = 0;
  virtual void free(void* p, size_t bytes) const = 0;
  // Copies between this device and the host, or within this device (dst_device == src_device).
  // A copy to the host has finished when it returns; others may still run in stream order.
  virtual void copy(void* dst, Device dst_device, const void* src, Device src_device,
                    size_t bytes) const = 0;
  virtual void synchronize() const = 0;
  // dst <- src, same shape, of different dtypes, both on this device. Returns false when this
  // backend has no such conversion (the caller converts on the host).
  virtual bool convert(const Tensor& dst, const Tensor& src) const = 0;
  // t <- value everywhere (f32, f64 or bf16). Returns false when not handled here.
  virtual bool fill(const Tensor& t, double value) const = 0;

  // ---- streams, events and pinned memory --------------------------------------------------
  // What overlaps transfers with the ops (train/batch_upload.h, train/stats_readback.h), times
  // the data-parallel reduction (dist/reducer.h) and binds a rank to its device (dist/world.h).
  // The CPU runs all of it on the calling thread as it is called: its pinned memory is
  // ordinary 64-byte aligned host memory, its asynchronous copies are memcpy, done on return,
  // its events complete when recorded (each holding the time of its last record), so waiting
  // for one returns at once; it has one device.
  //
  // Page-locked host memory, which a queued copy reads or writes without staging.
  // alloc_pinned(0) returns nullptr; free_pinned(nullptr) does nothing.
  virtual void* alloc_pinned(size_t bytes) const = 0;
  virtual void free_pinned(void* p) const = 0;
  // An event; `timing`: it can be an end of elapsed_ms (a plain event costs less on CUDA).
  // event_destroy(nullptr) does nothing.
  virtual DeviceEvent* event_create(bool timing) const = 0;
  virtual void event_destroy(DeviceEvent* event) const = 0;
  // Marks the point of `queue` after the work queued on it so far. An event never recorded
  // counts as complete.
  virtual void event_record(DeviceEvent* event, Queue queue) const = 0;
  // Work queued on `queue` from now on waits for the work before the event's last record.
  virtual void queue_wait(Queue queue, DeviceEvent* event) const = 0;
  // Blocks the host until the work before the event's last record has run.
  virtual void event_synchronize(DeviceEvent* event) const = 0;
  // Milliseconds between the last records of two timing events; waits for `end` first.
  virtual double elapsed_ms(DeviceEvent* start, DeviceEvent* end) const = 0;
  // Copies queued on `queue`, not waited for: the pinned host side must stay untouched until an
  // event recorded on `queue` after the copy has completed. bytes == 0 queues nothing.
  virtual void copy_to_device_async(void* dst, const void* pinned_src, size_t bytes,
                                    Queue queue) const = 0;
  virtual void copy_to_host_async(void* pinned_dst, const void* src, size_t bytes,
                                  Queue queue) const = 0;
  // The devices of this kind on this node (0 when none is usable: description() says why), and
  // the one this process's later work goes to (index < device_count()).
  virtual int device_count() const = 0;
  virtual void select_device(int index) const = 0;

  // ---- graphs: the compute queue's work recorded once, replayed by one launch ---------------
  // (train/step_graph.h). CUDA's; the CPU runs each op as it is called and has none:
  // graph_supported() is false there and the others throw. Between begin and end the ops queue
  // nothing that runs: their work is recorded, and the memory they allocate lives in an arena
  // the graph owns, at the same addresses on every replay (kernels/cuda/runtime.h says what
  // frees, uploads and read-backs do meanwhile). abort ends a recording that failed.
  virtual bool graph_supported() const = 0;
  virtual void graph_begin() const = 0;
  virtual DeviceGraph* graph_end() const = 0;
  virtual void graph_abort() const = 0;
  virtual void graph_launch(DeviceGraph* graph) const = 0;
  virtual void graph_destroy(DeviceGraph* graph) const = 0;  // nullptr: nothing
  virtual DeviceGraphSize graph_size(const DeviceGraph* graph) const = 0;

  // ---- the ops' kernels (core/kernel_table.def) -------------------------------------------
#define DINO_KERNEL(name, params) virtual void name params const = 0;
#include "core/kernel_table.def"
#undef DINO_KERNEL
};

// The CPU backend (kernels/cpu/backend.cpp).
const Backend& cpu_backend();
// The backend of a device. Throws dino::Error naming `op` when this build has none for it
// ("this build has no CUDA support") or, with `need_device`, when it has no usable device.
const Backend& backend(Device device, const char* op = "backend", bool need_device = true);
// The CUDA backend this build links, or nullptr (kernels/no_cuda.cpp). Its device may still be
// absent: check available().
const Backend* cuda_backend();

}  // namespace dino
