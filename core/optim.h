#pragma once
// AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected moments), with
// parameter groups and a step count per parameter: a parameter without a gradient this
// step advances neither its step nor its moments. Gradient clipping per parameter (DINO's
// utils.clip_gradients) and by global norm (torch's clip_grad_norm_).
//
// A step is one call of the backend (core/backend.h: adamw) over every parameter with a
// gradient. On CUDA (parameters f32 master weights on the device, ARCHITECTURE §3) that is ONE
// launch of kernels/cuda/optimizer.cu's fused AdamW; the moments live on the device; the kernel
// also writes each parameter's bf16 copy, which is handed to the parameter
// (Tensor::set_bf16_copy) so the next forward's GEMMs cast nothing. Clipping there is
// grad_norms plus one scaling launch, with no norm read back to the host.
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dino {

struct ParamGroup {
  std::vector<std::pair<std::string, Tensor>> params;  // name -> parameter
  double lr = 1e-3;
  double weight_decay = 0.0;
};

struct AdamWState {
  Tensor exp_avg, exp_avg_sq;  // same shape, dtype and device as the parameter
  int64_t step = 0;
  Tensor param_bf16;  // CUDA: the parameter's bf16 copy the fused step writes (made once)
};

class AdamW {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999,
                 double eps = 1e-8);
  void step();  // uses each parameter's .grad; skips parameters whose grad is undefined
  std::vector<ParamGroup>& groups() { return groups_; }
  // name -> state, for checkpoints ("optimizer.<name>.exp_avg|exp_avg_sq|step").
  std::map<std::string, AdamWState>& state() { return state_; }

 private:
  std::vector<ParamGroup> groups_;
  double beta1_, beta2_, eps_;
  std::map<std::string, AdamWState> state_;
};

// Scales each gradient to norm <= max_norm on its own; returns the norms before clipping (one
// per parameter with a gradient). On CUDA the norms stay on the device and an empty vector is
// returned, unless read_norms (which costs one host synchronisation).
std::vector<double> clip_grad_per_param(const std::vector<Tensor>& params, double max_norm,
                                        bool read_norms = true);
// Scales all gradients together so their joint norm is <= max_norm; returns that norm (on
// CUDA it is read back: one host synchronisation).
double clip_grad_global_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace dino
