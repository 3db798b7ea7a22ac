#pragma once
// DINO's projection head (main_dino.py DINOHead): an MLP (Linear-GELU x (nlayers-1), then
// Linear to the bottleneck), L2 normalisation, and a weight-normalised Linear to K outputs
// without bias. With norm_last_layer, weight_g is fixed at 1 (stored, not trained).
#include <memory>
#include <vector>

#include "models/layers.h"

namespace dino {

struct HeadConfig {
  int64_t in_dim = 384, out_dim = 65536, hidden_dim = 2048, bottleneck_dim = 256;
  int64_t nlayers = 3;
  bool norm_last_layer = true;
};

class DinoHead : public Module {
 public:
  DinoHead(const HeadConfig& cfg, Rng& rng);
  Tensor forward(const Tensor& x) const;  // (R, in_dim) -> logits (R, out_dim)
  // Forward FLOPs of one row through the linear layers (a multiply-add counts 2).
  double flops_per_row() const;
  const HeadConfig& config() const { return cfg_; }

  // mlp.0, mlp.2, mlp.4 as in nn.Sequential with GELUs at the odd indices.
  struct Mlp : Module {
    std::vector<std::unique_ptr<Linear>> layers;
  } mlp;
  struct LastLayer : Module {
    Tensor weight_g, weight_v;
  } last_layer;

 private:
  HeadConfig cfg_;
};

}  // namespace dino
