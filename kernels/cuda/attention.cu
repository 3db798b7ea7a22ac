// Multi-head softmax attention on packed qkv (B, N, 3*H*Dh) bf16: the launchers of the
// mma.sync flash-attention kernels (kernels/cuda/attention_mma.cuh, where the tiling, the
// FLOP count and the backward's structure are described), the backward's row-dot kernel, and
// the choice, per call, between them and Hopper's wgmma kernels (kernels/cuda/attention_sm90.cu).
// Head dims 32, 64, 128 (the only instantiations); any N.
#include <cuda_bf16.h>

#include "kernels/cuda/attention_sm90.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/runtime.h"
// After the primitives it is written against:
#include "kernels/cuda/attention_mma.cuh"

namespace dino::kernels::cuda {

// kernels

// dv (B, H, N) = rowsum(dout * out) per head. D / 8 lanes per (b, n, h) row, one 16-byte
// load of each operand per lane (a warp covers 256 / D rows), so the two bf16 tensors stream
// at full width instead of 2 bytes per lane and load.
template <int D>
__global__ void attention_backward_dot_kernel(float* dv, const __nv_bfloat16* dout,
                                              const __nv_bfloat16* out, int B, int N, int H) {
  constexpr int kLanes = D / 8;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = t / kLanes;  // (b, n, h)
  const int part = int(t % kLanes);
  const bool valid = row < int64_t(B) * N * H;
  float s = 0.f;
  if (valid) {
    const uint4 a = *reinterpret_cast<const uint4*>(dout + row * D + part * 8);
    const uint4 o = *reinterpret_cast<const uint4*>(out + row * D + part * 8);
    const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, ow[4] = {o.x, o.y, o.z, o.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&aw[i]));
      const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&ow[i]));
      s += x.x * y.x + x.y * y.y;
    }
  }
  for (int offset = kLanes / 2; offset > 0; offset /= 2)
    s += __shfl_xor_sync(0xffffffffu, s, offset);  // every lane of the warp takes part
  if (valid && part == 0) {
    const int h = int(row % H);
    const int64_t bn = row / H;
    const int n = int(bn % N), b = int(bn / N);
    dv[(int64_t(b) * H + h) * N + n] = s;
  }
}

// launchers

namespace {

namespace mma = attention_mma;

template <class Kernel>
void set_smem(Kernel kernel, size_t bytes) {
  DINO_CHECK(bytes <= context().smem_per_block_optin, "[attention] needs ", bytes,
             " bytes of shared memory per block, the device allows ",
             context().smem_per_block_optin);
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Grids are (query or key tiles, B * H): gridDim.y is at most 65535.
void check_grid(int B, int H) {
  DINO_CHECK(int64_t(B) * H <= 65535, "[attention] batch * heads = ", int64_t(B) * H,
             " exceeds the grid's 65535; split the batch");
}

template <int D, int MT>
void forward_tiles(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N, int H,
                   cudaStream_t stream) {
  constexpr size_t bytes = mma::Tiles<D>::template forward_bytes<MT>();
  constexpr int rows = mma::kWarps * 16 * MT;
  set_smem(mma::forward_kernel<D, MT>, bytes);
  const dim3 grid((N + rows - 1) / rows, B * H);
  mma::forward_kernel<D, MT><<<grid, mma::kThreads, bytes, stream>>>(out, lse, qkv, N, H);
  CUDA_CHECK(cudaGetLastError());
}

template <int D>
void forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N, int H,
             cudaStream_t stream) {
  using T = mma::Tiles<D>;
  if constexpr (D == 64) {  // the only head dim with a short-sequence instantiation
    if (T::forward_m_tiles(N) == 1) return forward_tiles<D, 1>(out, lse, qkv, B, N, H, stream);
  }
  forward_tiles<D, T::kForwardMTiles>(out, lse, qkv, B, N, H, stream);
}

template <int D>
void row_dots(float* dv, const __nv_bfloat16* dout, const __nv_bfloat16* out, int B, int N, int H,
              cudaStream_t stream) {
  const int64_t rows = int64_t(B) * N * H;
  attention_backward_dot_kernel<D>
      <<<int((rows * (D / 8) + 255) / 256), 256, 0, stream>>>(dv, dout, out, B, N, H);
  CUDA_CHECK(cudaGetLastError());
}

template <int D>
void backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
              const float* lse, const float* dv, int B, int N, int H, cudaStream_t stream) {
  using T = mma::Tiles<D>;
  const dim3 grid((N + mma::kTile - 1) / mma::kTile, B * H);
  set_smem(mma::backward_dkdv_kernel<D>, T::kDkDv);
  mma::backward_dkdv_kernel<D>
      <<<grid, mma::kThreads, T::kDkDv, stream>>>(dqkv, dout, qkv, lse, dv, N, H);
  CUDA_CHECK(cudaGetLastError());
  set_smem(mma::backward_dq_kernel<D>, T::kDq);
  mma::backward_dq_kernel<D>
      <<<grid, mma::kThreads, T::kDq, stream>>>(dqkv, dout, qkv, lse, dv, N, H);
  CUDA_CHECK(cudaGetLastError());
}

