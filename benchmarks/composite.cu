// The composite baselines' kernels (composite.h): one launch per op, every intermediate
// through device memory, reductions in a fixed order. Written plainly and correctly, with
// coalesced accesses, so the baseline is what a careful unfused implementation costs, not a
// straw man: the attention softmax keeps a row in registers (one warp per row up to 1024
// columns), the DINO loss rows (65,536 wide) use one block per row and an online max/sum.
#include <cuda_bf16.h>

#include <cfloat>
#include <cmath>

#include "benchmarks/composite.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device_util.cuh"

namespace dino::bench::composite {

namespace {

using kernels::cuda::warp_max;
using kernels::cuda::warp_sum;

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;

// kernels

__device__ inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__device__ inline float uniform(uint64_t seed, int64_t i, float lo, float hi) {
  const float u = float(mix64(seed ^ mix64(uint64_t(i))) >> 40) * (1.0f / 16777216.0f);
  return lo + (hi - lo) * u;
}

__global__ void fill_f32_kernel(float* p, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = uniform(seed, i, lo, hi);
}

__global__ void fill_bf16_kernel(bf16* p, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16(uniform(seed, i, lo, hi));
}

// Every thread of the block gets the sum (blockDim.x a multiple of 32).
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  __shared__ float result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // an earlier call's readers are done with `result` and `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? partial[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) result = t;
  }
  __syncthreads();
  return result;
}

// (m, s): running max and sum of exp(x - m). Combines b into a.
__device__ inline void combine(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  if (m2 > m) {
    s = s * expf(m - m2) + s2;
    m = m2;
  } else
    s += s2 * expf(m2 - m);
}

__device__ void block_max_sum(float& m, float& s) {
  __shared__ float pm[32], ps[32];
  __shared__ float rm, rs;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    combine(m, s, m2, s2);
  }
  __syncthreads();
  if (lane == 0) pm[warp] = m, ps[warp] = s;
  __syncthreads();
  if (warp == 0) {
    float a = lane < warps ? pm[lane] : -INFINITY, b = lane < warps ? ps[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, a, o), s2 = __shfl_xor_sync(0xffffffffu, b, o);
      combine(a, b, m2, s2);
    }
    if (lane == 0) rm = a, rs = b;
  }
  __syncthreads();
  m = rm;
  s = rs;
}

// partial[3 * block] = (sum (a-b)^2, sum b^2, non-finite a) over a grid-stride slice
template <bool kABf16, bool kBBf16>
__global__ void diff_kernel(double* partial, const void* a, const void* b, int64_t n) {
  double d2 = 0, r2 = 0, bad = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x =
        kABf16 ? __bfloat162float(static_cast<const bf16*>(a)[i]) : static_cast<const float*>(a)[i];
    const float y =
        kBBf16 ? __bfloat162float(static_cast<const bf16*>(b)[i]) : static_cast<const float*>(b)[i];
    if (!isfinite(x)) {
      bad += 1;
      continue;
    }
    d2 += double(x - y) * double(x - y);
    r2 += double(y) * double(y);
  }
  __shared__ double sh[3][kThreads];
  sh[0][threadIdx.x] = d2, sh[1][threadIdx.x] = r2, sh[2][threadIdx.x] = bad;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      for (int k = 0; k < 3; ++k) sh[k][threadIdx.x] += sh[k][threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int k = 0; k < 3; ++k) partial[3 * blockIdx.x + k] = sh[k][0];
}

// One 16-byte chunk (8 bf16) per thread; see tokens_to_heads in composite.h.
template <bool kToHeads>
__global__ void heads_copy_kernel(bf16* dst, const bf16* src, int64_t row_stride, int B, int N,
                                  int H, int Dh) {
  const int chunks = Dh / 8;
  const int64_t total = int64_t(B) * N * H * chunks;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % chunks);
    int64_t rest = i / chunks;
    const int h = int(rest % H);
    rest /= H;
    const int n = int(rest % N);
    const int64_t b = rest / N;
    const int64_t tok = (b * N + n) * row_stride + int64_t(h) * Dh + c * 8;
    const int64_t head = ((b * H + h) * N + n) * Dh + c * 8;
    if (kToHeads)
      *reinterpret_cast<uint4*>(dst + head) = *reinterpret_cast<const uint4*>(src + tok);
    else
      *reinterpret_cast<uint4*>(dst + tok) = *reinterpret_cast<const uint4*>(src + head);
  }
}

