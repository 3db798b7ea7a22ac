// The DINO loss, forward and gradient fused, in the form of DESIGN §4:
//   p_vb = softmax(s_vb / τs)      q_gb = softmax((t_gb − c) / τt)      Q_b = Σ_g q_gb
//   L    = 1/(n·B) Σ_b Σ_v [ m_v · lse(s_vb / τs) − (1/τs) · (Q_b − [v<G]·q_vb) · s_vb ]
//   ∂L/∂s_vb = 1/(n·B·τs) · ( m_v · p_vb − (Q_b − [v<G]·q_vb) )
// with n = G·V − G, m_v = G − 1 for a global view (v < G), G for a local one. Rows are
// view-major: student row v·B + b, teacher row g·B + b (kernels/cpu/kernels.h).
//
// Passes (all reductions in a fixed order, so results are bit-identical run to run):
//  1. row_stats over the teacher rows: for each row and each chunk of 1024 columns the
//     (max, sum-exp) of (t − c)/τt, and per group of 8 rows the column sums of raw t (for the
//     center). Blocks tile (column chunk, row group), so a 65,536-wide row (256 KB, more than
//     a block's shared memory) is spread over 64 blocks instead of being held by one.
//  2. row_lse: merges each row's chunk partials in chunk order into lse; the column-sum
//     partials are added in group order into teacher_colsum.
//  3. row_stats + row_lse over the student rows with 1/τs: lse(s/τs).
//  4. loss_grad: one thread per (column k, sample b) reads the G teacher values and V student
//     values of that column, forms q_gb[k] and Q_b[k] from the saved lse, writes the V
//     gradient values and accumulates Σ_v (Q_b − [v<G] q_vb)[k] · s_vb[k]; block partials.
//  5. finalize: one block adds Σ m_v lse_vb and the dot partials (in double) into the loss.
// Nothing of size K is stored per pair, and Q is never written to memory; q is written only
// when the caller asks for it (dino_loss_forward_backward_q: the collapse statistics read it),
// by pass 4 as it forms Q, so it costs the writes and no extra pass.
//
// Around it: dino_loss_scale_grad multiplies the saved gradient by the upstream gradient read
// from device memory (the autograd backward, without a host synchronisation);
// dino_teacher_stats reduces q to the collapse statistics (mean teacher entropy, entropy of
// the batch-mean teacher distribution) on the device, so a step reads back three floats.
//
// Bytes: with S = V·B·K·4 and T = G·B·K·4, this reads the teacher twice and the student
// twice and writes dstudent once: 2T + 3S (plus ~T/8 for the column-sum partials), against
// the minimum T + 2S (read both once, write the gradient once). For G = 2, V = 10 that is
// 34 vs 22 units: 1.55x the minimum. Holding a row across a thread-block cluster would
// remove the second reads. FLOPs: ~4 exp per student element, 3 per teacher element.
//
// The gradient is for an upstream gradient of 1 (the loss is the root of the graph).
#include <cmath>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kColsPerThread = 4;
constexpr int kChunk = kThreads * kColsPerThread;  // columns per row_stats block
constexpr int kRowsPerGroup = 8;                   // rows per row_stats block
constexpr int kSamplesPerBlock = 8;                // samples per loss_grad block

// Merges two (max, sum of exp(x - max)) pairs; an empty pair is (-inf, 0).
__device__ __forceinline__ float2 merge_stats(float2 a, float2 b) {
  const float m = fmaxf(a.x, b.x);
  if (m == -INFINITY) return make_float2(-INFINITY, 0.f);
  return make_float2(m, a.y * __expf(a.x - m) + b.y * __expf(b.x - m));
}

}  // namespace

// kernels

// grid (chunks, groups). partial (rows, chunks) gets the (max, sum-exp) of (x - center) *
// inv_tau over each chunk of each row; colsum_partial (groups, K), when not null, the sums of
// raw x over each group's rows (row order).
__global__ void dino_row_stats_kernel(float2* partial, float* colsum_partial, const float* x,
                                      const float* center, int rows, int K, float inv_tau) {
  __shared__ float2 warp_stats[kThreads / 32];
  const int chunks = gridDim.x;
  const int r0 = blockIdx.y * kRowsPerGroup;
  const int r1 = min(rows, r0 + kRowsPerGroup);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int col[kColsPerThread];
  float c[kColsPerThread], colsum[kColsPerThread];
#pragma unroll
  for (int j = 0; j < kColsPerThread; ++j) {
    col[j] = blockIdx.x * kChunk + j * kThreads + threadIdx.x;
    c[j] = (center && col[j] < K) ? center[col[j]] : 0.f;
    colsum[j] = 0.f;
  }
  for (int r = r0; r < r1; ++r) {
    const float* xr = x + int64_t(r) * K;
    float v[kColsPerThread];
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) v[j] = col[j] < K ? xr[col[j]] : 0.f;
    float2 st = make_float2(-INFINITY, 0.f);
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) {
      if (col[j] < K) {
        colsum[j] += v[j];
        st = merge_stats(st, make_float2((v[j] - c[j]) * inv_tau, 1.f));
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float2 other = make_float2(__shfl_xor_sync(0xffffffffu, st.x, o),
                                       __shfl_xor_sync(0xffffffffu, st.y, o));
      st = merge_stats(st, other);
    }
    if (lane == 0) warp_stats[warp] = st;
    __syncthreads();
    if (threadIdx.x == 0) {
      float2 total = warp_stats[0];
      for (int w = 1; w < kThreads / 32; ++w) total = merge_stats(total, warp_stats[w]);
      partial[int64_t(r) * chunks + blockIdx.x] = total;
    }
    __syncthreads();
  }
  if (colsum_partial) {
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j)
      if (col[j] < K) colsum_partial[int64_t(blockIdx.y) * K + col[j]] = colsum[j];
  }
}

