// Weight normalisation along dim 0 (torch.nn.utils.weight_norm, DINO's last layer):
// row k of w is g[k] * v[k, :] / ||v[k, :]||, and its backward
//   dg[k] = dot(dw_k, v_k) / ||v_k||,   dv_k = g[k] / ||v_k|| * (dw_k - dot(dw_k, v_k) / ||v_k||^2
//   * v_k)
// (the CPU reference's arithmetic, kernels/cpu/weight_norm.cpp, in f32).
//
// Shape: one warp per row. DINO's layer is K = 65,536 rows of C = 256 (or K = 4096 for small
// recipes): each lane reads every 32nd element (coalesced 128-byte loads per warp), the
// row's sum of squares or dot product is a butterfly shuffle reduction, whose every step
// adds the same two values on both lanes (a + b == b + a exactly), so all lanes hold the
// identical total and the result does not depend on the launch (fixed order, no atomics).
// Then the row is read again for the write. The forward writes the f32 weight and/or its
// bf16 copy (the GEMM operand of weight_norm_linear) directly. Bytes per element: forward
// reads v twice (8; the second read is an L1/L2 hit for C = 256), writes 2 (bf16) or 4;
// backward reads dw and v twice, writes dv (4). Memory-bound, a few microseconds for
// 65,536 x 256.
#include <cuda_bf16.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {
constexpr int kThreads = 256;  // 8 warps = 8 rows per block
constexpr int kRowsPerBlock = kThreads / 32;

}  // namespace

// kernels

// w (K, C) or nullptr, w_bf16 (K, C) or nullptr, vnorm (K) <- v (K, C), g (K)
__global__ void weight_norm_forward_kernel(float* w, __nv_bfloat16* w_bf16, float* vnorm,
                                           const float* v, const float* g, int64_t K, int C) {
  const int lane = threadIdx.x & 31;
  const int64_t k = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (k >= K) return;  // the whole warp leaves together: k is the same on its 32 lanes
  const float* vk = v + k * C;
  float sq = 0.f;
  for (int c = lane; c < C; c += 32) sq += vk[c] * vk[c];
  const float nrm = sqrtf(warp_sum(sq));
  const float s = g[k] / nrm;
  for (int c = lane; c < C; c += 32) {
    const float x = vk[c] * s;
    if (w) w[k * C + c] = x;
    if (w_bf16) w_bf16[k * C + c] = __float2bfloat16_rn(x);
  }
  if (lane == 0) vnorm[k] = nrm;
}

// dv (K, C) or nullptr, dg (K) or nullptr <- dw (K, C), v (K, C), g (K), vnorm (K)
__global__ void weight_norm_backward_kernel(float* dv, float* dg, const float* dw, const float* v,
                                            const float* g, const float* vnorm, int64_t K, int C) {
  const int lane = threadIdx.x & 31;
  const int64_t k = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (k >= K) return;
  const float* vk = v + k * C;
  const float* dwk = dw + k * C;
  float dot = 0.f;
  for (int c = lane; c < C; c += 32) dot += dwk[c] * vk[c];
  dot = warp_sum(dot);
  const float nrm = vnorm[k];
  if (dv) {
    const float s = g[k] / nrm, proj = dot / (nrm * nrm);
    for (int c = lane; c < C; c += 32) dv[k * C + c] = s * (dwk[c] - proj * vk[c]);
  }
  if (dg && lane == 0) dg[k] = dot / nrm;
}

// launchers

namespace {
int row_blocks(int64_t K) {
  const int64_t blocks = (K + kRowsPerBlock - 1) / kRowsPerBlock;
  DINO_CHECK(blocks <= 0x7fffffff, "[weight_norm] ", K, " rows are too many for one launch");
  return int(blocks);
}
}  // namespace

void weight_norm_forward(float* w, __nv_bfloat16* w_bf16, float* vnorm, const float* v,
                         const float* g, int64_t K, int C, cudaStream_t stream) {
  DINO_CHECK(C > 0 && K >= 0, "[weight_norm_forward] bad sizes K=", K, " C=", C);
  if (K == 0) return;
  weight_norm_forward_kernel<<<row_blocks(K), kThreads, 0, stream>>>(w, w_bf16, vnorm, v, g, K, C);
  CUDA_CHECK(cudaGetLastError());
}

void weight_norm_backward(float* dv, float* dg, const float* dw, const float* v, const float* g,
                          const float* vnorm, int64_t K, int C, cudaStream_t stream) {
  DINO_CHECK(C > 0 && K >= 0, "[weight_norm_backward] bad sizes K=", K, " C=", C);
  if (K == 0 || (!dv && !dg)) return;
  weight_norm_backward_kernel<<<row_blocks(K), kThreads, 0, stream>>>(dv, dg, dw, v, g, vnorm, K,
                                                                      C);
  CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::weight_norm(const Tensor& w, const Tensor& vnorm, const Tensor& v,
                              const Tensor& g) const {
  check_not_empty("weight_norm", v, g);
  // w in f32, or straight as the bf16 GEMM operand of DINO's last layer
  cuda::weight_norm_forward(is_bf16(w) ? nullptr : f32_ptr(w), is_bf16(w) ? bf16_ptr(w) : nullptr,
                            f32_ptr(vnorm), f32_ptr(v), f32_ptr(g), v.size(0),
                            as_int("weight_norm", v.size(1), "columns"), op_stream());
}

void CudaBackend::weight_norm_backward(const Tensor& dv, const Tensor& dg, const Tensor& dw,
                                       const Tensor& v, const Tensor& g,
                                       const Tensor& vnorm) const {
  cuda::weight_norm_backward(dv.defined() ? f32_ptr(dv) : nullptr,
                             dg.defined() ? f32_ptr(dg) : nullptr, f32_ptr(dw), f32_ptr(v),
                             f32_ptr(g), f32_ptr(vnorm), v.size(0),
                             as_int("weight_norm", v.size(1), "columns"), op_stream());
}

}  // namespace dino::kernels::cuda