// One warp per row, the row in registers: kChunks * 32 >= L.
template <int kChunks>
__global__ void softmax_warp_kernel(bf16* p, int64_t rows, int L) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;
  bf16* r = p + row * L;
  float v[kChunks];
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int j = lane + 32 * i;
    v[i] = j < L ? __bfloat162float(r[j]) : -INFINITY;
    m = fmaxf(m, v[i]);
  }
  m = warp_max(m);
  float s = 0;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    v[i] = lane + 32 * i < L ? expf(v[i] - m) : 0.f;
    s += v[i];
  }
  const float inv = 1.f / warp_sum(s);
#pragma unroll
  for (int i = 0; i < kChunks; ++i)
    if (lane + 32 * i < L) r[lane + 32 * i] = __float2bfloat16(v[i] * inv);
}

// One block per row, for rows longer than 1024: online max/sum, then the write pass.
__global__ void softmax_block_kernel(bf16* p, int L) {
  bf16* r = p + int64_t(blockIdx.x) * L;
  float m = -INFINITY, s = 0;
  for (int j = threadIdx.x; j < L; j += blockDim.x) combine(m, s, __bfloat162float(r[j]), 1.f);
  block_max_sum(m, s);
  const float inv = 1.f / s;
  for (int j = threadIdx.x; j < L; j += blockDim.x)
    r[j] = __float2bfloat16(expf(__bfloat162float(r[j]) - m) * inv);
}

template <int kChunks>
__global__ void softmax_backward_warp_kernel(bf16* ds, const bf16* p, int64_t rows, int L,
                                             float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;
  bf16* d = ds + row * L;
  const bf16* pr = p + row * L;
  float pv[kChunks], dv[kChunks];
  float dot = 0;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int j = lane + 32 * i;
    pv[i] = j < L ? __bfloat162float(pr[j]) : 0.f;
    dv[i] = j < L ? __bfloat162float(d[j]) : 0.f;
    dot += pv[i] * dv[i];
  }
  dot = warp_sum(dot);
#pragma unroll
  for (int i = 0; i < kChunks; ++i)
    if (lane + 32 * i < L) d[lane + 32 * i] = __float2bfloat16(scale * pv[i] * (dv[i] - dot));
}

__global__ void softmax_backward_block_kernel(bf16* ds, const bf16* p, int L, float scale) {
  bf16* d = ds + int64_t(blockIdx.x) * L;
  const bf16* pr = p + int64_t(blockIdx.x) * L;
  float dot = 0;
  for (int j = threadIdx.x; j < L; j += blockDim.x)
    dot += __bfloat162float(pr[j]) * __bfloat162float(d[j]);
  dot = block_sum(dot);
  for (int j = threadIdx.x; j < L; j += blockDim.x) {
    const float pv = __bfloat162float(pr[j]);
    d[j] = __float2bfloat16(scale * pv * (__bfloat162float(d[j]) - dot));
  }
}

// layer norm: one warp per row for the row reductions
__global__ void ln_stats_kernel(float* mean, float* rstd, const float* x, int N, int C, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;
  const float* r = x + row * C;
  float s = 0;
  for (int j = lane; j < C; j += 32) s += r[j];
  const float m = warp_sum(s) / C;
  float v = 0;
  for (int j = lane; j < C; j += 32) v += (r[j] - m) * (r[j] - m);
  v = warp_sum(v) / C;
  if (lane == 0) mean[row] = m, rstd[row] = rsqrtf(v + eps);
}

