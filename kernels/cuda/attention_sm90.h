#pragma once
// The Hopper attention kernels' launchers (kernels/cuda/attention_sm90.cu, built for sm_90a
// only, where the toolkit can: DINO_CUDA_SM90A), called by attention_forward_with and
// attention_backward_with (kernels/cuda/attention.cu) after their checks: head dim 64, 16-byte
// aligned tensors, B * H within the grid, an sm_90 device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace dino::kernels::cuda {

// out (B, N, H*64), lse (B, H, N) <- qkv (B, N, 3*H*64)
void attention_forward_sm90(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                            int H, cudaStream_t stream);
// dqkv (B, N, 3*H*64) <- dout (B, N, H*64), qkv, lse (B, H, N), dv_rows (B, H, N) = rowsum(dout *
// out)
void attention_backward_sm90(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                             const __nv_bfloat16* qkv, const float* lse, const float* dv_rows,
                             int B, int N, int H, cudaStream_t stream);

}  // namespace dino::kernels::cuda
