#pragma once
// The backward of an elementwise op that follows a Linear, fused with that Linear's bias
// gradient: dy = f(dout) as stored (bf16) and db = the column sums of dy, in one pass over the
// rows. linear_gelu (kernels/cuda/linear_gelu.cu: dy = dout * gelu'(pre)) and linear_drop_path
// (kernels/cuda/linear_drop_path.cu: dy = dout * the sample's keep scale) differ only in f, so
// the pass is written once, here, and its split and second kernel in bias_backward.cu.
//
// Why: the bias gradient is a column sum of exactly what the elementwise backward writes. Done
// apart, after the weight product, it costs two more launches, a scratch buffer and a second
// read of dy (kernels/cuda/gemm.cu's bias_grad). Here each block sums the values it has just
// written while they are in registers, so the only extra work is one small launch that adds
// the blocks' partials.
//
// Shape, as gemm.cu's column sums: a block of 8 warps owns 256 columns (8 per lane: one 16-byte
// load of dout and one 16-byte store of dy per row, when O % 8 == 0 and the pointers are
// 16-byte aligned; element accesses otherwise) and a chunk of rows; warp w takes rows w, w + 8,
// ... of the chunk, and the warps are added in order through shared memory into the chunk's
// row of partial (chunks, O) (write_column_partials). The second kernel adds the chunks in
// order (sum_partial_column). The chunks are sized as bias_grad's, and each column's rows are
// added in the same order, so db has the bits of the unfused column sums of the same dy.
// Deterministic: fixed orders everywhere, no atomics.
//
// What is summed is dy as stored (rounded to bf16), the values the weight product reads.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/device_util.cuh"

namespace dino::kernels::cuda {

constexpr int kBiasBackwardColumnsPerLane = 8, kBiasBackwardWarps = 8;
static_assert(kBiasBackwardWarps == kBiasBackwardColumnsPerLane,
              "write_column_partials: one column per thread");
constexpr int kBiasBackwardColumnsPerBlock = 32 * kBiasBackwardColumnsPerLane;
using LaneColumns = float[kBiasBackwardColumnsPerLane];

// v[e] <- p[at + e] for e < n, 0 beyond; with kVec (n is then the full 8) one 16-byte load.
template <bool kVec>
__device__ __forceinline__ void load_lane_columns(LaneColumns& v, const __nv_bfloat16* p,
                                                  int64_t at, int64_t n) {
  if (kVec) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p + at);
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
      v[2 * i] = f.x;
      v[2 * i + 1] = f.y;
    }
  } else {
#pragma unroll
    for (int e = 0; e < kBiasBackwardColumnsPerLane; ++e) v[e] = e < n ? load_f(p, at + e) : 0.f;
  }
}

// p[at + e] <- bf16(v[e]) for e < n, and v[e] <- the stored value (what the sums must add).
template <bool kVec>
__device__ __forceinline__ void store_lane_columns(__nv_bfloat16* p, LaneColumns& v, int64_t at,
                                                   int64_t n) {
  if (kVec) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
      *reinterpret_cast<__nv_bfloat162*>(&w[i]) = h;
      const float2 f = __bfloat1622float2(h);
      v[2 * i] = f.x;
      v[2 * i + 1] = f.y;
    }
    *reinterpret_cast<uint4*>(p + at) = make_uint4(w[0], w[1], w[2], w[3]);
  } else {
#pragma unroll
    for (int e = 0; e < kBiasBackwardColumnsPerLane; ++e) {
      if (e < n) {
        const __nv_bfloat16 h = __float2bfloat16_rn(v[e]);
        p[at + e] = h;
        v[e] = __bfloat162float(h);
      }
    }
  }
}

// dy (R, O) <- grad applied to dout (R, O); partial (chunks, O), when not null, the sums of the
// stored dy over each chunk of rows_per_chunk rows. Grad has
//   template <bool kVec> __device__ void apply(LaneColumns& d, int64_t r, int64_t at,
//                                              int64_t n) const
// which turns d, dout's elements at .. at + n - 1 of row r (as floats), into dy's.
template <bool kVec, class Grad>
__global__ void bias_backward_kernel(__nv_bfloat16* dy, float* partial, const __nv_bfloat16* dout,
                                     Grad grad, int64_t R, int64_t O, int64_t rows_per_chunk) {
  __shared__ float warp_sums[kBiasBackwardWarps][kBiasBackwardColumnsPerBlock];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  const int64_t c0 =
      int64_t(blockIdx.x) * kBiasBackwardColumnsPerBlock + lane * kBiasBackwardColumnsPerLane;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < R ? r0 + rows_per_chunk : R;
  const int64_t n = O - c0 < kBiasBackwardColumnsPerLane ? O - c0 : kBiasBackwardColumnsPerLane;
  float acc[kBiasBackwardColumnsPerLane] = {};
  if (n > 0) {
    for (int64_t r = r0 + warp; r < r1; r += kBiasBackwardWarps) {
      const int64_t at = r * O + c0;
      LaneColumns d;
      load_lane_columns<kVec>(d, dout, at, n);
      grad.template apply<kVec>(d, r, at, n);
      store_lane_columns<kVec>(dy, d, at, n);
#pragma unroll
      for (int e = 0; e < kBiasBackwardColumnsPerLane; ++e)
        if (e < n) acc[e] += d[e];
    }
  }
  if (!partial) return;  // uniform across the grid: no thread is left at the barrier
  write_column_partials(partial, acc, O, warp_sums);
}

// How a launch of bias_backward_kernel splits (R, O): about eight blocks per SM in all, in
// 256-column strips and chunks of rows_per_chunk rows, as bias_grad does; vec: the 16-byte
// path (O % 8 == 0 and every pointer the pass reads or writes 16-byte aligned); partial:
// scratch for chunks x O floats when wanted, else null (kernels/cuda/bias_backward.cu). Each
// op's .cu file launches the kernel itself, with its Grad:
//   kernel<<<l.grid, kBiasBackwardThreads, 0, stream>>>(dy, l.partial, dout, grad, R, O,
//                                                       l.rows_per_chunk);
// then, when the bias gradient is wanted, bias_backward_reduce.
constexpr int kBiasBackwardThreads = 32 * kBiasBackwardWarps;
struct BiasBackwardLaunch {
  dim3 grid;
  int chunks;
  int64_t rows_per_chunk;
  bool vec;
  float* partial;
};
BiasBackwardLaunch bias_backward_launch(int64_t R, int64_t O, bool want_partial,
                                        std::initializer_list<const void*> pointers);
// dbias (O) <- Σ over chunks of partial (chunks, O), chunks in order; then frees partial
// (stream-ordered: after the kernels that use it).
void bias_backward_reduce(float* dbias, float* partial, int chunks, int64_t O, cudaStream_t stream);

}  // namespace dino::kernels::cuda
