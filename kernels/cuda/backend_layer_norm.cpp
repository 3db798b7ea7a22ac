// The CUDA backend's LayerNorm (core/ops_layer_norm.cpp) on kernels/cuda/layernorm.cu: x, the
// sum, the statistics, weights and their gradients f32; out, the branch and dout bf16
// (core/precision.h).
#include "kernels/cuda/backend.h"

namespace dino::kernels::cuda {

void CudaBackend::layer_norm(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                             const Tensor& x, const Tensor& weight, const Tensor& bias,
                             double eps) const {
  layernorm_forward(bf16_ptr(out), f32_ptr(mean), f32_ptr(rstd), f32_ptr(x), f32_ptr(weight),
                    f32_ptr(bias), as_int("layer_norm", x.numel() / x.size(-1), "rows"),
                    as_int("layer_norm", x.size(-1), "columns"), float(eps), op_stream());
}

void CudaBackend::add_layer_norm(const Tensor& sum, const Tensor& out, const Tensor& mean,
                                 const Tensor& rstd, const Tensor& x, const Tensor& branch,
                                 const Tensor& weight, const Tensor& bias, double eps) const {
  residual_layernorm_forward(f32_ptr(sum), bf16_ptr(out), f32_ptr(mean), f32_ptr(rstd),
                             f32_ptr(x), bf16_ptr(branch), f32_ptr(weight), f32_ptr(bias),
                             as_int("add_layer_norm", x.numel() / x.size(-1), "rows"),
                             as_int("add_layer_norm", x.size(-1), "columns"), float(eps),
                             op_stream());
}

void CudaBackend::layer_norm_backward(const Tensor& dx, const Tensor& dweight,
                                      const Tensor& dbias, const Tensor& dout, const Tensor& x,
                                      const Tensor& mean, const Tensor& rstd,
                                      const Tensor& weight) const {
  layernorm_backward(f32_ptr(dx), f32_ptr(dweight), f32_ptr(dbias), bf16_ptr(dout), f32_ptr(x),
                     f32_ptr(mean), f32_ptr(rstd), f32_ptr(weight),
                     as_int("layer_norm", x.numel() / x.size(-1), "rows"),
                     as_int("layer_norm", x.size(-1), "columns"), op_stream());
}

}  // namespace dino::kernels::cuda
