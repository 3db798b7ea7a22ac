#include "losses/koleo.h"

#include "core/error.h"
#include "core/ops.h"

namespace dino {

namespace {

constexpr double kEps = 1e-8;

}  // namespace

Tensor koleo_loss(const Tensor& x) {
  DINO_CHECK(x.dim() == 2 && x.size(0) >= 2, "[koleo] expected features (B, D) with B >= 2, got ",
             shape_str(x.shape()));
  // f32 math for a bf16 input (the CUDA backbone's normed output): adding an f32 zero is the
  // differentiable cast, its gradient cast back to bf16.
  const Tensor xf =
      x.dtype() == DType::bf16 ? add(x, Tensor::zeros({1}, DType::f32, x.device())) : x;
  // The neighbour search and the difference run on z's device, queueing no copy to the host:
  // a step that adds KoLeo still lets the host run ahead of the device.
  Tensor z = l2_normalize(xf, kEps);
  Tensor diff = add_scalar(nearest_row_diff(z), kEps);
  Tensor dist = sqrt(sum_last(mul(diff, diff), /*keepdim=*/false));
  return scale(mean(log(add_scalar(dist, kEps))), -1.0);
}

}  // namespace dino
