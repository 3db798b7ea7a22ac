#include "core/optim.h"

#include <cmath>

#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

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
  DINO_CHECK(!(cpu && cuda),
             "[adamw] some parameters are on the CPU and some on CUDA; move the "
             "whole model (Module::to) before building the optimizer");
  return cuda ? Device::cuda : Device::cpu;
}

}  // namespace

// Every parameter with a gradient in one pass of the backend (one launch on CUDA); a parameter
// without one advances neither its step nor its moments.
void AdamW::step() {
  NoGradGuard no_grad;
  const Device device = params_device(groups_);
  std::vector<AdamWUpdate> updates;
  for (auto& group : groups_) {
    for (auto& [name, p] : group.params) {
      const Tensor& g = p.grad();
      if (!g.defined()) continue;  // frozen this step: no step count, no moments, no decay
      precision::check_float_operands("adamw", {{&p, "parameter"}, {&g, "gradient"}});
      precision::require_f32_on_cuda("adamw", p, name.c_str(), "the master weights");
      DINO_CHECK(g.dtype() == p.dtype() && g.numel() == p.numel(), "[adamw] the gradient of '",
                 name, "' is ", g.str(), ", expected ", p.str());
      AdamWState& st = state_.at(name);
      DINO_CHECK(st.exp_avg.device() == p.device() && st.exp_avg.dtype() == p.dtype(),
                 "[adamw] the state of '", name, "' is ", st.exp_avg.str(),
                 "; build the optimizer after moving the model");
      st.step += 1;
      // Where the GEMMs read bf16 copies of the weights (CUDA), the same pass writes them.
      if (!st.param_bf16.defined() && precision::gemm_operand(p) != p.dtype())
        st.param_bf16 = Tensor::empty(p.shape(), precision::gemm_operand(p), p.device());
      updates.push_back(
          {p, g, st.exp_avg, st.exp_avg_sq, st.param_bf16, group.lr, group.weight_decay, st.step});
    }
  }
  if (updates.empty()) return;
  backend(device, "adamw").adamw(updates, beta1_, beta2_, eps_);
  for (AdamWUpdate& u : updates) {
    u.param.mark_modified();  // the master weights changed...
    // ...and this copy, written by the same pass, matches them
    if (u.param_bf16.defined()) u.param.set_bf16_copy(u.param_bf16);
  }
}

namespace {

// The gradients of `params` that exist, and their device (all on one).
std::vector<Tensor> defined_grads(const std::vector<Tensor>& params, Device* device) {
  std::vector<Tensor> grads;
  bool any_cpu = false, any_cuda = false;
  for (const Tensor& p : params)
    if (p.grad().defined()) {
      grads.push_back(p.grad());
      (p.grad().device() == Device::cuda ? any_cuda : any_cpu) = true;
    }
  DINO_CHECK(!(any_cpu && any_cuda), "[clip_grad] gradients on both the CPU and CUDA");
  *device = any_cuda ? Device::cuda : Device::cpu;
  for (const Tensor& g : grads) {
    precision::check_float_operands("clip_grad", {{&g, "gradient"}});
    precision::require_f32_on_cuda("clip_grad", g, "gradient", "gradients of f32 parameters");
  }
  return grads;
}

}  // namespace

std::vector<double> clip_grad_per_param(const std::vector<Tensor>& params, double max_norm,
                                        bool read_norms) {
  Device device;
  const std::vector<Tensor> grads = defined_grads(params, &device);
  if (grads.empty()) return {};
  std::vector<double> norms;
  backend(device, "clip_grad").clip_grads(norms, grads, max_norm, false, read_norms);
  for (const Tensor& g : grads) Tensor(g).mark_modified();
  return norms;
}

double clip_grad_global_norm(const std::vector<Tensor>& params, double max_norm) {
  Device device;
  const std::vector<Tensor> grads = defined_grads(params, &device);
  if (grads.empty()) return 0;
  std::vector<double> total;
  backend(device, "clip_grad").clip_grads(total, grads, max_norm, true, true);
  for (const Tensor& g : grads) Tensor(g).mark_modified();
  return total[0];
}

}  // namespace dino