__global__ void ln_normalize_kernel(bf16* y, const float* x, const float* mean, const float* rstd,
                                    const float* w, const float* b, int N, int C) {
  const int64_t n = int64_t(N) * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / C;
    const int c = int(i % C);
    y[i] = __float2bfloat16((x[i] - mean[r]) * rstd[r] * w[c] + b[c]);
  }
}

__global__ void ln_rowsums_kernel(float* sums, const bf16* dy, const float* x, const float* mean,
                                  const float* rstd, const float* w, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;
  const float m = mean[row], rs = rstd[row];
  float a = 0, b = 0;
  for (int j = lane; j < C; j += 32) {
    const float g = __bfloat162float(dy[row * C + j]) * w[j];
    a += g;
    b += g * (x[row * C + j] - m) * rs;
  }
  a = warp_sum(a);
  b = warp_sum(b);
  if (lane == 0) sums[2 * row] = a, sums[2 * row + 1] = b;
}

__global__ void ln_dx_kernel(float* dx, const bf16* dy, const float* x, const float* mean,
                             const float* rstd, const float* w, const float* sums, int N, int C) {
  const int64_t n = int64_t(N) * C;
  const float inv_c = 1.f / C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / C;
    const int c = int(i % C);
    const float xhat = (x[i] - mean[r]) * rstd[r];
    const float g = __bfloat162float(dy[i]) * w[c];
    dx[i] = rstd[r] * (g - sums[2 * r] * inv_c - xhat * sums[2 * r + 1] * inv_c);
  }
}

constexpr int kLnChunkRows = 256, kLnColThreads = 128;

// partial[chunk][0..C) = sum dy * xhat, partial[chunk][C..2C) = sum dy over the chunk's rows
__global__ void ln_params_partial_kernel(float* partial, const bf16* dy, const float* x,
                                         const float* mean, const float* rstd, int N, int C) {
  const int c = blockIdx.x * kLnColThreads + threadIdx.x;
  if (c >= C) return;
  const int r0 = blockIdx.y * kLnChunkRows, r1 = min(N, r0 + kLnChunkRows);
  float dw = 0, db = 0;
  for (int r = r0; r < r1; ++r) {
    const float g = __bfloat162float(dy[int64_t(r) * C + c]);
    dw += g * (x[int64_t(r) * C + c] - mean[r]) * rstd[r];
    db += g;
  }
  partial[int64_t(blockIdx.y) * 2 * C + c] = dw;
  partial[int64_t(blockIdx.y) * 2 * C + C + c] = db;
}

__global__ void ln_params_reduce_kernel(float* dw, float* db, const float* partial, int chunks,
                                        int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float a = 0, b = 0;
  for (int k = 0; k < chunks; ++k)
    a += partial[int64_t(k) * 2 * C + c], b += partial[int64_t(k) * 2 * C + C + c];
  dw[c] = a;
  db[c] = b;
}

// DINO loss: one block per 65,536-wide row
__global__ void dl_teacher_softmax_kernel(float* q, const float* t, const float* center, int K,
                                          float inv_t) {
  const int64_t off = int64_t(blockIdx.x) * K;
  float m = -INFINITY, s = 0;
  for (int k = threadIdx.x; k < K; k += blockDim.x)
    combine(m, s, (t[off + k] - center[k]) * inv_t, 1.f);
  block_max_sum(m, s);
  const float inv = 1.f / s;
  for (int k = threadIdx.x; k < K; k += blockDim.x)
    q[off + k] = expf((t[off + k] - center[k]) * inv_t - m) * inv;
}

__global__ void dl_colsum_kernel(float* colsum, const float* t, int rows, int K) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= K) return;
  float s = 0;
  for (int r = 0; r < rows; ++r) s += t[int64_t(r) * K + k];
  colsum[k] = s;
}

