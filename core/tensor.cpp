#include "core/tensor.h"

#include <cmath>
#include <cstring>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/rng.h"
#include "core/storage.h"

namespace dino {

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

namespace {

void check_shape(const Shape& shape) {
  DINO_CHECK(shape.size() <= 5, "[tensor] ", shape.size(), " dims in ", shape_str(shape),
             "; at most 5 are supported");
  for (int64_t d : shape) DINO_CHECK(d >= 0, "[tensor] negative size in ", shape_str(shape));
}

template <class T>
double load_as_double(const void* p, int64_t i) {
  return double(static_cast<const T*>(p)[i]);
}

double load_elem(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return load_as_double<float>(p, i);
    case DType::f64: return load_as_double<double>(p, i);
    case DType::bf16: return double(float(static_cast<const bf16*>(p)[i]));
    case DType::i32: return load_as_double<int32_t>(p, i);
    case DType::u8: return load_as_double<uint8_t>(p, i);
  }
  return 0;
}

void store_elem(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = float(v); break;
    case DType::f64: static_cast<double*>(p)[i] = v; break;
    case DType::bf16: static_cast<bf16*>(p)[i] = bf16(float(v)); break;
    case DType::i32: static_cast<int32_t*>(p)[i] = int32_t(v); break;
    case DType::u8: static_cast<uint8_t*>(p)[i] = uint8_t(v); break;
  }
}

// Host-side conversion between any two dtypes.
void convert_host(void* dst, DType dt, const void* src, DType st, int64_t n) {
  if (dt == st) {
    std::memcpy(dst, src, size_t(n) * dtype_size(dt));
    return;
  }
  if (dt == DType::f32 && st == DType::bf16) {
    const bf16* s = static_cast<const bf16*>(src);
    float* d = static_cast<float*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = float(s[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) store_elem(dst, dt, i, load_elem(src, st, i));
}

template <class Fill>
Tensor host_filled(const Shape& shape, DType dtype, Fill&& fill) {
  Tensor t = Tensor::empty(shape, dtype == DType::f64 ? DType::f64 : DType::f32, Device::cpu);
  const int64_t n = t.numel();
  if (t.dtype() == DType::f64) {
    double* p = t.data<double>();
    for (int64_t i = 0; i < n; ++i) p[i] = fill();
  } else {
    float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = float(fill());
  }
  return dtype == t.dtype() ? t : t.to(dtype);
}

}  // namespace

Tensor make_view(const Tensor& base, const Shape& shape, size_t byte_offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = base.dtype();
  impl->storage = base.impl()->storage;
  impl->offset = base.impl()->offset + byte_offset;
  return Tensor(std::move(impl));
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(0.0);
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  DINO_CHECK(int64_t(values.size()) == shape_numel(shape), "[from_vector] ", values.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::f32);
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape) {
  DINO_CHECK(int64_t(values.size()) == shape_numel(shape), "[from_vector] ", values.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::f64);
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(double));
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::randn(const Shape& shape, Rng& rng, double std, DType dtype) {
  return host_filled(shape, dtype, [&] { return std * rng.normal(); });
}

Tensor Tensor::uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype) {
  return host_filled(shape, dtype, [&] { return rng.uniform(lo, hi); });
}

Tensor Tensor::trunc_normal(const Shape& shape, Rng& rng, double std, double lo, double hi,
                            DType dtype) {
  DINO_CHECK(lo < hi && std > 0, "[trunc_normal] needs lo < hi and std > 0");
  return host_filled(shape, dtype, [&] {
    for (;;) {  // rejection sampling: exact, and cheap for the usual |bound| >> std
      const double v = std * rng.normal();
      if (v >= lo && v <= hi) return v;
    }
  });
}

const Shape& Tensor::shape() const {
  DINO_CHECK(impl_, "[tensor] use of an undefined tensor");
  return impl_->shape;
}

int64_t Tensor::size(int64_t d) const {
  const int64_t n = dim();
  const int64_t k = d < 0 ? d + n : d;
  DINO_CHECK(k >= 0 && k < n, "[tensor] dim ", d, " out of range for shape ", shape_str(shape()));
  return shape()[size_t(k)];
}

int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const {
  shape();  // throws for an undefined tensor
  return impl_->dtype;
}

Device Tensor::device() const {
  shape();
  return impl_->storage->device;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return str_cat(dtype_name(dtype()), " ", device_name(device()), " ", shape_str(shape()));
}

void* Tensor::raw_data() const {
  shape();
  return static_cast<char*>(impl_->storage->data) + impl_->offset;
}

