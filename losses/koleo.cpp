#include "losses/koleo.h"

#include <cstdint>
#include <vector>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"

namespace dino {

namespace {

constexpr double kEps = 1e-8;

// nn[i] = argmax_{j != i} z_i . z_j over the rows of z (B, D), on the host: B x B x D is a few
// million multiply-adds at the batch sizes trained, and the indices are needed on the host.
std::vector<int64_t> nearest_other_rows(const Tensor& z) {
  const int64_t B = z.size(0), D = z.size(1);
  const std::vector<float> v = z.to_vector();
  std::vector<int64_t> nn(size_t(B), 0);
  for (int64_t i = 0; i < B; ++i) {
    double best = -2;  // below any cosine; DINOv2 fills the diagonal with -1
    for (int64_t j = 0; j < B; ++j) {
      if (j == i) continue;
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += double(v[size_t(i * D + d)]) * v[size_t(j * D + d)];
      if (dot > best) best = dot, nn[size_t(i)] = j;
    }
  }
  return nn;
}

}  // namespace

Tensor koleo_loss(const Tensor& x) {
  DINO_CHECK(x.dim() == 2 && x.size(0) >= 2, "[koleo] expected features (B, D) with B >= 2, got ",
             shape_str(x.shape()));
  const int64_t B = x.size(0);
  // f32 math for a bf16 input (the CUDA backbone's normed output): adding an f32 zero is the
  // differentiable cast, its gradient cast back to bf16.
  const Tensor xf =
      x.dtype() == DType::bf16 ? add(x, Tensor::zeros({1}, DType::f32, x.device())) : x;
  Tensor z = l2_normalize(xf, kEps);
  std::vector<int64_t> nn;
  {
    NoGradGuard no_grad;
    nn = nearest_other_rows(z);
  }
  // The neighbours gathered as one-row views: exact on every device, and the backward (each
  // row's gradient added into its neighbour) is concat's and narrow's.
  std::vector<Tensor> rows;
  rows.reserve(size_t(B));
  for (int64_t i = 0; i < B; ++i) rows.push_back(z.narrow(nn[size_t(i)], 1));
  Tensor diff = add_scalar(sub(z, concat(rows)), kEps);
  Tensor dist = sqrt(sum_last(mul(diff, diff), /*keepdim=*/false));
  return scale(mean(log(add_scalar(dist, kEps))), -1.0);
}

}  // namespace dino