// lse (rows) <- partial (rows, chunks), merged in chunk order.
__global__ void dino_row_lse_kernel(float* lse, const float2* partial, int rows, int chunks) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  float2 st = partial[int64_t(r) * chunks];
  for (int i = 1; i < chunks; ++i) st = merge_stats(st, partial[int64_t(r) * chunks + i]);
  lse[r] = st.x + logf(st.y);
}

// colsum (K) <- colsum_partial (groups, K), added in group order.
__global__ void dino_colsum_reduce_kernel(float* colsum, const float* colsum_partial, int groups,
                                          int K) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= K) return;
  float s = 0.f;
  for (int g = 0; g < groups; ++g) s += colsum_partial[int64_t(g) * K + k];
  colsum[k] = s;
}

// grid (ceil(K / kThreads), ceil(B / kSamplesPerBlock)). dstudent (V*B, K) and
// dot_partial (gridDim.y, gridDim.x) = per block Σ (Q_b − [v<G] q_vb)[k] · s_vb[k];
// q (G*B, K), when not null, the teacher probabilities.
__global__ void dino_loss_grad_kernel(float* dstudent, float* dot_partial, float* q,
                                      const float* student,
                                      const float* teacher, const float* center,
                                      const float* lse_s, const float* lse_t, int G, int V, int B,
                                      int K, float inv_tau_s, float inv_tau_t, float grad_scale) {
  __shared__ float warp_dot[kThreads / 32];
  const int k = blockIdx.x * kThreads + threadIdx.x;
  const int b0 = blockIdx.y * kSamplesPerBlock;
  const int b1 = min(B, b0 + kSamplesPerBlock);
  float dot = 0.f;
  if (k < K) {
    const float ck = center[k];
    for (int b = b0; b < b1; ++b) {
      float Q = 0.f;
      for (int g = 0; g < G; ++g) {
        const int row = g * B + b;
        const float qg = __expf((teacher[int64_t(row) * K + k] - ck) * inv_tau_t - lse_t[row]);
        if (q) q[int64_t(row) * K + k] = qg;
        Q += qg;
      }
      for (int v = 0; v < V; ++v) {
        const int row = v * B + b;
        const float s = student[int64_t(row) * K + k];
        const float p = __expf(s * inv_tau_s - lse_s[row]);
        float target = Q;
        float m = float(G);
        if (v < G) {  // the same crop as teacher view v: that pair is left out
          target -= __expf((teacher[int64_t(row) * K + k] - ck) * inv_tau_t - lse_t[row]);
          m = float(G - 1);
        }
        dstudent[int64_t(row) * K + k] = grad_scale * (m * p - target);
        dot += target * s;
      }
    }
  }
  dot = warp_sum(dot);
  if (threadIdx.x % 32 == 0) warp_dot[threadIdx.x / 32] = dot;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_dot[w];
    dot_partial[int64_t(blockIdx.y) * gridDim.x + blockIdx.x] = total;
  }
}

// loss (1) = inv_nB * (Σ_rows m_v lse_s[row] − inv_tau_s Σ dot_partial), summed in double by
// one block in a fixed order.
__global__ void dino_loss_finalize_kernel(float* loss, const float* lse_s,
                                          const float* dot_partial, int n_partial, int G, int V,
                                          int B, float inv_tau_s, double inv_nB) {
  __shared__ double lse_sum[kThreads], dot_sum[kThreads];
  double a = 0, d = 0;
  for (int r = threadIdx.x; r < V * B; r += kThreads) a += double(r < G * B ? G - 1 : G) * lse_s[r];
  for (int i = threadIdx.x; i < n_partial; i += kThreads) d += dot_partial[i];
  lse_sum[threadIdx.x] = a;
  dot_sum[threadIdx.x] = d;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      lse_sum[threadIdx.x] += lse_sum[threadIdx.x + stride];
      dot_sum[threadIdx.x] += dot_sum[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) loss[0] = float(inv_nB * (lse_sum[0] - double(inv_tau_s) * dot_sum[0]));
}