template <class T>
T* Tensor::data() const {
  DINO_CHECK(dtype() == dtype_of<T>::value, "[data] tensor is ", dtype_name(dtype()),
             ", accessed as ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template bf16* Tensor::data<bf16>() const;
template int32_t* Tensor::data<int32_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;

double Tensor::item() const {
  DINO_CHECK(numel() == 1, "[item] tensor ", shape_str(shape()), " has ", numel(), " elements");
  Tensor h = to(Device::cpu);
  return load_elem(h.raw_data(), h.dtype(), 0);
}

std::vector<float> Tensor::to_vector() const {
  Tensor h = to(Device::cpu).to(DType::f32);
  const float* p = h.data<float>();
  return std::vector<float>(p, p + h.numel());
}

Tensor Tensor::narrow(int64_t start, int64_t length) const {
  DINO_CHECK(dim() >= 1, "[narrow] needs at least one dim");
  DINO_CHECK(start >= 0 && length >= 0 && start + length <= shape()[0], "[narrow] rows [", start,
             ", ", start + length, ") out of range for ", shape_str(shape()));
  Shape s = shape();
  s[0] = length;
  const int64_t row = numel() / std::max<int64_t>(shape()[0], 1);
  Tensor out = make_view(*this, s, size_t(start * row) * dtype_size(dtype()));
  if (needs_grad({*this})) {
    const Shape full = shape();
    record(out, "narrow", {*this}, [full, start, length](const Tensor& g) {
      Tensor gin = Tensor::zeros(full, g.dtype(), g.device());
      gin.narrow(start, length).copy_from(g);
      return std::vector<Tensor>{gin};
    });
  }
  return out;
}

std::vector<Tensor> Tensor::chunk(int64_t n) const {
  DINO_CHECK(n > 0 && dim() >= 1 && shape()[0] % n == 0, "[chunk] cannot split dim 0 of ",
             shape_str(shape()), " into ", n, " equal parts");
  const int64_t len = shape()[0] / n;
  std::vector<Tensor> parts;
  for (int64_t i = 0; i < n; ++i) parts.push_back(narrow(i * len, len));
  return parts;
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      DINO_CHECK(infer < 0, "[reshape] more than one -1 in ", shape_str(new_shape));
      infer = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    DINO_CHECK(known > 0 && numel() % known == 0, "[reshape] cannot reshape ", shape_str(shape()),
               " into ", shape_str(new_shape));
    s[size_t(infer)] = numel() / known;
  }
  DINO_CHECK(shape_numel(s) == numel(), "[reshape] cannot reshape ", shape_str(shape()), " (",
             numel(), " elements) into ", shape_str(new_shape));
  check_shape(s);
  Tensor out = make_view(*this, s, 0);
  if (needs_grad({*this})) {
    const Shape old = shape();
    record(out, "reshape", {*this},
           [old](const Tensor& g) { return std::vector<Tensor>{g.reshape(old)}; });
  }
  return out;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), 0); }

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out = empty(shape(), dtype(), device);
  copy_bytes(out.raw_data(), device, raw_data(), this->device(), nbytes());
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), dt, device());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_bytes(out.raw_data(), device(), raw_data(), device(), nbytes());
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  DINO_CHECK(src.numel() == numel(), "[copy_from] source ", src.str(), " does not match ", str());
  mark_modified();
  if (src.dtype() == dtype()) {
    copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
    return;
  }
  if (device() == src.device() && backend(device(), "copy_from", false).convert(*this, src)) return;
  Tensor hs = src.to(Device::cpu);
  Tensor hd = device() == Device::cpu ? *this : empty(shape(), dtype(), Device::cpu);
  convert_host(hd.raw_data(), dtype(), hs.raw_data(), hs.dtype(), numel());
  if (!hd.same_as(*this)) copy_bytes(raw_data(), device(), hd.raw_data(), Device::cpu, nbytes());
}

void Tensor::fill(double value) {
  const int64_t n = numel();
  mark_modified();
  if (backend(device(), "fill", false).fill(*this, value)) return;
  if (device() == Device::cpu) {
    if (dtype() == DType::f32) {
      float* p = data<float>();
      for (int64_t i = 0; i < n; ++i) p[i] = float(value);
    } else {
      for (int64_t i = 0; i < n; ++i) store_elem(raw_data(), dtype(), i, value);
    }
    return;
  }
  Tensor h = full(shape(), value, dtype(), Device::cpu);
  copy_bytes(raw_data(), device(), h.raw_data(), Device::cpu, nbytes());
}

void Tensor::mark_modified() { ++impl_->storage->version; }

Tensor Tensor::bf16_copy() const {
  if (dtype() == DType::bf16) return *this;
  DINO_CHECK(dtype() == DType::f32, "[bf16_copy] needs an f32 tensor, got ", str());
  TensorImpl& im = *impl_;
  if (!im.bf16_copy.defined() || im.bf16_copy_version != im.storage->version) {
    Tensor copy = empty(shape(), DType::bf16, device());
    copy.copy_from(detach());
    im.bf16_copy = copy;
    im.bf16_copy_version = im.storage->version;
  }
  return im.bf16_copy;
}

void Tensor::set_bf16_copy(const Tensor& copy) {
  DINO_CHECK(copy.dtype() == DType::bf16 && copy.shape() == shape() && copy.device() == device(),
             "[bf16_copy] ", copy.str(), " cannot stand for ", str());
  impl_->bf16_copy = copy;
  impl_->bf16_copy_version = impl_->storage->version;
}

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  shape();
  // bf16 activations (and their gradients) exist on CUDA only (ARCHITECTURE §3).
  DINO_CHECK(!on || dtype() == DType::f32 || dtype() == DType::f64 ||
                 (dtype() == DType::bf16 && device() == Device::cuda),
             "[requires_grad] only floating tensors can require gradients, not ",
             dtype_name(dtype()));
  impl_->requires_grad = on;
  return *this;
}

const Tensor& Tensor::grad() const {
  shape();
  return impl_->grad;
}

void Tensor::set_grad(const Tensor& g) {
  shape();
  impl_->grad = g;
}

void Tensor::zero_grad() {
  if (impl_) impl_->grad = Tensor();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  shape();
  return impl_->grad_fn;
}

void Tensor::set_grad_fn(std::shared_ptr<Node> node) {
  shape();
  impl_->grad_fn = std::move(node);
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  run_backward(*this, grad_output, retain_graph);
}

}  // namespace dino
