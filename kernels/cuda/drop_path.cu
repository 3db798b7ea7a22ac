// Stochastic depth (drop path) on the GPU: every sample b of x (B, S) is multiplied by its own
// factor, scale when keep[b] else 0:  out[b, :] = x[b, :] * (keep[b] ? scale : 0).
// The backward is the same product with the same mask (dx = dout * factor), so one launcher
// serves both.
//
// The keep mask is drawn on the host from the model's Rng (core/ops_nn.cpp draws exactly what
// the CPU path draws) and travels to the kernel as a by-value bit set in the launch parameters,
// 2048 samples per launch: no upload, no host synchronisation, no allocation. Larger batches
// take one launch per 2048 samples. x * 0 (not a literal 0) for a dropped sample, so a NaN in x
// stays a NaN, as on the CPU.
//
// Bytes (minimum, per element, s = dtype size): read x, write out: 2s. Memory-bound.
#include <cuda_bf16.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxSamples = 2048;  // per launch: 256 bytes of bits in the parameters

struct KeepBits {
  uint32_t w[kMaxSamples / 32];
};

}  // namespace

// kernels

// out (n), x (n) with n = samples * S, the samples of this launch; keep bit b for sample b.
template <class T>
__global__ void drop_path_kernel(T* out, const T* x, KeepBits keep, float scale, int64_t S,
                                 int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / S;
    const float f = (keep.w[b / 32] >> (b % 32)) & 1u ? scale : 0.f;
    out[i] = from_float<T>(to_float(x[i]) * f);
  }
}

// launchers

namespace {

template <class T>
void launch(T* out, const T* x, const uint8_t* keep, float scale, int64_t B, int64_t S,
            cudaStream_t stream) {
  if (B <= 0 || S <= 0) return;
  const int max_blocks = 8 * context().sm_count;
  for (int64_t b0 = 0; b0 < B; b0 += kMaxSamples) {
    const int64_t nb = B - b0 < kMaxSamples ? B - b0 : kMaxSamples;
    KeepBits bits{};
    for (int64_t b = 0; b < nb; ++b)
      if (keep[b0 + b]) bits.w[b / 32] |= 1u << (b % 32);
    const int64_t n = nb * S;
    const int64_t want = (n + kThreads - 1) / kThreads;
    const int blocks = int(want < max_blocks ? want : max_blocks);
    drop_path_kernel<T>
        <<<blocks, kThreads, 0, stream>>>(out + b0 * S, x + b0 * S, bits, scale, S, n);
    CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void drop_path_apply(float* out, const float* x, const uint8_t* keep, float scale, int64_t B,
                     int64_t S, cudaStream_t stream) {
  launch<float>(out, x, keep, scale, B, S, stream);
}
void drop_path_apply(__nv_bfloat16* out, const __nv_bfloat16* x, const uint8_t* keep, float scale,
                     int64_t B, int64_t S, cudaStream_t stream) {
  launch<__nv_bfloat16>(out, x, keep, scale, B, S, stream);
}

// The CUDA backend's drop path (core/ops_nn.cpp): keep (B), the host's per-sample draws, passed
// in the launch parameters.
void CudaBackend::drop_path(const Tensor& out, const Tensor& x, const std::vector<uint8_t>& keep,
                            double p) const {
  const int64_t B = x.size(0), S = B ? x.numel() / B : 0;
  const float scale = float(1 / (1 - p));  // the CPU's T(1 / (1 - p)) for T = float
  if (is_bf16(x))
    drop_path_apply(bf16_ptr(out), bf16_ptr(x), keep.data(), scale, B, S, op_stream());
  else
    drop_path_apply(f32_ptr(out), f32_ptr(x), keep.data(), scale, B, S, op_stream());
}

}  // namespace dino::kernels::cuda