// out (n) <- grad (n) * dloss[0]: the saved gradient times the upstream gradient, a device
// scalar (no host round trip).
__global__ void dino_loss_scale_grad_kernel(float* out, const float* grad, const float* dloss,
                                            int64_t n) {
  const float d = dloss[0];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = grad[i] * d;
}

// grid (ceil(K / kThreads)). One thread per column k, rows in order: Σ_r -q log q over its
// column and -m log m of the column mean m = Σ_r q / R; each block writes its sums of both to
// partial (2, gridDim.x).
__global__ void dino_teacher_stats_kernel(float* partial, const float* q, int R, int K) {
  __shared__ float warp_sums[2][kThreads / 32];
  const int k = blockIdx.x * kThreads + threadIdx.x;
  float ent = 0.f, bent = 0.f;
  if (k < K) {
    float col = 0.f;
    for (int r = 0; r < R; ++r) {
      const float v = q[int64_t(r) * K + k];
      col += v;
      if (v > 0.f) ent -= v * logf(v);
    }
    const float m = col / float(R);
    if (m > 0.f) bent = -m * logf(m);
  }
  for (int o = 16; o > 0; o >>= 1) {
    ent += __shfl_xor_sync(0xffffffffu, ent, o);
    bent += __shfl_xor_sync(0xffffffffu, bent, o);
  }
  if (threadIdx.x % 32 == 0) {
    warp_sums[0][threadIdx.x / 32] = ent;
    warp_sums[1][threadIdx.x / 32] = bent;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float a = 0.f, c = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) a += warp_sums[0][w], c += warp_sums[1][w];
    partial[blockIdx.x] = a;
    partial[gridDim.x + blockIdx.x] = c;
  }
}

// stats (3) = {loss[0], Σ entropy partials / R, Σ batch-entropy partials}, the partials
// (2, n_partial) added in double in a fixed order by one block.
__global__ void dino_teacher_stats_finalize_kernel(float* stats, const float* loss,
                                                   const float* partial, int n_partial, int R) {
  __shared__ double sums[2][kThreads];
  double a = 0, c = 0;
  for (int i = threadIdx.x; i < n_partial; i += kThreads) {
    a += partial[i];
    c += partial[n_partial + i];
  }
  sums[0][threadIdx.x] = a;
  sums[1][threadIdx.x] = c;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      sums[0][threadIdx.x] += sums[0][threadIdx.x + stride];
      sums[1][threadIdx.x] += sums[1][threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    stats[0] = loss[0];
    stats[1] = float(sums[0][0] / double(R));
    stats[2] = float(sums[1][0]);
  }
}

// center (K) <- momentum * center + (1 - momentum) * colsum * inv_rows
__global__ void dino_center_update_kernel(float* center, const float* colsum, int K,
                                          float momentum, float inv_rows) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < K) center[k] = momentum * center[k] + (1.f - momentum) * (colsum[k] * inv_rows);
}

// launchers

namespace {

// lse (rows) of (x - center) * inv_tau; colsum (K) of raw x when not null. scratch holds
// (rows * chunks) float2 plus (groups * K) floats.
void row_lse(float* lse, float* colsum, const float* x, const float* center, int rows, int K,
             float inv_tau, cudaStream_t stream) {
  const int chunks = (K + kChunk - 1) / kChunk;
  const int groups = (rows + kRowsPerGroup - 1) / kRowsPerGroup;
  // groups is gridDim.y: a clear error instead of a failed launch past 65535 * 8 rows (the
  // student rows' check also covers loss_grad's gridDim.y, ceil(B / 8) <= ceil(V*B / 8)).
  DINO_CHECK(groups <= 65535, "[dino_loss] ", rows, " rows exceed the kernel's grid (at most ",
             65535 * kRowsPerGroup, ")");
  float2* partial = nullptr;
  float* colsum_partial = nullptr;
  CUDA_CHECK(cudaMallocAsync(&partial, size_t(rows) * chunks * sizeof(float2), stream));
  if (colsum)
    CUDA_CHECK(cudaMallocAsync(&colsum_partial, size_t(groups) * K * sizeof(float), stream));
  dino_row_stats_kernel<<<dim3(chunks, groups), kThreads, 0, stream>>>(partial, colsum_partial,
                                                                       x, center, rows, K, inv_tau);
  CUDA_CHECK(cudaGetLastError());
  dino_row_lse_kernel<<<(rows + 255) / 256, 256, 0, stream>>>(lse, partial, rows, chunks);
  CUDA_CHECK(cudaGetLastError());
  if (colsum) {
    dino_colsum_reduce_kernel<<<(K + 255) / 256, 256, 0, stream>>>(colsum, colsum_partial,
                                                                   groups, K);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaFreeAsync(colsum_partial, stream));
  }
  CUDA_CHECK(cudaFreeAsync(partial, stream));
}

