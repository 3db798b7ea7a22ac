#include "core/optim.h"

#include <cmath>

#include "core/ops_util.h"

namespace dino {

using namespace detail;

AdamW::AdamW(std::vector<ParamGroup> groups, double beta1, double beta2, double eps)
    : groups_(std::move(groups)), beta1_(beta1), beta2_(beta2), eps_(eps) {
  for (auto& group : groups_)
    for (auto& [name, p] : group.params) {
      DINO_CHECK(!state_.count(name), "[adamw] parameter '", name, "' is in two groups");
      state_[name] = AdamWState{Tensor::zeros(p.shape(), p.dtype(), p.device()),
                                Tensor::zeros(p.shape(), p.dtype(), p.device()), 0, Tensor()};
    }
}

namespace {

// The device every parameter lives on; throws when they are split across devices.
Device params_device(const std::vector<ParamGroup>& groups) {
  bool cpu = false, cuda = false;
  for (const auto& group : groups)
    for (const auto& [name, p] : group.params) (p.device() == Device::cuda ? cuda : cpu) = true;
  DINO_CHECK(!(cpu && cuda), "[adamw] some parameters are on the CPU and some on CUDA; move the "
             "whole model (Module::to) before building the optimizer");
  return cuda ? Device::cuda : Device::cpu;
}

// One parameter's update on the CPU, its bias corrections already formed.
struct CpuUpdate {
  Tensor p, g;
  AdamWState* st;
  double step_size, bc2_sqrt, decay;
};

// torch.optim.AdamW's single-tensor arithmetic. A worksharing loop without a barrier: every
// thread of the enclosing parallel region calls it, and elements are independent.
template <class T>
void adamw_elements(const CpuUpdate& u, double b1, double b2, double eps) {
  T* w = u.p.data<T>();
  const T* gp = u.g.data<T>();
  T* m = u.st->exp_avg.data<T>();
  T* v = u.st->exp_avg_sq.data<T>();
  const double decay = u.decay, step_size = u.step_size, bc2_sqrt = u.bc2_sqrt;
  const int64_t n = u.p.numel();
#pragma omp for schedule(static) nowait
  for (int64_t i = 0; i < n; ++i) {
    w[i] = T(w[i] * decay);
    m[i] = T(b1 * m[i] + (1 - b1) * gp[i]);
    v[i] = T(b2 * v[i] + (1 - b2) * gp[i] * gp[i]);
    const double denom = std::sqrt(double(v[i])) / bc2_sqrt + eps;
    w[i] = T(w[i] - step_size * double(m[i]) / denom);
  }
}

}  // namespace

// Every parameter's update in ONE parallel region (a region per parameter cost a fork and a
// barrier per bias vector).
void AdamW::step() {
  NoGradGuard no_grad;
  if (params_device(groups_) == Device::cuda) return step_cuda();
  std::vector<CpuUpdate> work;
  for (auto& group : groups_) {
    for (auto& [name, p] : group.params) {
      const Tensor& g = p.grad();
      if (!g.defined()) continue;  // frozen this step: no step count, no moments, no decay
      require_cpu("adamw", p);
      DINO_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "[adamw] parameter '", name,
                 "' is ", p.str(), "; the CPU step takes f32 or f64");
      AdamWState& st = state_.at(name);
      st.step += 1;
      const double bc1 = 1.0 - std::pow(beta1_, double(st.step));
      const double bc2 = 1.0 - std::pow(beta2_, double(st.step));
      work.push_back({p, g, &st, group.lr / bc1, std::sqrt(bc2),
                      1.0 - group.lr * group.weight_decay});
    }
  }
  const double b1 = beta1_, b2 = beta2_, eps = eps_;
#pragma omp parallel
  for (const CpuUpdate& u : work) {
    if (u.p.dtype() == DType::f32)
      adamw_elements<float>(u, b1, b2, eps);
    else
      adamw_elements<double>(u, b1, b2, eps);
  }
  for (CpuUpdate& u : work) u.p.mark_modified();  // written by raw pointer: bf16 copies are stale
}

// One launch of the fused AdamW (kernels/cuda/optimizer.cu) over every parameter with a
// gradient; a parameter without one is left out of the descriptors, so it advances neither its
// step nor its moments, as on the CPU.
void AdamW::step_cuda() {
#ifdef DINO_HAS_CUDA
  namespace cu = kernels::cuda;
  std::vector<cu::AdamWTensor> desc;
  std::vector<std::pair<Tensor, Tensor>> written;  // parameter, its bf16 copy
  for (auto& group : groups_) {
    for (auto& [name, p] : group.params) {
      const Tensor& g = p.grad();
      if (!g.defined()) continue;
      DINO_CHECK(p.dtype() == DType::f32, "[adamw] CUDA parameters are f32 master weights; '",
                 name, "' is ", p.str());
      DINO_CHECK(g.dtype() == DType::f32 && g.device() == Device::cuda && g.numel() == p.numel(),
                 "[adamw] the gradient of '", name, "' is ", g.str(), ", expected f32 cuda ",
                 shape_str(p.shape()));
      AdamWState& st = state_.at(name);
      DINO_CHECK(st.exp_avg.device() == Device::cuda && st.exp_avg.dtype() == DType::f32,
                 "[adamw] the state of '", name, "' is ", st.exp_avg.str(),
                 "; build the optimizer after moving the model");
      st.step += 1;
      if (!st.param_bf16.defined()) st.param_bf16 = Tensor::empty(p.shape(), DType::bf16, Device::cuda);
      desc.push_back(cu::AdamWTensor{f32_ptr(p), f32_ptr(g), f32_ptr(st.exp_avg),
                                     f32_ptr(st.exp_avg_sq), bf16_ptr(st.param_bf16), p.numel(),
                                     group.lr, group.weight_decay, st.step, 0});
      written.push_back({p, st.param_bf16});
    }
  }
  if (desc.empty()) return;
  const size_t bytes = desc.size() * sizeof(cu::AdamWTensor);
  if (!cuda_descriptors_.defined() || cuda_descriptors_.nbytes() < bytes)
    cuda_descriptors_ = Tensor::empty({int64_t(bytes)}, DType::u8, Device::cuda);
  cu::copy_h2d(cuda_descriptors_.raw_data(), desc.data(), bytes);
  cu::adamw_step(static_cast<const cu::AdamWTensor*>(cuda_descriptors_.raw_data()),
                 int(desc.size()), beta1_, beta2_, eps_, cuda_stream());
  for (auto& [p, copy] : written) {
    p.mark_modified();     // the master weights changed...
    p.set_bf16_copy(copy);  // ...and this copy, written by the same launch, matches them
  }
#else
  throw Error("[adamw] this build has no CUDA support");
#endif
}

