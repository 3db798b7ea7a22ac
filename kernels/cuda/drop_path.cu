// Stochastic depth (drop path) on the GPU: every sample b of x (B, S) is multiplied by its own
// factor, scale when kept else 0:  out[b, :] = x[b, :] * (keep(b) ? scale : 0).
// The backward is the same product with the same mask (dx = dout * factor), so one launcher
// serves both.
//
// The keep decision is core/drop_path_mask.h's hash of the step's nonce, the call's index and
// the sample's global index, the CPU's exact integer arithmetic. Each thread hashes its own
// element's sample: a few dozen integer operations against 2 x 2-4 bytes of traffic, hidden
// behind the memory. The nonce is read from device memory, not passed by value, so a step
// captured in a CUDA graph draws new masks on every replay. x * 0 (not a literal 0) for a
// dropped sample, so a NaN in x stays a NaN, as on the CPU.
//
// Bytes (minimum, per element, s = dtype size): read x, write out: 2s. Memory-bound.
#include <cuda_bf16.h>

#include "core/drop_path_mask.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;

}  // namespace

// kernels

// out (n), x (n) with n = B * S.
template <class T>
__global__ void drop_path_kernel(T* out, const T* x, DropPathMask mask, float scale, int64_t S,
                                 int64_t n) {
  const uint64_t nonce =
      uint64_t(uint32_t(mask.nonce[0])) | (uint64_t(uint32_t(mask.nonce[1])) << 32);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / S;
    const bool keep = drop_path_keep(
        nonce, mask.call, uint64_t(b * mask.sample_stride + mask.sample_offset), mask.threshold);
    out[i] = from_float<T>(to_float(x[i]) * (keep ? scale : 0.f));
  }
}

// launchers

namespace {

template <class T>
void launch(T* out, const T* x, const DropPathMask& mask, float scale, int64_t B, int64_t S,
            cudaStream_t stream) {
  if (B <= 0 || S <= 0) return;
  const int max_blocks = 8 * context().sm_count;
  const int64_t n = B * S;
  const int64_t want = (n + kThreads - 1) / kThreads;
  const int blocks = int(want < max_blocks ? want : max_blocks);
  drop_path_kernel<T><<<blocks, kThreads, 0, stream>>>(out, x, mask, scale, S, n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void drop_path_apply(float* out, const float* x, const DropPathMask& mask, float scale, int64_t B,
                     int64_t S, cudaStream_t stream) {
  launch<float>(out, x, mask, scale, B, S, stream);
}
void drop_path_apply(__nv_bfloat16* out, const __nv_bfloat16* x, const DropPathMask& mask,
                     float scale, int64_t B, int64_t S, cudaStream_t stream) {
  launch<__nv_bfloat16>(out, x, mask, scale, B, S, stream);
}

// The CUDA backend's drop path (core/ops_nn.cpp).
void CudaBackend::drop_path(const Tensor& out, const Tensor& x, const Tensor& nonce, uint32_t call,
                            int64_t sample_offset, int64_t sample_stride, double p) const {
  DINO_CHECK(nonce.device() == Device::cuda && nonce.dtype() == DType::i32 && nonce.numel() == 2,
             "[drop_path] the nonce must be (2) i32 on the GPU");
  const int64_t B = x.size(0), S = B ? x.numel() / B : 0;
  const float scale = float(1 / (1 - p));  // the CPU's T(1 / (1 - p)) for T = float
  const DropPathMask mask{nonce.data<int32_t>(), call, drop_path_threshold(p), sample_offset,
                          sample_stride};
  if (is_bf16(x))
    drop_path_apply(bf16_ptr(out), bf16_ptr(x), mask, scale, B, S, op_stream());
  else
    drop_path_apply(f32_ptr(out), f32_ptr(x), mask, scale, B, S, op_stream());
}

}  // namespace dino::kernels::cuda
