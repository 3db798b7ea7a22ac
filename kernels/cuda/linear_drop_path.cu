// linear_drop_path's backward before its products (core/ops_linear.cpp): dy = dout * the
// sample's keep scale (drop path's backward: 1 / (1 - p) or 0, the mask of the forward), and the
// Linear's bias gradient, the column sums of dy, from the same pass
// (kernels/cuda/bias_backward.cuh says why and how; this file gives it drop path's factor).
//
// Why: proj and fc2 are followed by stochastic depth in training, so their dy is what drop
// path's backward writes. Unfused, drop path's launch writes dy, then the bias gradient's two
// launches read it again (partials) and add the partials; here the column sums are taken as dy
// is written: before the products, one pass over dy instead of two, two launches instead of
// three. Not measured on a GPU.
//
// The factor is drop_path.cu's: core/drop_path_mask.h's keep decision of the row's sample (rows
// R = B * rows_per_sample, sample b = r / rows_per_sample, keyed b * sample_stride +
// sample_offset in the global batch), and x * 0, not a literal 0, for a dropped sample, so dy
// has the bits of drop_path's backward and a NaN stays a NaN. The nonce is read from device
// memory when the kernel runs, so a captured step draws the step's masks on every replay.
//
// Bytes (minimum): read dout, write dy (2 + 2 per element) and db.
#include <cuda_bf16.h>

#include "core/drop_path_mask.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/bias_backward.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

// dy = dout * (keep(sample of row r) ? scale : 0)
struct DropPathGrad {
  DropPathMask mask;
  float scale;
  int64_t rows_per_sample;
  template <bool kVec>
  __device__ void apply(LaneColumns& d, int64_t r, int64_t, int64_t) const {
    const uint64_t nonce =
        uint64_t(uint32_t(mask.nonce[0])) | (uint64_t(uint32_t(mask.nonce[1])) << 32);
    const int64_t b = r / rows_per_sample;
    const bool keep = drop_path_keep(
        nonce, mask.call, uint64_t(b * mask.sample_stride + mask.sample_offset), mask.threshold);
    const float factor = keep ? scale : 0.f;
#pragma unroll
    for (int e = 0; e < kBiasBackwardColumnsPerLane; ++e) d[e] *= factor;
  }
};

}  // namespace

// launchers

// dy (R, O), dbias (O; null: not wanted) <- dout (R, O), R = B * rows_per_sample rows
void drop_path_bias_backward(__nv_bfloat16* dy, float* dbias, const __nv_bfloat16* dout,
                             const DropPathMask& mask, float scale, int64_t B, int64_t R, int64_t O,
                             cudaStream_t stream) {
  if (B <= 0 || R <= 0 || O <= 0) return;
  const BiasBackwardLaunch l = bias_backward_launch(R, O, dbias != nullptr, {dy, dout});
  auto kernel =
      l.vec ? bias_backward_kernel<true, DropPathGrad> : bias_backward_kernel<false, DropPathGrad>;
  kernel<<<l.grid, kBiasBackwardThreads, 0, stream>>>(
      dy, l.partial, dout, DropPathGrad{mask, scale, R / B}, R, O, l.rows_per_chunk);
  CUDA_CHECK(cudaGetLastError());
  if (dbias) bias_backward_reduce(dbias, l.partial, l.chunks, O, stream);
}

// The CUDA backend's linear_drop_path backward (core/ops_linear.cpp).
void CudaBackend::drop_path_bias_backward(const Tensor& dy, const Tensor& dbias, const Tensor& dout,
                                          const Tensor& nonce, uint32_t call, int64_t sample_offset,
                                          int64_t sample_stride, double p) const {
  DINO_CHECK(nonce.device() == Device::cuda && nonce.dtype() == DType::i32 && nonce.numel() == 2,
             "[linear_drop_path] the nonce must be (2) i32 on the GPU");
  DINO_CHECK(is_bf16(dy) && is_bf16(dout),
             "[linear_drop_path] the drop path backward on CUDA reads and writes bf16 (the "
             "Linear's output dtype), got dout ",
             dtype_name(dout.dtype()));
  DINO_CHECK(!dbias.defined() || dbias.dtype() == DType::f32,
             "[linear_drop_path] the bias gradient on CUDA is f32, got ",
             dtype_name(dbias.dtype()));
  const float scale = float(1 / (1 - p));  // drop_path.cu's, the CPU's T(1 / (1 - p))
  const DropPathMask mask{nonce.data<int32_t>(), call, drop_path_threshold(p), sample_offset,
                          sample_stride};
  cuda::drop_path_bias_backward(bf16_ptr(dy), dbias.defined() ? f32_ptr(dbias) : nullptr,
                                bf16_ptr(dout), mask, scale, dout.size(0), rows_of(dout),
                                cols_of(dout), op_stream());
}

}  // namespace dino::kernels::cuda
