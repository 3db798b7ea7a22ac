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