__global__ void dl_log_softmax_kernel(float* logp, const float* s_in, int K, float inv_t) {
  const int64_t off = int64_t(blockIdx.x) * K;
  float m = -INFINITY, s = 0;
  for (int k = threadIdx.x; k < K; k += blockDim.x) combine(m, s, s_in[off + k] * inv_t, 1.f);
  block_max_sum(m, s);
  const float lse = m + logf(s);
  for (int k = threadIdx.x; k < K; k += blockDim.x) logp[off + k] = s_in[off + k] * inv_t - lse;
}

__global__ void dl_pair_dots_kernel(float* partial, const float* q, const float* logp, int V, int B,
                                    int K) {
  const int pair = blockIdx.x / B, b = blockIdx.x % B;
  const int g = pair / (V - 1), vi = pair % (V - 1), v = vi < g ? vi : vi + 1;
  const float* qr = q + (int64_t(g) * B + b) * K;
  const float* lr = logp + (int64_t(v) * B + b) * K;
  float d = 0;
  for (int k = threadIdx.x; k < K; k += blockDim.x) d += qr[k] * lr[k];
  d = block_sum(d);
  if (threadIdx.x == 0) partial[blockIdx.x] = d;
}

__global__ void dl_loss_kernel(float* loss, const float* partial, int n, float coef) {
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *loss = -coef * s;
}

__global__ void dl_grad_logp_kernel(float* dlogp, const float* q, int G, int V, int B, int K,
                                    float coef) {
  const int64_t n = int64_t(V) * B * K;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / K;
    const int k = int(i % K);
    const int v = int(row / B), b = int(row % B);
    float s = 0;
    for (int g = 0; g < G; ++g)
      if (g != v) s += q[(int64_t(g) * B + b) * K + k];
    dlogp[i] = -coef * s;
  }
}

__global__ void dl_log_softmax_backward_kernel(float* ds, const float* dlogp, const float* logp,
                                               int K, float inv_t) {
  const int64_t off = int64_t(blockIdx.x) * K;
  float s = 0;
  for (int k = threadIdx.x; k < K; k += blockDim.x) s += dlogp[off + k];
  s = block_sum(s);
  for (int k = threadIdx.x; k < K; k += blockDim.x)
    ds[off + k] = (dlogp[off + k] - expf(logp[off + k]) * s) * inv_t;
}

__global__ void dl_center_kernel(float* center, const float* colsum, int rows, int K,
                                 float momentum) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < K) center[k] = momentum * center[k] + (1.f - momentum) * colsum[k] / float(rows);
}

// launchers

int grid_for(int64_t n, int threads) {
  static int sms = 0;
  if (sms == 0) {
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  }
  const int64_t blocks = (n + threads - 1) / threads, cap = int64_t(sms) * 16;
  return int(blocks < 1 ? 1 : (blocks < cap ? blocks : cap));
}

int rows_grid(int64_t rows, int rows_per_block) {
  return int((rows + rows_per_block - 1) / rows_per_block);
}

}  // namespace

void fill_uniform_f32(float* p, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t stream) {
  fill_f32_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(p, n, seed, lo, hi);
  CUDA_CHECK(cudaGetLastError());
}

void fill_uniform_bf16(void* p, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t stream) {
  fill_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<bf16*>(p), n, seed,
                                                                   lo, hi);
  CUDA_CHECK(cudaGetLastError());
}

int diff_partials(double* partial, int max_blocks, const void* a, bool a_bf16, const void* b,
                  bool b_bf16, int64_t n, cudaStream_t stream) {
  int blocks = grid_for(n, kThreads);
  if (blocks > max_blocks) blocks = max_blocks;
  if (a_bf16 && b_bf16)
    diff_kernel<true, true><<<blocks, kThreads, 0, stream>>>(partial, a, b, n);
  else if (a_bf16)
    diff_kernel<true, false><<<blocks, kThreads, 0, stream>>>(partial, a, b, n);
  else if (b_bf16)
    diff_kernel<false, true><<<blocks, kThreads, 0, stream>>>(partial, a, b, n);
  else
    diff_kernel<false, false><<<blocks, kThreads, 0, stream>>>(partial, a, b, n);
  CUDA_CHECK(cudaGetLastError());
  return blocks;
}

