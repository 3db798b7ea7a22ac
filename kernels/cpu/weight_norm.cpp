// Weight normalisation along dim 0 (torch.nn.utils.weight_norm, as DINO's last layer uses
// it): row k of w is g[k] * v[k, :] / ||v[k, :]||. Norms and dots accumulate in double.
#include <cmath>

#include "kernels/cpu/backend.h"

namespace dino::kernels::cpu {

namespace {

// w (K, C), vnorm (K) <- v (K, C), g (K)
template <class T>
void weight_norm_forward(T* w, T* vnorm, const T* v, const T* g, int64_t K, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < K; ++k) {
    const T* vk = v + k * C;
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) sq += double(vk[c]) * double(vk[c]);
    const double nrm = std::sqrt(sq);
    const double s = double(g[k]) / nrm;
    T* wk = w + k * C;
    for (int64_t c = 0; c < C; ++c) wk[c] = T(double(vk[c]) * s);
    vnorm[k] = T(nrm);
  }
}

// dv (K, C), dg (K) <- dw (K, C), v (K, C), g (K), vnorm (K)
// dg = dot(dw, v) / ||v||,  dv = g / ||v|| * (dw - dot(dw, v) / ||v||^2 * v)
template <class T>
void weight_norm_backward(T* dv, T* dg, const T* dw, const T* v, const T* g, const T* vnorm,
                          int64_t K, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < K; ++k) {
    const T* vk = v + k * C;
    const T* dwk = dw + k * C;
    const double nrm = vnorm[k];
    double dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += double(dwk[c]) * double(vk[c]);
    const double s = double(g[k]) / nrm, proj = dot / (nrm * nrm);
    T* dvk = dv + k * C;
    for (int64_t c = 0; c < C; ++c) dvk[c] = T(s * (double(dwk[c]) - proj * double(vk[c])));
    dg[k] = T(dot / nrm);
  }
}

// A weight-norm gradient not wanted still needs room: the kernel writes both.
Tensor or_scratch(const Tensor& t, const Shape& shape, const Tensor& like) {
  return t.defined() ? t : Tensor::empty(shape, like.dtype(), like.device());
}

}  // namespace

void CpuBackend::weight_norm(const Tensor& w, const Tensor& vnorm, const Tensor& v,
                             const Tensor& g) const {
  dispatch_float("weight_norm", v.dtype(), [&](auto tag) {
    using T = decltype(tag);
    weight_norm_forward<T>(w.data<T>(), vnorm.data<T>(), v.data<T>(), g.data<T>(), v.size(0),
                           v.size(1));
  });
}

void CpuBackend::weight_norm_backward(const Tensor& dv, const Tensor& dg, const Tensor& dw,
                                      const Tensor& v, const Tensor& g, const Tensor& vnorm) const {
  const Tensor dv_out = or_scratch(dv, v.shape(), dw), dg_out = or_scratch(dg, g.shape(), dw);
  dispatch_float("weight_norm", dw.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::weight_norm_backward<T>(dv_out.data<T>(), dg_out.data<T>(), dw.data<T>(), v.data<T>(),
                                 g.data<T>(), vnorm.data<T>(), v.size(0), v.size(1));
  });
}

}  // namespace dino::kernels::cpu