void forward_backward(float* loss, float* dstudent, float* teacher_colsum, float* q,
                      const float* student, const float* teacher, const float* center, int G,
                      int V, int B, int K, float tau_s, float tau_t, cudaStream_t stream) {
  const int64_t n_pairs = int64_t(G) * V - G;
  DINO_CHECK(G >= 1 && V >= G && B >= 1 && K >= 1 && n_pairs > 0, "[dino_loss] bad sizes G=", G,
             " V=", V, " B=", B, " K=", K);
  float* lse = nullptr;  // student rows (V*B) then teacher rows (G*B)
  CUDA_CHECK(cudaMallocAsync(&lse, size_t(V + G) * B * sizeof(float), stream));
  float* lse_s = lse;
  float* lse_t = lse + int64_t(V) * B;
  row_lse(lse_t, teacher_colsum, teacher, center, G * B, K, 1.f / tau_t, stream);
  row_lse(lse_s, nullptr, student, nullptr, V * B, K, 1.f / tau_s, stream);

  const dim3 grid((K + kThreads - 1) / kThreads, (B + kSamplesPerBlock - 1) / kSamplesPerBlock);
  const int n_partial = int(grid.x * grid.y);
  float* dot_partial = nullptr;
  CUDA_CHECK(cudaMallocAsync(&dot_partial, size_t(n_partial) * sizeof(float), stream));
  const double nB = double(n_pairs) * B;
  dino_loss_grad_kernel<<<grid, kThreads, 0, stream>>>(
      dstudent, dot_partial, q, student, teacher, center, lse_s, lse_t, G, V, B, K, 1.f / tau_s,
      1.f / tau_t, float(1.0 / (nB * double(tau_s))));
  CUDA_CHECK(cudaGetLastError());
  dino_loss_finalize_kernel<<<1, kThreads, 0, stream>>>(loss, lse_s, dot_partial, n_partial, G, V,
                                                        B, 1.f / tau_s, 1.0 / nB);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaFreeAsync(dot_partial, stream));
  CUDA_CHECK(cudaFreeAsync(lse, stream));
}

}  // namespace

void dino_loss_forward_backward(float* loss, float* dstudent, float* teacher_colsum,
                                const float* student, const float* teacher, const float* center,
                                int G, int V, int B, int K, float tau_s, float tau_t,
                                cudaStream_t stream) {
  forward_backward(loss, dstudent, teacher_colsum, nullptr, student, teacher, center, G, V, B, K,
                   tau_s, tau_t, stream);
}

void dino_loss_forward_backward_q(float* loss, float* dstudent, float* teacher_colsum, float* q,
                                  const float* student, const float* teacher,
                                  const float* center, int G, int V, int B, int K, float tau_s,
                                  float tau_t, cudaStream_t stream) {
  forward_backward(loss, dstudent, teacher_colsum, q, student, teacher, center, G, V, B, K, tau_s,
                   tau_t, stream);
}

void dino_loss_scale_grad(float* out, const float* dstudent, const float* dloss, int64_t n,
                          cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t want = (n + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(8) * context().sm_count;
  dino_loss_scale_grad_kernel<<<int(want < cap ? want : cap), kThreads, 0, stream>>>(
      out, dstudent, dloss, n);
  CUDA_CHECK(cudaGetLastError());
}

void dino_teacher_stats(float* stats, const float* loss, const float* q, int R, int K,
                        cudaStream_t stream) {
  DINO_CHECK(R >= 1 && K >= 1, "[dino_loss] bad teacher statistics sizes R=", R, " K=", K);
  const int blocks = (K + kThreads - 1) / kThreads;
  float* partial = nullptr;
  CUDA_CHECK(cudaMallocAsync(&partial, size_t(2) * blocks * sizeof(float), stream));
  dino_teacher_stats_kernel<<<blocks, kThreads, 0, stream>>>(partial, q, R, K);
  CUDA_CHECK(cudaGetLastError());
  dino_teacher_stats_finalize_kernel<<<1, kThreads, 0, stream>>>(stats, loss, partial, blocks, R);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaFreeAsync(partial, stream));
}

void dino_center_update(float* center, const float* teacher_colsum, int64_t rows, int K,
                        float momentum, cudaStream_t stream) {
  if (K <= 0) return;
  dino_center_update_kernel<<<(K + 255) / 256, 256, 0, stream>>>(center, teacher_colsum, K,
                                                                 momentum, float(1.0 / double(rows)));
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace dino::kernels::cuda