// What attention_kernel_unavailable explains, without building the explanation: every
// attention call asks.
bool wgmma_runs(int Dh) {
#ifdef DINO_CUDA_SM90A
  const Context& ctx = context();
  return Dh == 64 && ctx.cc_major == 9 && ctx.cc_minor == 0;
#else
  return false;
#endif
}

void check_runs(AttentionKernel kernel, int Dh) {
  if (kernel == AttentionKernel::wgmma && !wgmma_runs(Dh))
    throw Error(
        str_cat("[attention] kernel wgmma cannot run: ", attention_kernel_unavailable(kernel, Dh)));
  DINO_CHECK(Dh == 32 || Dh == 64 || Dh == 128, "[attention] head dim ", Dh,
             " is not supported (32, 64, 128)");
}

}  // namespace

const char* attention_kernel_name(AttentionKernel kernel) {
  return kernel == AttentionKernel::wgmma ? "wgmma" : "mma";
}

// wgmma past one 64-key tile: there the mma.sync kernels lose to cuDNN (0.62x at N = 197 on
// the H200, benchmarks/results/2026-12-04-h200.md) while a wgmma tile costs no more than it
// does; up to 64 keys a wgmma block computes 64 x 64 where mma.sync skips in steps of 16 (37
// tokens: 48 x 48), and mma.sync is already 2.7x (forward) and 1.2x (backward) cuDNN there.
AttentionKernel attention_kernel_for(int N, int Dh) {
  return N > 64 && wgmma_runs(Dh) ? AttentionKernel::wgmma : AttentionKernel::mma;
}

std::string attention_kernel_unavailable(AttentionKernel kernel, int Dh) {
  if (kernel == AttentionKernel::mma || wgmma_runs(Dh)) return {};
#ifndef DINO_CUDA_SM90A
  return "this build has no sm_90a code (its CUDA toolkit is older than 12.0)";
#else
  if (Dh != 64) return str_cat("the wgmma kernels take head dim 64, not ", Dh);
  const Context& ctx = context();
  return str_cat("the wgmma kernels need an sm_90 device, this one is sm_", ctx.cc_major,
                 ctx.cc_minor);
#endif
}

void attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                       int H, int Dh, cudaStream_t stream) {
  attention_forward_with(attention_kernel_for(N, Dh), out, lse, qkv, B, N, H, Dh, stream);
}

void attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                        const __nv_bfloat16* out, const float* lse, int B, int N, int H, int Dh,
                        cudaStream_t stream) {
  attention_backward_with(attention_kernel_for(N, Dh), dqkv, dout, qkv, out, lse, B, N, H, Dh,
                          stream);
}

void attention_forward_with(AttentionKernel kernel, __nv_bfloat16* out, float* lse,
                            const __nv_bfloat16* qkv, int B, int N, int H, int Dh,
                            cudaStream_t stream) {
  check_runs(kernel, Dh);
  if (B <= 0 || N <= 0 || H <= 0) return;
  DINO_CHECK(aligned16(out) && aligned16(qkv), "[attention] qkv and out must be 16-byte aligned");
  check_grid(B, H);
#ifdef DINO_CUDA_SM90A
  if (kernel == AttentionKernel::wgmma)
    return attention_forward_sm90(out, lse, qkv, B, N, H, stream);
#endif
  switch (Dh) {
    case 32: return forward<32>(out, lse, qkv, B, N, H, stream);
    case 64: return forward<64>(out, lse, qkv, B, N, H, stream);
    default: return forward<128>(out, lse, qkv, B, N, H, stream);
  }
}

void attention_backward_with(AttentionKernel kernel, __nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                             const __nv_bfloat16* qkv, const __nv_bfloat16* out, const float* lse,
                             int B, int N, int H, int Dh, cudaStream_t stream) {
  check_runs(kernel, Dh);
  if (B <= 0 || N <= 0 || H <= 0) return;
  DINO_CHECK(aligned16(dqkv) && aligned16(dout) && aligned16(qkv) && aligned16(out),
             "[attention] qkv, dqkv, out and dout must be 16-byte aligned");
  check_grid(B, H);
  // dv (B, H, N) = rowsum(dout * out): both kernels' dP - dv term.
  const int64_t rows = int64_t(B) * N * H;
  float* dv = static_cast<float*>(scratch_alloc(size_t(rows) * sizeof(float), stream));
  switch (Dh) {
    case 32: row_dots<32>(dv, dout, out, B, N, H, stream); break;
    case 64: row_dots<64>(dv, dout, out, B, N, H, stream); break;
    default: row_dots<128>(dv, dout, out, B, N, H, stream); break;
  }
#ifdef DINO_CUDA_SM90A
  if (kernel == AttentionKernel::wgmma) {
    attention_backward_sm90(dqkv, dout, qkv, lse, dv, B, N, H, stream);
    scratch_free(dv, stream);
    return;
  }
#endif
  switch (Dh) {
    case 32: backward<32>(dqkv, dout, qkv, lse, dv, B, N, H, stream); break;
    case 64: backward<64>(dqkv, dout, qkv, lse, dv, B, N, H, stream); break;
    default: backward<128>(dqkv, dout, qkv, lse, dv, B, N, H, stream); break;
  }
  scratch_free(dv, stream);
}

}  // namespace dino::kernels::cuda
