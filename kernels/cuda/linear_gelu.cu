// linear_gelu's backward before its products (core/ops_linear.cpp): dpre = dout * gelu'(pre),
// and the Linear's bias gradient, the column sums of dpre, from the same pass
// (kernels/cuda/bias_backward.cuh says why and how; this file gives it the GELU's derivative).
//
// The derivative is elementwise.cu's (device_util.cuh), so dpre has the bits the unary GELU
// backward writes. Besides dout, the pass reads pre: 16-byte loads of it too where dout and
// dpre have them and pre is aligned.
//
// Bytes (minimum): read dout and pre, write dpre (2 + 2 + 2 per element) and db; the partials
// (chunks x O floats, about 8 blocks per SM) are small beside them. Not measured on a GPU.
#include <cuda_bf16.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/bias_backward.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device_util.cuh"

namespace dino::kernels::cuda {

namespace {

// dpre = dout * gelu'(pre), pre (R, O) read at dout's offsets.
struct GeluGrad {
  const __nv_bfloat16* pre;
  template <bool kVec>
  __device__ void apply(LaneColumns& d, int64_t, int64_t at, int64_t n) const {
    LaneColumns x;
    load_lane_columns<kVec>(x, pre, at, n);
#pragma unroll
    for (int e = 0; e < kBiasBackwardColumnsPerLane; ++e) d[e] *= gelu_grad_f(x[e]);
  }
};

}  // namespace

// launchers

// dpre (R, O), dbias (O; null: not wanted) <- dout (R, O), pre (R, O)
void gelu_bias_backward(__nv_bfloat16* dpre, float* dbias, const __nv_bfloat16* dout,
                        const __nv_bfloat16* pre, int64_t R, int64_t O, cudaStream_t stream) {
  if (R <= 0 || O <= 0) return;
  const BiasBackwardLaunch l = bias_backward_launch(R, O, dbias != nullptr, {dpre, dout, pre});
  auto kernel =
      l.vec ? bias_backward_kernel<true, GeluGrad> : bias_backward_kernel<false, GeluGrad>;
  kernel<<<l.grid, kBiasBackwardThreads, 0, stream>>>(dpre, l.partial, dout, GeluGrad{pre}, R, O,
                                                      l.rows_per_chunk);
  CUDA_CHECK(cudaGetLastError());
  if (dbias) bias_backward_reduce(dbias, l.partial, l.chunks, O, stream);
}

void CudaBackend::gelu_bias_backward(const Tensor& dpre, const Tensor& dbias, const Tensor& dout,
                                     const Tensor& pre) const {
  DINO_CHECK(is_bf16(dpre) && is_bf16(dout) && is_bf16(pre),
             "[linear_gelu] the GELU backward on CUDA reads and writes bf16 (the Linear's output "
             "dtype), got dout ",
             dtype_name(dout.dtype()), ", pre ", dtype_name(pre.dtype()));
  DINO_CHECK(!dbias.defined() || dbias.dtype() == DType::f32,
             "[linear_gelu] the bias gradient on CUDA is f32, got ", dtype_name(dbias.dtype()));
  cuda::gelu_bias_backward(bf16_ptr(dpre), dbias.defined() ? f32_ptr(dbias) : nullptr,
                           bf16_ptr(dout), bf16_ptr(pre), rows_of(pre), cols_of(pre), op_stream());
}

}  // namespace dino::kernels::cuda
