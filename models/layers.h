#pragma once
// The two parameterised layers every model here is made of, named as PyTorch names them
// (weight, bias), so checkpoints use timm's names.
#include "core/module.h"
#include "core/ops.h"

namespace dino {

class Rng;

class Linear : public Module {
 public:
  // trunc-normal(0.02) weight and zero bias: DINO's _init_weights for nn.Linear.
  Linear(int64_t in, int64_t out, bool bias, Rng& rng);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  // gelu(forward(x)) as one node, whose backward sums the bias gradient while it forms the
  // GELU's (core/ops.h linear_gelu).
  Tensor forward_gelu(const Tensor& x) const { return linear_gelu(x, weight, bias); }
  // drop_path(forward(x), p, true, noise) as one node, whose backward sums the bias gradient
  // while it forms drop path's (core/ops.h linear_drop_path).
  Tensor forward_drop_path(const Tensor& x, double p, DropPathNoise& noise) const {
    return linear_drop_path(x, weight, bias, p, noise);
  }
  Tensor weight, bias;
};

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps);
  Tensor forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps_); }
  double eps() const { return eps_; }
  Tensor weight, bias;

 private:
  double eps_;
};

// A parameter tensor (requires grad) of the given values.
Tensor make_param(Tensor t);

}  // namespace dino
