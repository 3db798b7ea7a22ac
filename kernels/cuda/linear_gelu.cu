// linear_gelu's backward before its products (core/ops_linear.cpp): dpre = dout * gelu'(pre),
// and the Linear's bias gradient, the column sums of dpre, from the same pass.
//
// Why fused: the bias gradient of fc1 (and of the DINO head's hidden layers) is a column sum of
// exactly what the GELU backward writes. Done apart, after the weight product, it costs two
// more launches, a scratch buffer and a second read of dpre (kernels/cuda/gemm.cu's bias_grad).
// Here each block sums the values it has just written while they are in registers, so the
// only extra work is one small launch that adds the blocks' partials. Not measured on a GPU.
//
// Shape, as gemm.cu's column sums: a block of 8 warps owns 256 columns (8 per lane: one 16-byte
// load of dout and of pre per row, and one 16-byte store of dpre, when O % 8 == 0 and the
// pointers are 16-byte aligned; element accesses otherwise) and a chunk of rows; warp w takes
// rows w, w + 8, ... of the chunk, and the warps are added in order through shared memory into
// the chunk's row of partial (chunks, O). The second kernel adds the chunks in order
// (sum_partial_column). Deterministic: fixed orders everywhere, no atomics.
//
// What is summed is dpre as stored (rounded to bf16), the values the weight product reads, so
// db is the column sum of the same dy the unfused path summed. The derivative is elementwise.cu's
// (device_util.cuh), so dpre has the bits the unary GELU backward writes.
//
// Bytes (minimum): read dout and pre, write dpre (2 + 2 + 2 per element) and db; the partials
// (chunks x O floats, about 8 blocks per SM) are small beside them.
#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kColumnsPerLane = 8, kWarps = 8;
static_assert(kWarps == kColumnsPerLane, "write_column_partials: one column per thread");
constexpr int kColumnsPerBlock = 32 * kColumnsPerLane;

}  // namespace

// kernels

// dpre (R, O) <- dout (R, O) * gelu'(pre (R, O)); partial (chunks, O), when not null, the sums of
// the stored dpre over each chunk of rows_per_chunk rows.
template <bool kVec>
__global__ void gelu_bias_backward_kernel(__nv_bfloat16* dpre, float* partial,
                                          const __nv_bfloat16* dout, const __nv_bfloat16* pre,
                                          int64_t R, int64_t O, int64_t rows_per_chunk) {
  __shared__ float warp_sums[kWarps][kColumnsPerBlock];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  const int64_t c0 = int64_t(blockIdx.x) * kColumnsPerBlock + lane * kColumnsPerLane;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < R ? r0 + rows_per_chunk : R;
  float acc[kColumnsPerLane] = {};
  for (int64_t r = r0 + warp; r < r1; r += kWarps) {
    const int64_t at = r * O + c0;
    if (kVec) {
      if (c0 < O) {
        const uint4 g_raw = *reinterpret_cast<const uint4*>(dout + at);
        const uint4 x_raw = *reinterpret_cast<const uint4*>(pre + at);
        const uint32_t g[4] = {g_raw.x, g_raw.y, g_raw.z, g_raw.w};
        const uint32_t x[4] = {x_raw.x, x_raw.y, x_raw.z, x_raw.w};
        uint32_t d[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 gf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&g[i]));
          const float2 xf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&x[i]));
          const __nv_bfloat162 dv =
              __floats2bfloat162_rn(gf.x * gelu_grad_f(xf.x), gf.y * gelu_grad_f(xf.y));
          *reinterpret_cast<__nv_bfloat162*>(&d[i]) = dv;
          const float2 df = __bfloat1622float2(dv);
          acc[2 * i] += df.x;
          acc[2 * i + 1] += df.y;
        }
        *reinterpret_cast<uint4*>(dpre + at) = make_uint4(d[0], d[1], d[2], d[3]);
      }
    } else {
#pragma unroll
      for (int e = 0; e < kColumnsPerLane; ++e) {
        if (c0 + e < O) {
          const __nv_bfloat16 dv =
              __float2bfloat16_rn(load_f(dout, at + e) * gelu_grad_f(load_f(pre, at + e)));
          dpre[at + e] = dv;
          acc[e] += __bfloat162float(dv);
        }
      }
    }
  }
  if (!partial) return;  // uniform across the grid: no thread is left at the barrier
  write_column_partials(partial, acc, O, warp_sums);
}

// dbias (O) <- Σ over chunks of partial (chunks, O), chunks in order.
__global__ void gelu_bias_reduce_kernel(float* dbias, const float* partial, int chunks, int64_t O) {
  __shared__ float tree[32][33];
  const float sum = sum_partial_column(partial, chunks, O, tree);
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  if (threadIdx.x < 32 && c < O) dbias[c] = sum;
}

// launchers

// dpre (R, O), dbias (O; null: not wanted) <- dout (R, O), pre (R, O): about eight blocks per
// SM in all, split into 256-column strips and row chunks.
void gelu_bias_backward(__nv_bfloat16* dpre, float* dbias, const __nv_bfloat16* dout,
                        const __nv_bfloat16* pre, int64_t R, int64_t O, cudaStream_t stream) {
  if (R <= 0 || O <= 0) return;
  const int64_t strips = (O + kColumnsPerBlock - 1) / kColumnsPerBlock;
  const int64_t want = std::max<int64_t>(1, 8 * int64_t(context().sm_count) / strips);
  const int64_t rows_per_chunk = std::max<int64_t>(kWarps, (R + want - 1) / want);
  const int chunks = int((R + rows_per_chunk - 1) / rows_per_chunk);
  float* partial =
      dbias ? static_cast<float*>(alloc(size_t(chunks) * size_t(O) * sizeof(float))) : nullptr;
  const dim3 grid(static_cast<unsigned>(strips), static_cast<unsigned>(chunks));
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec = O % kColumnsPerLane == 0 && aligned(dpre) && aligned(dout) && aligned(pre);
  auto kernel = vec ? gelu_bias_backward_kernel<true> : gelu_bias_backward_kernel<false>;
  kernel<<<grid, 32 * kWarps, 0, stream>>>(dpre, partial, dout, pre, R, O, rows_per_chunk);
  CUDA_CHECK(cudaGetLastError());
  if (!dbias) return;
  gelu_bias_reduce_kernel<<<int((O + 31) / 32), kPartialColumnThreads, 0, stream>>>(dbias, partial,
                                                                                    chunks, O);
  CUDA_CHECK(cudaGetLastError());
  free(partial);  // stream-ordered: after the kernels that use it
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
