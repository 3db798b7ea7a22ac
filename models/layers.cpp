#include "models/layers.h"

#include "core/rng.h"

namespace dino {

Tensor make_param(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

Linear::Linear(int64_t in, int64_t out, bool with_bias, Rng& rng) {
  weight = make_param(Tensor::trunc_normal({out, in}, rng, 0.02));
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = make_param(Tensor::zeros({out}));
    register_parameter("bias", &bias);
  }
}

LayerNorm::LayerNorm(int64_t dim, double eps) : eps_(eps) {
  weight = make_param(Tensor::full({dim}, 1.0));
  bias = make_param(Tensor::zeros({dim}));
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

}  // namespace dino