void tokens_to_heads(void* dst, const void* src, int64_t src_row_stride, int B, int N, int H,
                     int Dh, cudaStream_t stream) {
  const int64_t chunks = int64_t(B) * N * H * (Dh / 8);
  heads_copy_kernel<true><<<grid_for(chunks, kThreads), kThreads, 0, stream>>>(
      static_cast<bf16*>(dst), static_cast<const bf16*>(src), src_row_stride, B, N, H, Dh);
  CUDA_CHECK(cudaGetLastError());
}

void heads_to_tokens(void* dst, int64_t dst_row_stride, const void* src, int B, int N, int H,
                     int Dh, cudaStream_t stream) {
  const int64_t chunks = int64_t(B) * N * H * (Dh / 8);
  heads_copy_kernel<false><<<grid_for(chunks, kThreads), kThreads, 0, stream>>>(
      static_cast<bf16*>(dst), static_cast<const bf16*>(src), dst_row_stride, B, N, H, Dh);
  CUDA_CHECK(cudaGetLastError());
}

void softmax_rows(void* p, int64_t rows, int L, cudaStream_t stream) {
  bf16* x = static_cast<bf16*>(p);
  const int warps = kThreads / 32;
  if (L <= 64)
    softmax_warp_kernel<2><<<rows_grid(rows, warps), kThreads, 0, stream>>>(x, rows, L);
  else if (L <= 256)
    softmax_warp_kernel<8><<<rows_grid(rows, warps), kThreads, 0, stream>>>(x, rows, L);
  else if (L <= 1024)
    softmax_warp_kernel<32><<<rows_grid(rows, warps), kThreads, 0, stream>>>(x, rows, L);
  else
    softmax_block_kernel<<<unsigned(rows), kThreads, 0, stream>>>(x, L);
  CUDA_CHECK(cudaGetLastError());
}

void softmax_rows_backward(void* ds, const void* p, int64_t rows, int L, float scale,
                           cudaStream_t stream) {
  bf16* d = static_cast<bf16*>(ds);
  const bf16* pr = static_cast<const bf16*>(p);
  const int warps = kThreads / 32;
  if (L <= 64)
    softmax_backward_warp_kernel<2>
        <<<rows_grid(rows, warps), kThreads, 0, stream>>>(d, pr, rows, L, scale);
  else if (L <= 256)
    softmax_backward_warp_kernel<8>
        <<<rows_grid(rows, warps), kThreads, 0, stream>>>(d, pr, rows, L, scale);
  else if (L <= 1024)
    softmax_backward_warp_kernel<32>
        <<<rows_grid(rows, warps), kThreads, 0, stream>>>(d, pr, rows, L, scale);
  else
    softmax_backward_block_kernel<<<unsigned(rows), kThreads, 0, stream>>>(d, pr, L, scale);
  CUDA_CHECK(cudaGetLastError());
}

void ln_stats(float* mean, float* rstd, const float* x, int N, int C, float eps,
              cudaStream_t stream) {
  ln_stats_kernel<<<rows_grid(N, kThreads / 32), kThreads, 0, stream>>>(mean, rstd, x, N, C, eps);
  CUDA_CHECK(cudaGetLastError());
}

void ln_normalize(void* y, const float* x, const float* mean, const float* rstd, const float* w,
                  const float* b, int N, int C, cudaStream_t stream) {
  ln_normalize_kernel<<<grid_for(int64_t(N) * C, kThreads), kThreads, 0, stream>>>(
      static_cast<bf16*>(y), x, mean, rstd, w, b, N, C);
  CUDA_CHECK(cudaGetLastError());
}

void ln_backward_rowsums(float* sums, const void* dy, const float* x, const float* mean,
                         const float* rstd, const float* w, int N, int C, cudaStream_t stream) {
  ln_rowsums_kernel<<<rows_grid(N, kThreads / 32), kThreads, 0, stream>>>(
      sums, static_cast<const bf16*>(dy), x, mean, rstd, w, N, C);
  CUDA_CHECK(cudaGetLastError());
}

