// LayerNorm over the last dim (C) of an fp32 residual stream, writing bf16 for the next
// GEMM and keeping fp32 row statistics for the backward (DESIGN §3):
//   out = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(biased var + eps).
//
// Shape: one warp per row. The row is read three times (sum, sum of squared deviations,
// normalise); the second and third reads hit L1/L2 for rows of a few KB (C = 384..1024 in a
// ViT), so DRAM sees one read. The variance is the two-pass sum of (x - mean)^2, as on the
// CPU: E[x^2] - mean^2 cancels badly when |mean| >> std, which the residual stream does.
// Loads are 16 bytes (float4) when C % 4 == 0 and every pointer is aligned; otherwise a
// scalar path (C = 33 works).
//
// Bytes (minimum, per element): forward reads x (4) and writes out (2): 6 B; the residual
// form also reads branch (2) and writes x_out (4): 12 B. Backward reads dout (2), x (4),
// writes dx (4): 10 B, plus the partial sums (2 * blocks * C * 4 B, a few hundred KB).
// FLOPs are ~8 per element: memory-bound everywhere.
//
// Backward: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight, one warp
// per row. dweight = sum_rows dout * xhat and dbias = sum_rows dout: each block sums its
// chunk of rows per column in row order into a partial row, and a second kernel adds the
// partial rows in block order, so the result is deterministic and needs no atomics.
#include <cuda_bf16.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;


// 4 consecutive elements as floats, from fp32 (16-byte load) or bf16 (8-byte load).
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ void store4(__nv_bfloat16* p, float4 v) {
  uint2 raw;
  *reinterpret_cast<__nv_bfloat162*>(&raw.x) = __floats2bfloat162_rn(v.x, v.y);
  *reinterpret_cast<__nv_bfloat162*>(&raw.y) = __floats2bfloat162_rn(v.z, v.w);
  *reinterpret_cast<uint2*>(p) = raw;
}