namespace {

double grad_sq_norm(const Tensor& g) {
  double s = 0;
  dispatch_float("clip_grad", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = g.data<T>();
    const int64_t n = g.numel();
    double acc = 0;  // a SIMD reduction: its order is fixed by the build, not the thread count
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += double(p[i]) * double(p[i]);
    s = acc;
  });
  return s;
}

void scale_in_place(const Tensor& g, double f) {
  dispatch_float("clip_grad", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = g.data<T>();
    for (int64_t i = 0, n = g.numel(); i < n; ++i) p[i] = T(p[i] * f);
  });
  Tensor(g).mark_modified();
}

// The gradients of `params` that exist, and whether they are on CUDA (all or none).
std::vector<Tensor> defined_grads(const std::vector<Tensor>& params, bool* cuda) {
  std::vector<Tensor> grads;
  bool any_cpu = false, any_cuda = false;
  for (const Tensor& p : params)
    if (p.grad().defined()) {
      grads.push_back(p.grad());
      (p.grad().device() == Device::cuda ? any_cuda : any_cpu) = true;
    }
  DINO_CHECK(!(any_cpu && any_cuda), "[clip_grad] gradients on both the CPU and CUDA");
  *cuda = any_cuda;
  return grads;
}

// CUDA: the norms of `grads` (one launch) and the clipping (one launch), on the device.
// Returns the norms (f32, on the device).
Tensor clip_cuda(const std::vector<Tensor>& grads, double max_norm, bool global) {
#ifdef DINO_HAS_CUDA
  namespace cu = kernels::cuda;
  std::vector<cu::TensorSpan> spans;
  for (const Tensor& g : grads) {
    DINO_CHECK(g.dtype() == DType::f32, "[clip_grad] CUDA gradients of f32 parameters are f32, got ",
               g.str());
    spans.push_back({f32_ptr(g), g.numel()});
  }
  const size_t bytes = spans.size() * sizeof(cu::TensorSpan);
  // Both freed stream-ordered after the launches that use them.
  Tensor desc = Tensor::empty({int64_t(bytes)}, DType::u8, Device::cuda);
  Tensor norms = Tensor::empty({int64_t(spans.size())}, DType::f32, Device::cuda);
  cu::copy_h2d(desc.raw_data(), spans.data(), bytes);
  const auto* d = static_cast<const cu::TensorSpan*>(desc.raw_data());
  cu::grad_norms(f32_ptr(norms), d, int(spans.size()), cuda_stream());
  cu::scale_by_norms(d, f32_ptr(norms), int(spans.size()), max_norm, global, cuda_stream());
  for (const Tensor& g : grads) Tensor(g).mark_modified();
  return norms;
#else
  throw Error("[clip_grad] this build has no CUDA support");
#endif
}

}  // namespace

std::vector<double> clip_grad_per_param(const std::vector<Tensor>& params, double max_norm,
                                        bool read_norms) {
  bool cuda = false;
  const std::vector<Tensor> grads = defined_grads(params, &cuda);
  std::vector<double> norms;
  if (cuda) {
    if (grads.empty()) return norms;
    const Tensor dn = clip_cuda(grads, max_norm, false);
    if (read_norms)
      for (float v : dn.to_vector()) norms.push_back(v);
    return norms;
  }
  for (const Tensor& g : grads) {
    require_cpu("clip_grad", g);
    const double norm = std::sqrt(grad_sq_norm(g));
    norms.push_back(norm);
    const double coef = max_norm / (norm + 1e-6);  // utils.clip_gradients
    if (coef < 1) scale_in_place(g, coef);
  }
  return norms;
}

double clip_grad_global_norm(const std::vector<Tensor>& params, double max_norm) {
  bool cuda = false;
  const std::vector<Tensor> grads = defined_grads(params, &cuda);
  double total = 0;
  if (cuda) {
    if (grads.empty()) return 0;
    // The same sum the kernel forms for its coefficient, from the same float norms.
    for (float v : clip_cuda(grads, max_norm, true).to_vector()) total += double(v) * double(v);
    return std::sqrt(total);
  }
  for (const Tensor& g : grads) {
    require_cpu("clip_grad", g);
    total += grad_sq_norm(g);
  }
  total = std::sqrt(total);
  const double coef = max_norm / (total + 1e-6);  // torch.nn.utils.clip_grad_norm_
  if (coef < 1)
    for (const Tensor& g : grads) scale_in_place(g, coef);
  return total;
}

}  // namespace dino
