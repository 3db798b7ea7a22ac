// LayerNorm over the last dim (C) of an fp32 residual stream, writing bf16 for the next
// GEMM and keeping fp32 row statistics for the backward (ARCHITECTURE §3):
//   out = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(biased var + eps).
//
// Shape: one warp per row, the row held in registers (RowSlice: lane l owns columns
// 128 j + 4 l .. +3), so each element is read from memory once and the two-pass variance
// (the sum of (x - mean)^2, as on the CPU: E[x^2] - mean^2 cancels badly when |mean| >> std,
// which the residual stream does) costs no second read. All of a row's loads are issued
// before the first use. 16-byte loads when C % 4 == 0 and every pointer is aligned;
// otherwise element loads with the same column ownership (C = 33 works). Rows up to
// C = 128 * kMaxGroups = 1024 (ViT-L); two instantiations per kernel: 3 groups (C <= 384,
// ViT-S), 8 groups (C <= 1024), and an 8-group scalar one for odd C.
//
// Bytes (minimum, per element): forward reads x (4) and writes out (2): 6 B; the residual
// form also reads branch (2) and writes x_out (4): 12 B. Backward reads dout (2), x (4),
// writes dx (4): 10 B, plus the partial sums (2 * blocks * C * 4 B, a few MB at most).
// FLOPs are ~8 per element: memory-bound everywhere.
//
// Backward: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight, one warp
// per row. dweight = sum_rows dout * xhat and dbias = sum_rows dout accumulate in each lane's
// registers over the rows its warp handles (no second read of dout and x), the block's warps
// are added in warp order through shared memory into one partial row per block, and a second
// kernel adds the partial rows in block order (a fixed tree): deterministic, no atomics.
// (The first version re-read the block's rows column by column for dweight/dbias: 20% of
// the copy bandwidth on an H200, against 74% for cuDNN;
// benchmarks/results/2026-12-04-h200-f940d56.)
#include <cuda_bf16.h>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroups = 8;    // C <= 1024
constexpr int kSmallGroups = 3;  // C <= 384
// Resident backward blocks per SM for C <= 384 (<= 85 registers a thread): 24 warps, each
// with a row's loads (2.3 KB at C = 384) in flight. The grid is one such wave.
constexpr int kBackwardBlocksPerSm = 3;

// 4 consecutive elements as floats, from fp32 (16-byte load) or bf16 (8-byte load).
__device__ __forceinline__ float4 load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void store4(__nv_bfloat16* p, float4 v) {
  uint2 raw;
  *reinterpret_cast<__nv_bfloat162*>(&raw.x) = __floats2bfloat162_rn(v.x, v.y);
  *reinterpret_cast<__nv_bfloat162*>(&raw.y) = __floats2bfloat162_rn(v.z, v.w);
  *reinterpret_cast<uint2*>(p) = raw;
}
__device__ __forceinline__ float& at(float4& v, int e) { return (&v.x)[e]; }

// The kGroups float4 of one row that lane `lane` owns: columns 128 j + 4 lane + e. Columns
// past C read as 0 and are never written; valid() tells them apart.
template <int kGroups, bool kVec>
struct RowSlice {
  float4 v[kGroups];

  __device__ static int col(int j, int lane) { return j * 128 + lane * 4; }
  __device__ static bool valid(int j, int e, int lane, int C) { return col(j, lane) + e < C; }

  template <class T>
  __device__ void load(const T* row, int C, int lane) {
#pragma unroll
    for (int j = 0; j < kGroups; ++j) {
      const int c = col(j, lane);
      if (kVec) {
        v[j] = c < C ? load4(row + c) : make_float4(0.f, 0.f, 0.f, 0.f);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) at(v[j], e) = c + e < C ? to_float(row[c + e]) : 0.f;
      }
    }
  }
  template <class T>
  __device__ void store(T* row, int C, int lane) const {
#pragma unroll
    for (int j = 0; j < kGroups; ++j) {
      const int c = col(j, lane);
      if (kVec) {
        if (c < C) store4(row + c, v[j]);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (c + e < C) row[c + e] = from_float<T>((&v[j].x)[e]);
      }
    }
  }
};