bool aligned(const void* p, unsigned bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace

// kernels

// One warp per row. With branch != nullptr the row is x + branch, written to x_out first
// (x_out may alias x: each lane re-reads exactly the elements it wrote).
template <bool kVec>
__global__ void layernorm_forward_kernel(float* x_out, __nv_bfloat16* out, float* mean,
                                         float* rstd, const float* x,
                                         const __nv_bfloat16* branch, const float* weight,
                                         const float* bias, int N, int C, float eps) {
  const int row = blockIdx.x * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t off = int64_t(row) * C;
  const float* xr = x + off;
  float sum = 0.f;
  if (branch) {
    float* xo = x_out + off;
    const __nv_bfloat16* br = branch + off;
    if (kVec) {
      for (int i = lane * 4; i < C; i += 128) {
        float4 v = load4(xr + i);
        const float4 d = load4(br + i);
        v.x += d.x, v.y += d.y, v.z += d.z, v.w += d.w;
        *reinterpret_cast<float4*>(xo + i) = v;
        sum += (v.x + v.y) + (v.z + v.w);
      }
    } else {
      for (int i = lane; i < C; i += 32) {
        const float v = xr[i] + __bfloat162float(br[i]);
        xo[i] = v;
        sum += v;
      }
    }
    xr = xo;
  } else if (kVec) {
    for (int i = lane * 4; i < C; i += 128) {
      const float4 v = load4(xr + i);
      sum += (v.x + v.y) + (v.z + v.w);
    }
  } else {
    for (int i = lane; i < C; i += 32) sum += xr[i];
  }
  const float mu = warp_sum(sum) / float(C);

  float sq = 0.f;
  if (kVec) {
    for (int i = lane * 4; i < C; i += 128) {
      const float4 v = load4(xr + i);
      const float a = v.x - mu, b = v.y - mu, c = v.z - mu, d = v.w - mu;
      sq += (a * a + b * b) + (c * c + d * d);
    }
  } else {
    for (int i = lane; i < C; i += 32) {
      const float a = xr[i] - mu;
      sq += a * a;
    }
  }
  const float rs = rsqrtf(warp_sum(sq) / float(C) + eps);

  __nv_bfloat16* outr = out + off;
  if (kVec) {
    for (int i = lane * 4; i < C; i += 128) {
      const float4 v = load4(xr + i), w = load4(weight + i), b = load4(bias + i);
      store4(outr + i, make_float4((v.x - mu) * rs * w.x + b.x, (v.y - mu) * rs * w.y + b.y,
                                   (v.z - mu) * rs * w.z + b.z, (v.w - mu) * rs * w.w + b.w));
    }
  } else {
    for (int i = lane; i < C; i += 32)
      outr[i] = __float2bfloat16_rn((xr[i] - mu) * rs * weight[i] + bias[i]);
  }
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// Block b owns rows [b * rows_per_block, ...): one warp per row writes dx, then each thread
// sums its columns over the block's rows in order into dweight_partial / dbias_partial
// (blocks, C).
template <bool kVec>
__global__ void layernorm_backward_kernel(float* dx, float* dweight_partial, float* dbias_partial,
                                          const __nv_bfloat16* dout, const float* x,
                                          const float* mean, const float* rstd,
                                          const float* weight, int N, int C,
                                          int rows_per_block) {
  const int r0 = blockIdx.x * rows_per_block;
  const int r1 = min(N, r0 + rows_per_block);
  const int lane = threadIdx.x % 32;
  for (int row = r0 + threadIdx.x / 32; row < r1; row += kWarps) {
    const int64_t off = int64_t(row) * C;
    const float mu = mean[row], rs = rstd[row];
    float sum_g = 0.f, sum_gx = 0.f;
    if (kVec) {
      for (int i = lane * 4; i < C; i += 128) {
        const float4 d = load4(dout + off + i), v = load4(x + off + i), w = load4(weight + i);
        const float g0 = d.x * w.x, g1 = d.y * w.y, g2 = d.z * w.z, g3 = d.w * w.w;
        sum_g += (g0 + g1) + (g2 + g3);
        sum_gx += (g0 * (v.x - mu) + g1 * (v.y - mu)) + (g2 * (v.z - mu) + g3 * (v.w - mu));
      }
    } else {
      for (int i = lane; i < C; i += 32) {
        const float g = __bfloat162float(dout[off + i]) * weight[i];
        sum_g += g;
        sum_gx += g * (x[off + i] - mu);
      }
    }
    const float mean_g = warp_sum(sum_g) / float(C);
    const float mean_gx = warp_sum(sum_gx) * rs / float(C);
    if (kVec) {
      for (int i = lane * 4; i < C; i += 128) {
        const float4 d = load4(dout + off + i), v = load4(x + off + i), w = load4(weight + i);
        float4 r;
        r.x = rs * (d.x * w.x - mean_g - (v.x - mu) * rs * mean_gx);
        r.y = rs * (d.y * w.y - mean_g - (v.y - mu) * rs * mean_gx);
        r.z = rs * (d.z * w.z - mean_g - (v.z - mu) * rs * mean_gx);
        r.w = rs * (d.w * w.w - mean_g - (v.w - mu) * rs * mean_gx);
        *reinterpret_cast<float4*>(dx + off + i) = r;
      }
    } else {
      for (int i = lane; i < C; i += 32) {
        const float g = __bfloat162float(dout[off + i]) * weight[i];
        dx[off + i] = rs * (g - mean_g - (x[off + i] - mu) * rs * mean_gx);
      }
    }
  }

  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float dw = 0.f, db = 0.f;
    for (int row = r0; row < r1; ++row) {
      const int64_t i = int64_t(row) * C + c;
      const float d = __bfloat162float(dout[i]);
      dw += d * (x[i] - mean[row]) * rstd[row];
      db += d;
    }
    dweight_partial[int64_t(blockIdx.x) * C + c] = dw;
    dbias_partial[int64_t(blockIdx.x) * C + c] = db;
  }
}

// dweight[c] = sum over blocks (in block order) of dweight_partial[block][c]; dbias likewise.
__global__ void layernorm_param_grad_reduce_kernel(float* dweight, float* dbias,
                                                   const float* dweight_partial,
                                                   const float* dbias_partial, int blocks,
                                                   int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float dw = 0.f, db = 0.f;
  for (int b = 0; b < blocks; ++b) {
    dw += dweight_partial[int64_t(b) * C + c];
    db += dbias_partial[int64_t(b) * C + c];
  }
  dweight[c] = dw;
  dbias[c] = db;
}

// launchers

namespace {

void launch_forward(float* x_out, __nv_bfloat16* out, float* mean, float* rstd, const float* x,
                    const __nv_bfloat16* branch, const float* weight, const float* bias, int N,
                    int C, float eps, cudaStream_t stream) {
  if (N <= 0) return;
  const bool vec = C % 4 == 0 && aligned(x, 16) && aligned(out, 8) && aligned(weight, 16) &&
                   aligned(bias, 16) && (!branch || (aligned(x_out, 16) && aligned(branch, 8)));
  const int blocks = (N + kWarps - 1) / kWarps;
  if (vec)
    layernorm_forward_kernel<true><<<blocks, kThreads, 0, stream>>>(x_out, out, mean, rstd, x,
                                                                   branch, weight, bias, N, C, eps);
  else
    layernorm_forward_kernel<false><<<blocks, kThreads, 0, stream>>>(x_out, out, mean, rstd, x,
                                                                    branch, weight, bias, N, C, eps);
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
                        const float* x, const float* mean, const float* rstd,
                        const float* weight, int N, int C, cudaStream_t stream) {
  if (C <= 0) return;
  if (N <= 0) {
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(C) * sizeof(float), stream));
    CUDA_CHECK(cudaMemsetAsync(dbias, 0, size_t(C) * sizeof(float), stream));
    return;
  }
  // About two blocks per SM; a block owns at least one row per warp.
  const int target = 2 * context().sm_count;
  int rows_per_block = (N + target - 1) / target;
  if (rows_per_block < kWarps) rows_per_block = kWarps;
  const int blocks = (N + rows_per_block - 1) / rows_per_block;
  float* partial = nullptr;
  CUDA_CHECK(cudaMallocAsync(&partial, size_t(2) * blocks * C * sizeof(float), stream));
  float* dweight_partial = partial;
  float* dbias_partial = partial + int64_t(blocks) * C;
  const bool vec = C % 4 == 0 && aligned(dx, 16) && aligned(dout, 8) && aligned(x, 16) &&
                   aligned(weight, 16);
  if (vec)
    layernorm_backward_kernel<true><<<blocks, kThreads, 0, stream>>>(
        dx, dweight_partial, dbias_partial, dout, x, mean, rstd, weight, N, C, rows_per_block);
  else
    layernorm_backward_kernel<false><<<blocks, kThreads, 0, stream>>>(
        dx, dweight_partial, dbias_partial, dout, x, mean, rstd, weight, N, C, rows_per_block);
  CUDA_CHECK(cudaGetLastError());
  layernorm_param_grad_reduce_kernel<<<(C + 255) / 256, 256, 0, stream>>>(
      dweight, dbias, dweight_partial, dbias_partial, blocks, C);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaFreeAsync(partial, stream));
}

}  // namespace dino::kernels::cuda