void ln_backward_dx(float* dx, const void* dy, const float* x, const float* mean, const float* rstd,
                    const float* w, const float* sums, int N, int C, cudaStream_t stream) {
  ln_dx_kernel<<<grid_for(int64_t(N) * C, kThreads), kThreads, 0, stream>>>(
      dx, static_cast<const bf16*>(dy), x, mean, rstd, w, sums, N, C);
  CUDA_CHECK(cudaGetLastError());
}

int64_t ln_params_partial_floats(int N, int C) {
  return int64_t((N + kLnChunkRows - 1) / kLnChunkRows) * 2 * C;
}

void ln_backward_params(float* dw, float* db, float* partial, const void* dy, const float* x,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t stream) {
  const int chunks = (N + kLnChunkRows - 1) / kLnChunkRows;
  const dim3 grid((C + kLnColThreads - 1) / kLnColThreads, chunks);
  ln_params_partial_kernel<<<grid, kLnColThreads, 0, stream>>>(
      partial, static_cast<const bf16*>(dy), x, mean, rstd, N, C);
  CUDA_CHECK(cudaGetLastError());
  ln_params_reduce_kernel<<<(C + kThreads - 1) / kThreads, kThreads, 0, stream>>>(dw, db, partial,
                                                                                  chunks, C);
  CUDA_CHECK(cudaGetLastError());
}

void dl_teacher_softmax(float* q, const float* t, const float* center, int rows, int K, float tau_t,
                        cudaStream_t stream) {
  dl_teacher_softmax_kernel<<<rows, kThreads, 0, stream>>>(q, t, center, K, 1.f / tau_t);
  CUDA_CHECK(cudaGetLastError());
}

void dl_colsum(float* colsum, const float* t, int rows, int K, cudaStream_t stream) {
  dl_colsum_kernel<<<(K + kThreads - 1) / kThreads, kThreads, 0, stream>>>(colsum, t, rows, K);
  CUDA_CHECK(cudaGetLastError());
}

void dl_log_softmax(float* logp, const float* s, int rows, int K, float tau_s,
                    cudaStream_t stream) {
  dl_log_softmax_kernel<<<rows, kThreads, 0, stream>>>(logp, s, K, 1.f / tau_s);
  CUDA_CHECK(cudaGetLastError());
}

void dl_pair_dots(float* partial, const float* q, const float* logp, int G, int V, int B, int K,
                  cudaStream_t stream) {
  dl_pair_dots_kernel<<<G*(V - 1) * B, kThreads, 0, stream>>>(partial, q, logp, V, B, K);
  CUDA_CHECK(cudaGetLastError());
}

void dl_loss(float* loss, const float* partial, int n, float coef, cudaStream_t stream) {
  dl_loss_kernel<<<1, kThreads, 0, stream>>>(loss, partial, n, coef);
  CUDA_CHECK(cudaGetLastError());
}

void dl_grad_logp(float* dlogp, const float* q, int G, int V, int B, int K, float coef,
                  cudaStream_t stream) {
  dl_grad_logp_kernel<<<grid_for(int64_t(V) * B * K, kThreads), kThreads, 0, stream>>>(
      dlogp, q, G, V, B, K, coef);
  CUDA_CHECK(cudaGetLastError());
}

void dl_log_softmax_backward(float* ds, const float* dlogp, const float* logp, int rows, int K,
                             float tau_s, cudaStream_t stream) {
  dl_log_softmax_backward_kernel<<<rows, kThreads, 0, stream>>>(ds, dlogp, logp, K, 1.f / tau_s);
  CUDA_CHECK(cudaGetLastError());
}

void dl_center_update(float* center, const float* colsum, int rows, int K, float momentum,
                      cudaStream_t stream) {
  dl_center_kernel<<<(K + kThreads - 1) / kThreads, kThreads, 0, stream>>>(center, colsum, rows, K,
                                                                           momentum);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace dino::bench::composite
