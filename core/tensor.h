#pragma once
// Tensor: a cheap handle (shared_ptr to an impl) over contiguous row-major storage.
// Views exist only where they are free: narrow/chunk along dim 0 and reshape. Everything
// else that moves data (permute, transpose) is an op that copies (core/ops.h).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace dino {

class Rng;
struct GradHooks;
struct Node;
struct Storage;

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "(2, 197, 384)"
int64_t shape_numel(const Shape& s);

struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;

  // ---- creation ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape);
  static Tensor scalar(double value, DType dtype = DType::f32);
  // Seeded random initialisation on the CPU (then .to(device) if needed).
  static Tensor randn(const Shape& shape, Rng& rng, double std = 1.0, DType dtype = DType::f32);
  static Tensor uniform(const Shape& shape, Rng& rng, double lo, double hi,
                        DType dtype = DType::f32);
  // Normal(0, std) truncated to [lo, hi] (absolute bounds, like timm's trunc_normal_).
  static Tensor trunc_normal(const Shape& shape, Rng& rng, double std, double lo = -2.0,
                             double hi = 2.0, DType dtype = DType::f32);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return int64_t(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype()); }
  std::string str() const;  // "f32 cpu (2, 3)"

  // ---- data access (CPU or CUDA pointer; typed access checks the dtype) ----
  void* raw_data() const;
  template <class T>
  T* data() const;
  double item() const;                   // one-element tensor (any device) as double
  std::vector<float> to_vector() const;  // any dtype/device -> host floats

  // ---- views (share storage; differentiable) ----
  Tensor narrow(int64_t start, int64_t length) const;  // along dim 0
  std::vector<Tensor> chunk(int64_t n) const;          // along dim 0, equal parts
  Tensor reshape(const Shape& shape) const;            // one dim may be -1
  Tensor detach() const;  // same storage, no autograd history, requires_grad false

  // ---- copies ----
  Tensor to(Device device) const;     // no-op (same handle) when already there
  Tensor to(DType dtype) const;       // no-op when already that dtype; not differentiable
  Tensor clone() const;               // deep copy, no history
  void copy_from(const Tensor& src);  // same shape; any dtype/device conversion
  void fill(double value);
  // In-place writers that bypass copy_from/fill (the optimizer, the EMA, kernels writing into
  // an existing tensor) call this after writing, so cached bf16 copies are redone.
  void mark_modified();

  // ---- CUDA mixed precision (ARCHITECTURE §3) ----
  // The bf16 copy of this f32 tensor that GEMMs read (a parameter's master weights). Cached
  // on the tensor; made again by a cast when the data changed since (mark_modified). The
  // fused AdamW and EMA kernels write the copy while they update the weights and hand it
  // over with set_bf16_copy, so a training step casts nothing. A bf16 tensor returns itself.
  Tensor bf16_copy() const;
  // `copy` (bf16, same shape and device) now holds bf16(this tensor's current data).
  void set_bf16_copy(const Tensor& copy);

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);
  const Tensor& grad() const;  // undefined until a backward reaches this tensor
  void set_grad(const Tensor& g);
  void zero_grad();  // sets grad to undefined (PyTorch's set_to_none)
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> node);
  // Backpropagates from a one-element tensor (gradient 1) or with an explicit gradient.
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;

  bool same_as(const Tensor& other) const { return impl_ == other.impl_; }
  TensorImpl* impl() const { return impl_.get(); }

 private:
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<TensorImpl> impl_;
  friend struct TensorImpl;
  friend Tensor make_view(const Tensor& base, const Shape& shape, size_t byte_offset);
};

struct TensorImpl {
  Shape shape;
  DType dtype = DType::f32;
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes into storage
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  std::shared_ptr<GradHooks> grad_hooks;  // autograd.h: add_grad_ready_hook
  Tensor bf16_copy;                       // see Tensor::bf16_copy
  uint64_t bf16_copy_version = 0;         // the storage version bf16_copy was made from
  static Tensor wrap(std::shared_ptr<TensorImpl> impl) { return Tensor(std::move(impl)); }
};

// A tensor sharing base's storage at a byte offset, without autograd history.
Tensor make_view(const Tensor& base, const Shape& shape, size_t byte_offset);

}  // namespace dino
