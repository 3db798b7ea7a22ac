#include "models/dino_head.h"

#include <cmath>

#include "core/rng.h"

namespace dino {

DinoHead::DinoHead(const HeadConfig& cfg, Rng& rng) : cfg_(cfg) {
  DINO_CHECK(cfg.nlayers >= 1, "[dino_head] nlayers must be >= 1");
  DINO_CHECK(cfg.out_dim > 0 && cfg.bottleneck_dim > 0 && cfg.hidden_dim > 0,
             "[dino_head] dimensions must be positive");
  std::vector<int64_t> dims{cfg.in_dim};
  for (int64_t i = 0; i + 1 < cfg.nlayers; ++i) dims.push_back(cfg.hidden_dim);
  dims.push_back(cfg.bottleneck_dim);
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    mlp.layers.push_back(std::make_unique<Linear>(dims[i], dims[i + 1], true, rng));
    mlp.register_module(std::to_string(2 * i), mlp.layers.back().get());
  }
  register_module("mlp", &mlp);
  // weight_v keeps nn.Linear's default init (DINO applies _init_weights before creating the
  // layer): U(-1/sqrt(fan_in), 1/sqrt(fan_in)). weight_g starts at 1.
  const double bound = 1.0 / std::sqrt(double(cfg.bottleneck_dim));
  last_layer.weight_g = make_param(Tensor::full({cfg.out_dim, 1}, 1.0));
  last_layer.weight_v =
      make_param(Tensor::uniform({cfg.out_dim, cfg.bottleneck_dim}, rng, -bound, bound));
  if (cfg.norm_last_layer) last_layer.weight_g.set_requires_grad(false);
  last_layer.register_parameter("weight_g", &last_layer.weight_g);
  last_layer.register_parameter("weight_v", &last_layer.weight_v);
  register_module("last_layer", &last_layer);
}

double DinoHead::flops_per_row() const {
  double macs = double(cfg_.bottleneck_dim * cfg_.out_dim);
  for (const auto& layer : mlp.layers) macs += double(layer->weight.numel());
  return 2.0 * macs;
}

Tensor DinoHead::forward(const Tensor& x) const {
  Tensor h = x;
  // The hidden layers with their GELU as one node each (core/ops.h linear_gelu): the bias
  // gradient comes from the GELU backward's pass, not from two more launches.
  for (size_t i = 0; i < mlp.layers.size(); ++i)
    h = i + 1 < mlp.layers.size() ? mlp.layers[i]->forward_gelu(h) : mlp.layers[i]->forward(h);
  return weight_norm_linear(l2_normalize(h), last_layer.weight_v, last_layer.weight_g);
}

}  // namespace dino