bool aligned(const void* p, unsigned bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

// kernels

// One warp per row. With branch != nullptr the row is x + branch, written to x_out first
// (x_out may alias x: each lane writes only the elements it read).
template <int kGroups, bool kVec>
__global__ void layernorm_forward_kernel(float* x_out, __nv_bfloat16* out, float* mean, float* rstd,
                                         const float* x, const __nv_bfloat16* branch,
                                         const float* weight, const float* bias, int N, int C,
                                         float eps) {
  using Row = RowSlice<kGroups, kVec>;
  const int row = blockIdx.x * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t off = int64_t(row) * C;
  Row v;
  v.load(x + off, C, lane);
  if (branch) {
    Row d;
    d.load(branch + off, C, lane);
#pragma unroll
    for (int j = 0; j < kGroups; ++j)
      v.v[j] = make_float4(v.v[j].x + d.v[j].x, v.v[j].y + d.v[j].y, v.v[j].z + d.v[j].z,
                           v.v[j].w + d.v[j].w);
    v.store(x_out + off, C, lane);
  }
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kGroups; ++j) sum += (v.v[j].x + v.v[j].y) + (v.v[j].z + v.v[j].w);
  const float mu = warp_sum(sum) / float(C);

  float sq = 0.f;
#pragma unroll
  for (int j = 0; j < kGroups; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float a = Row::valid(j, e, lane, C) ? at(v.v[j], e) - mu : 0.f;
      sq += a * a;
    }
  const float rs = rsqrtf(warp_sum(sq) / float(C) + eps);

  Row w, b;
  w.load(weight, C, lane);
  b.load(bias, C, lane);
#pragma unroll
  for (int j = 0; j < kGroups; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      at(v.v[j], e) = (at(v.v[j], e) - mu) * rs * at(w.v[j], e) + at(b.v[j], e);
  v.store(out + off, C, lane);
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// Block b owns rows [b * rows_per_block, ...), its warp w rows b * rows_per_block + w + 8 i.
// Each warp writes dx for its rows and keeps dweight/dbias sums for them in registers; the
// warps then add theirs in warp order into shared memory, which becomes
// the block's row of dweight_partial / dbias_partial (blocks, C).
template <int kGroups, bool kVec>
__global__ void __launch_bounds__(kThreads, kGroups <= kSmallGroups ? kBackwardBlocksPerSm : 1)
    layernorm_backward_kernel(float* dx, float* dweight_partial, float* dbias_partial,
                              const __nv_bfloat16* dout, const float* x, const float* mean,
                              const float* rstd, const float* weight, int N, int C,
                              int rows_per_block) {
  using Row = RowSlice<kGroups, kVec>;
  __shared__ float block_sums[2][128 * kGroups];  // dweight, dbias
  const int r0 = blockIdx.x * rows_per_block;
  const int r1 = min(N, r0 + rows_per_block);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  Row w, dw, db;
  w.load(weight, C, lane);
#pragma unroll
  for (int j = 0; j < kGroups; ++j) {
    dw.v[j] = make_float4(0.f, 0.f, 0.f, 0.f);
    db.v[j] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
  for (int row = r0 + warp; row < r1; row += kWarps) {
    const int64_t off = int64_t(row) * C;
    Row d, v;
    d.load(dout + off, C, lane);
    v.load(x + off, C, lane);
    const float mu = mean[row], rs = rstd[row];
    float sum_g = 0.f, sum_gx = 0.f;
#pragma unroll
    for (int j = 0; j < kGroups; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        // Past C, d and w are 0, so g is 0 and xhat's value does not matter.
        const float xhat = (at(v.v[j], e) - mu) * rs;
        const float g = at(d.v[j], e) * at(w.v[j], e);
        at(v.v[j], e) = xhat;
        sum_g += g;
        sum_gx += g * xhat;
        at(dw.v[j], e) += at(d.v[j], e) * xhat;
        at(db.v[j], e) += at(d.v[j], e);
      }
    const float mean_g = warp_sum(sum_g) / float(C);
    const float mean_gx = warp_sum(sum_gx) / float(C);
#pragma unroll
    for (int j = 0; j < kGroups; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        at(d.v[j], e) = rs * (at(d.v[j], e) * at(w.v[j], e) - mean_g - at(v.v[j], e) * mean_gx);
    d.store(dx + off, C, lane);
  }

  for (int k = 0; k < kWarps; ++k) {
    if (warp == k) {
#pragma unroll
      for (int j = 0; j < kGroups; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (!Row::valid(j, e, lane, C)) continue;
          const int c = Row::col(j, lane) + e;
          block_sums[0][c] = (k == 0 ? 0.f : block_sums[0][c]) + at(dw.v[j], e);
          block_sums[1][c] = (k == 0 ? 0.f : block_sums[1][c]) + at(db.v[j], e);
        }
    }
    __syncthreads();
  }
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    dweight_partial[int64_t(blockIdx.x) * C + c] = block_sums[0][c];
    dbias_partial[int64_t(blockIdx.x) * C + c] = block_sums[1][c];
  }
}

// dweight[c] = sum over blocks of dweight_partial[block][c]; dbias likewise (fixed order).
__global__ void layernorm_param_grad_reduce_kernel(float* dweight, float* dbias,
                                                   const float* dweight_partial,
                                                   const float* dbias_partial, int blocks, int C) {
  __shared__ float tree[32][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const float dw = sum_partial_column(dweight_partial, blocks, C, tree);
  if (threadIdx.x < 32 && c < C) dweight[c] = dw;
  const float db = sum_partial_column(dbias_partial, blocks, C, tree);
  if (threadIdx.x < 32 && c < C) dbias[c] = db;
}

// launchers

namespace {

void check_width(const char* op, int C) {
  DINO_CHECK(C <= 128 * kMaxGroups, "[", op,
             "] the CUDA LayerNorm holds a row in registers: C "
             "up to ",
             128 * kMaxGroups, " (ViT-L), got C = ", C);
}

void launch_forward(float* x_out, __nv_bfloat16* out, float* mean, float* rstd, const float* x,
                    const __nv_bfloat16* branch, const float* weight, const float* bias, int N,
                    int C, float eps, cudaStream_t stream) {
  if (N <= 0) return;
  check_width(branch ? "residual_layernorm_forward" : "layernorm_forward", C);
  const bool vec = C % 4 == 0 && aligned(x, 16) && aligned(out, 8) && aligned(weight, 16) &&
                   aligned(bias, 16) && (!branch || (aligned(x_out, 16) && aligned(branch, 8)));
  const int blocks = (N + kWarps - 1) / kWarps;
  auto kernel = !vec                      ? layernorm_forward_kernel<kMaxGroups, false>
                : C <= 128 * kSmallGroups ? layernorm_forward_kernel<kSmallGroups, true>
                                          : layernorm_forward_kernel<kMaxGroups, true>;
  kernel<<<blocks, kThreads, 0, stream>>>(x_out, out, mean, rstd, x, branch, weight, bias, N, C,
                                          eps);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void layernorm_forward(__nv_bfloat16* out, float* mean, float* rstd, const float* x,
                       const float* weight, const float* bias, int N, int C, float eps,
                       cudaStream_t stream) {
  launch_forward(nullptr, out, mean, rstd, x, nullptr, weight, bias, N, C, eps, stream);
}

void residual_layernorm_forward(float* x_out, __nv_bfloat16* out, float* mean, float* rstd,
                                const float* x, const __nv_bfloat16* branch, const float* weight,
                                const float* bias, int N, int C, float eps, cudaStream_t stream) {
  launch_forward(x_out, out, mean, rstd, x, branch, weight, bias, N, C, eps, stream);
}

void layernorm_backward(float* dx, float* dweight, float* dbias, const __nv_bfloat16* dout,
                        const float* x, const float* mean, const float* rstd, const float* weight,
                        int N, int C, cudaStream_t stream) {
  if (C <= 0) return;
  if (N <= 0) {
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(C) * sizeof(float), stream));
    CUDA_CHECK(cudaMemsetAsync(dbias, 0, size_t(C) * sizeof(float), stream));
    return;
  }
  check_width("layernorm_backward", C);
  // One wave of blocks (kBackwardBlocksPerSm per SM: equal blocks, so no second, partial
  // wave), and at least one row per warp.
  const int target = kBackwardBlocksPerSm * context().sm_count;
  int rows_per_block = (N + target - 1) / target;
  if (rows_per_block < kWarps) rows_per_block = kWarps;
  const int blocks = (N + rows_per_block - 1) / rows_per_block;
  float* partial =
      static_cast<float*>(scratch_alloc(size_t(2) * blocks * C * sizeof(float), stream));
  float* dweight_partial = partial;
  float* dbias_partial = partial + int64_t(blocks) * C;
  const bool vec =
      C % 4 == 0 && aligned(dx, 16) && aligned(dout, 8) && aligned(x, 16) && aligned(weight, 16);
  auto kernel = !vec                      ? layernorm_backward_kernel<kMaxGroups, false>
                : C <= 128 * kSmallGroups ? layernorm_backward_kernel<kSmallGroups, true>
                                          : layernorm_backward_kernel<kMaxGroups, true>;
  kernel<<<blocks, kThreads, 0, stream>>>(dx, dweight_partial, dbias_partial, dout, x, mean, rstd,
                                          weight, N, C, rows_per_block);
  CUDA_CHECK(cudaGetLastError());
  layernorm_param_grad_reduce_kernel<<<(C + 31) / 32, kPartialColumnThreads, 0, stream>>>(
      dweight, dbias, dweight_partial, dbias_partial, blocks, C);
  CUDA_CHECK(cudaGetLastError());
  scratch_free(partial, stream);
}

void CudaBackend::layer_norm(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                             const Tensor& x, const Tensor& weight, const Tensor& bias,
                             double eps) const {
  layernorm_forward(bf16_ptr(out), f32_ptr(mean), f32_ptr(rstd), f32_ptr(x), f32_ptr(weight),
                    f32_ptr(bias), as_int("layer_norm", x.numel() / x.size(-1), "rows"),
                    as_int("layer_norm", x.size(-1), "columns"), float(eps), op_stream());
}

void CudaBackend::add_layer_norm(const Tensor& sum, const Tensor& out, const Tensor& mean,
                                 const Tensor& rstd, const Tensor& x, const Tensor& branch,
                                 const Tensor& weight, const Tensor& bias, double eps) const {
  residual_layernorm_forward(
      f32_ptr(sum), bf16_ptr(out), f32_ptr(mean), f32_ptr(rstd), f32_ptr(x), bf16_ptr(branch),
      f32_ptr(weight), f32_ptr(bias), as_int("add_layer_norm", x.numel() / x.size(-1), "rows"),
      as_int("add_layer_norm", x.size(-1), "columns"), float(eps), op_stream());
}

void CudaBackend::layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                      const Tensor& dout, const Tensor& x, const Tensor& mean,
                                      const Tensor& rstd, const Tensor& weight) const {
  layernorm_backward(f32_ptr(dx), f32_ptr(dweight), f32_ptr(dbias), bf16_ptr(dout), f32_ptr(x),
                     f32_ptr(mean), f32_ptr(rstd), f32_ptr(weight),
                     as_int("layer_norm", x.numel() / x.size(-1), "rows"),
                     as_int("layer_norm", x.size(-1), "columns"), op_stream());
}

}  // namespace dino::kernels::cuda
