// See composite.h.
#include "testing/composite.h"

#include <cmath>

#include "core/autograd.h"

namespace dino::composite {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  Tensor centred = sub(x, mean_last(x));
  Tensor var = mean_last(mul(centred, centred));
  return add(mul(div(centred, sqrt(add_scalar(var, eps))), weight), bias);
}

AddNorm add_layer_norm(const Tensor& x, const Tensor& branch, const Tensor& weight,
                       const Tensor& bias, double eps) {
  Tensor sum = add(x, branch);
  return {sum, composite::layer_norm(sum, weight, bias, eps)};
}

Tensor softmax(const Tensor& x) {
  Tensor e = exp(sub(x, max_last(x)));
  return div(e, sum_last(e));
}

Tensor log_softmax(const Tensor& x) {
  Tensor z = sub(x, max_last(x));
  return sub(z, log(sum_last(exp(z))));
}

Tensor attention(const Tensor& qkv, int64_t heads) {
  const int64_t B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3, Dh = D / heads;
  Tensor split = permute(qkv.reshape({B, N, 3, heads, Dh}), {2, 0, 3, 1, 4});  // (3, B, H, N, Dh)
  std::vector<Tensor> parts = split.reshape({3, B * heads, N, Dh}).chunk(3);
  Tensor q = parts[0].reshape({B * heads, N, Dh});
  Tensor k = parts[1].reshape({B * heads, N, Dh});
  Tensor v = parts[2].reshape({B * heads, N, Dh});
  Tensor p = composite::softmax(scale(matmul(q, transpose_last2(k)), 1.0 / std::sqrt(double(Dh))));
  Tensor o = matmul(p, v).reshape({B, heads, N, Dh});
  return permute(o, {0, 2, 1, 3}).reshape({B, N, D});
}

Tensor dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center, int64_t G,
                 double tau_s, double tau_t) {
  const int64_t B = teacher.size(0) / G, V = student.size(0) / B, K = student.size(1);
  Tensor log_p = composite::log_softmax(scale(student, 1.0 / tau_s));
  Tensor q;
  {
    NoGradGuard no_grad;  // the teacher is a target, not a path for gradients
    q = composite::softmax(scale(sub(teacher, center.reshape({1, K})), 1.0 / tau_t));
  }
  Tensor total;
  int64_t pairs = 0;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t v = 0; v < V; ++v) {
      if (v == g) continue;
      Tensor term = scale(sum(mul(q.narrow(g * B, B), log_p.narrow(v * B, B))), -1.0 / double(B));
      total = total.defined() ? add(total, term) : term;
      ++pairs;
    }
  }
  return scale(total, 1.0 / double(pairs));
}

}  // namespace dino::composite
