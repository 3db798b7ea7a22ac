// The CPU backend's LayerNorm (core/ops_layer_norm.cpp) on kernels/cpu/layernorm.cpp: every
// tensor in the op's one dtype.
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

void CpuBackend::layer_norm(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                            const Tensor& x, const Tensor& weight, const Tensor& bias,
                            double eps) const {
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    layernorm_forward<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(),
                         weight.data<T>(), bias.data<T>(), rows_of(x), cols_of(x), eps);
  });
}

void CpuBackend::add_layer_norm(const Tensor& sum, const Tensor& out, const Tensor& mean,
                                const Tensor& rstd, const Tensor& x, const Tensor& branch,
                                const Tensor& weight, const Tensor& bias, double eps) const {
  dispatch_float("add_layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    residual_layernorm_forward<T>(sum.data<T>(), out.data<T>(), mean.data<T>(), rstd.data<T>(),
                                  x.data<T>(), branch.data<T>(), weight.data<T>(),
                                  bias.data<T>(), rows_of(x), cols_of(x), eps);
  });
}

void CpuBackend::layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                     const Tensor& dout, const Tensor& x, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& weight) const {
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    layernorm_backward<T>(dx.data<T>(), dweight.data<T>(), dbias.data<T>(), dout.data<T>(),
                          x.data<T>(), mean.data<T>(), rstd.data<T>(), weight.data<T>(),
                          rows_of(x), cols_of(x));
  });
}

}  // namespace dino::kernels::cpu
