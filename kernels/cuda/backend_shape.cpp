// The CUDA backend's data movement (core/ops_shape.cpp) on kernels/cuda/shape.cu: 2- or 4-byte
// elements of any dtype; the token gradients in f32 or bf16.
#include "kernels/cuda/backend.h"

namespace dino::kernels::cuda {

void CudaBackend::permute(const Tensor& out, const Tensor& x,
                          const std::vector<int64_t>& dims) const {
  permute_elements(out.raw_data(), x.raw_data(), int(dtype_size(x.dtype())), x.shape().data(),
                   dims.data(), int(x.dim()), op_stream());
}

void CudaBackend::prepend_token(const Tensor& out, const Tensor& x, const Tensor& token) const {
  prepend_token_forward(out.raw_data(), x.raw_data(), token.raw_data(),
                        int(dtype_size(x.dtype())), x.size(0), x.size(1), x.size(2),
                        op_stream());
}

void CudaBackend::prepend_token_backward(const Tensor& dx, const Tensor& dtoken,
                                         const Tensor& dout) const {
  cuda::prepend_token_backward(dx.raw_data(), dtoken.raw_data(), dout.raw_data(), is_bf16(dout),
                               dx.size(0), dx.size(1), dx.size(2), op_stream());
}

void CudaBackend::select_token(const Tensor& out, const Tensor& x, int64_t i) const {
  select_token_forward(out.raw_data(), x.raw_data(), int(dtype_size(x.dtype())), x.size(0),
                       x.size(1), x.size(2), i, op_stream());
}

void CudaBackend::select_token_backward(const Tensor& dx, const Tensor& dout, int64_t i) const {
  cuda::select_token_backward(dx.raw_data(), dout.raw_data(), int(dtype_size(dout.dtype())),
                              dx.size(0), dx.size(1), dx.size(2), i, op_stream());
}

}  // namespace dino::kernels::cuda
