// The DINO loss, forward and gradient fused, in the form of ARCHITECTURE §4:
//   p_vb = softmax(s_vb / τs)      q_gb = softmax((t_gb − c) / τt)      Q_b = Σ_g q_gb
//   L    = 1/(n·B) Σ_b Σ_v [ m_v · lse(s_vb / τs) − (1/τs) · (Q_b − [v<G]·q_vb) · s_vb ]
//   ∂L/∂s_vb = 1/(n·B·τs) · ( m_v · p_vb − (Q_b − [v<G]·q_vb) )
// with n = G·V − G, m_v = G − 1 for a global view (v < G), G for a local one. Rows are
// view-major: student row v·B + b, teacher row g·B + b (kernels/cpu/kernels.h).
//
// The gradient of a row needs its lse, a reduction over all K columns, before any of its K
// values can be written, and a 65,536-wide row (256 KB) does not fit one block. So two
// launches, all reductions in a fixed order (results are bit-identical run to run, no float
// atomics):
//  1. stats: blocks tile (column chunk, view, 8 samples) over the teacher and the student
//     together and write each row's (max, sum-exp) over the chunk; the teacher blocks also
//     write the column sums of their 8 raw rows (for the center). A thread keeps a running
//     (max, sum) per row over its columns (one exp per element, plus one per 4-column step
//     to rescale the sum), with all 8 rows' loads in flight, and the block merges the 8 rows
//     with one barrier. Chunks are wide (16 partials per row at K = 65,536) so pass 2's
//     merge is short, but at least 16 per row, to fill the grid.
//  2. grad: a block per (column slice, sample b) merges the chunk partials of sample b's
//     G + V rows into their lse (every block of b in the same order, so they agree), forms
//     q_gb and Q_b once per column, writes the V gradient values and sums
//     Σ_v (Q_b − [v<G] q_vb) · s_vb; the blocks of sample B−1 add the column-sum partials
//     into teacher_colsum; the last block to finish (an integer counter the stats pass
//     zeroes) adds Σ m_v lse_vb and the dot partials in double, in block order, into the loss.
//     It walks the samples in the reverse of pass 1's order, so its first blocks re-read
//     what pass 1 read last while that is still in L2.
// Rows are read as float4 where K % 4 == 0 and every row pointer is 16-byte aligned (a
// quarter of the load instructions), as floats otherwise.
// Nothing of size K is stored per pair, and Q is never written to memory; q is written only
// when the caller asks for it (dino_loss_forward_backward_q: the collapse statistics read it),
// by pass 2 as it forms Q, so it costs the writes and no extra pass. For v < G pass 2
// recomputes q_vb from the teacher value it read for Q (an L1 hit): holding G values per
// column would need a runtime-sized array, and the exp is off the memory-bound path.
//
// Around it: dino_loss_scale_grad multiplies the saved gradient by the upstream gradient read
// from device memory (the autograd backward, without a host synchronisation);
// dino_teacher_stats reduces q to the collapse statistics (mean teacher entropy, entropy of
// the batch-mean teacher distribution) on the device, so a step reads back three floats.
//
// Bytes: with S = V·B·K·4 and T = G·B·K·4, pass 1 reads T + S, pass 2 reads T + S again and
// writes dstudent (S); the column-sum partials add T/8 written and T/8 read: 2T + 3S + T/4
// against the minimum T + 2S (read both once, write the gradient once). For G = 2, V = 10
// that is 34.5 vs 22 units, 1.57x (B = 64, K = 65,536: 579 MB vs 369 MB), less the part of
// pass 2's re-read that the reversed order finds in L2 (up to the last sample group's
// 12 rows x 8 samples, 25 MB). Holding a row across a thread-block cluster (or in registers
// across co-resident blocks) would remove the re-read; the host emulator the tests run on has
// neither clusters nor concurrently running blocks. Launches: 2, which is what bounds small K.
// FLOPs: ~2.6 exp per student element for G = 2, V = 10 (1.25 in pass 1, 1 for p, 2G/V for
// q), 1.25 per teacher element in pass 1.
//
// The gradient is for an upstream gradient of 1 (the loss is the root of the graph).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/mma_sm80.cuh"  // dynamic_smem
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kStatsRows = 8;        // samples (rows of one view) per stats block
constexpr int kMinStatsChunks = 16;  // a wide row is cut into at least this many chunks ...
constexpr int kMaxSweeps = 8;        // ... of at most this many block-wide sweeps each
constexpr int kViewBatch = 4;        // student rows whose loads a grad thread issues together

// Merges two (max, sum of exp(x - max)) pairs; an empty pair is (-inf, 0).
__device__ __forceinline__ float2 merge_stats(float2 a, float2 b) {
  const float m = fmaxf(a.x, b.x);
  if (m == -INFINITY) return make_float2(-INFINITY, 0.f);
  return make_float2(m, a.y * __expf(a.x - m) + b.y * __expf(b.x - m));
}

// The warp's merged (max, sum-exp) in every lane: one max tree, one rescale, one sum tree
// (instead of a merge with two exps per tree level).
__device__ __forceinline__ float2 warp_merge_stats(float2 st) {
  const float m = warp_max(st.x);
  const float s = m == -INFINITY ? 0.f : st.y * __expf(st.x - m);
  return make_float2(m, warp_sum(s));
}

// VW consecutive floats; VW = 4 is one 16-byte access (the caller checked the alignment).
template <int VW>
struct Vec {
  float v[VW];
};

template <int VW>
__device__ __forceinline__ Vec<VW> load_vec(const float* p) {
  Vec<VW> r;
  if constexpr (VW == 4) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    r.v[0] = f.x, r.v[1] = f.y, r.v[2] = f.z, r.v[3] = f.w;
  } else {
#pragma unroll
    for (int j = 0; j < VW; ++j) r.v[j] = p[j];
  }
  return r;
}

template <int VW>
__device__ __forceinline__ void store_vec(float* p, const Vec<VW>& r) {
  if constexpr (VW == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  } else {
#pragma unroll
    for (int j = 0; j < VW; ++j) p[j] = r.v[j];
  }
}

template <int VW>
__device__ __forceinline__ Vec<VW> zero_vec() {
  Vec<VW> r;
#pragma unroll
  for (int j = 0; j < VW; ++j) r.v[j] = 0.f;
  return r;
}

// st extended by the VW values (x - c) * inv_tau: the new max first, so one exp per value
// and one to rescale the running sum.
template <int VW>
__device__ __forceinline__ float2 add_to_stats(float2 st, const Vec<VW>& x, const Vec<VW>& c,
                                               float inv_tau) {
  float y[VW];
  float m = st.x;
#pragma unroll
  for (int j = 0; j < VW; ++j) {
    y[j] = (x.v[j] - c.v[j]) * inv_tau;
    m = fmaxf(m, y[j]);
  }
  float s = st.y * __expf(st.x - m);
#pragma unroll
  for (int j = 0; j < VW; ++j) s += __expf(y[j] - m);
  return make_float2(m, s);
}

// Thread r < kStatsRows gets row r's (max, sum-exp) over the block: each warp merges every
// row, then one barrier and warps in order.
__device__ __forceinline__ float2 block_merge_rows(const float2 (&st)[kStatsRows]) {
  __shared__ float2 warp_stats[kStatsRows][kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < kStatsRows; ++r) {
    const float2 w = warp_merge_stats(st[r]);
    if (lane == 0) warp_stats[r][warp] = w;
  }
  __syncthreads();
  float2 total = make_float2(-INFINITY, 0.f);
  if (threadIdx.x < kStatsRows)
    for (int w = 0; w < kWarps; ++w) total = merge_stats(total, warp_stats[threadIdx.x][w]);
  return total;
}

// lse[view] for sample b's G + V rows (teacher views, then student views) from the stats
// pass's partial (rows, chunks): one warp per row, lanes over chunks in order, then a fixed
// tree, so every block of sample b gets the same values.
__device__ __forceinline__ void sample_lse(float* lse, const float2* partial, int b, int views,
                                           int B, int chunks) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int view = warp; view < views; view += kWarps) {
    const float2* p = partial + (int64_t(view) * B + b) * chunks;
    float2 st = make_float2(-INFINITY, 0.f);
    for (int i = lane; i < chunks; i += 32) st = merge_stats(st, p[i]);
    st = warp_merge_stats(st);
    if (lane == 0) lse[view] = st.x + logf(st.y);
  }
}

// The block's sum of v in thread 0 (warps in order).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[kWarps];
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.f;
  if (threadIdx.x == 0)
    for (int w = 0; w < kWarps; ++w) total += warp_sums[w];
  return total;
}

// Sample b's gradient at columns col .. col + VW - 1 (written to dstudent, and q when not
// null); returns this thread's Σ_v (Q_b − [v<G] q_vb) · s_vb over them. lse: teacher views,
// then student views.
template <int VW>
__device__ __forceinline__ float sample_grad(float* dstudent, float* q, const float* student,
                                             const float* teacher, const float* center,
                                             const float* lse, int b, int col, int G, int V, int B,
                                             int K, float inv_tau_s, float inv_tau_t,
                                             float grad_scale) {
  const Vec<VW> c = load_vec<VW>(center + col);
  const auto teacher_q = [&](int g) {
    const int64_t at = (int64_t(g) * B + b) * K + col;
    const Vec<VW> t = load_vec<VW>(teacher + at);
    Vec<VW> qg;
#pragma unroll
    for (int j = 0; j < VW; ++j) qg.v[j] = __expf((t.v[j] - c.v[j]) * inv_tau_t - lse[g]);
    return qg;
  };
  Vec<VW> Q = zero_vec<VW>();
  for (int g = 0; g < G; ++g) {
    const Vec<VW> qg = teacher_q(g);
#pragma unroll
    for (int j = 0; j < VW; ++j) Q.v[j] += qg.v[j];
    if (q) store_vec<VW>(q + (int64_t(g) * B + b) * K + col, qg);
  }
  float dot = 0.f;
  for (int v0 = 0; v0 < V; v0 += kViewBatch) {
    Vec<VW> s[kViewBatch];
#pragma unroll
    for (int i = 0; i < kViewBatch; ++i)
      if (v0 + i < V) s[i] = load_vec<VW>(student + (int64_t(v0 + i) * B + b) * K + col);
#pragma unroll
    for (int i = 0; i < kViewBatch; ++i) {
      const int v = v0 + i;
      if (v >= V) break;
      Vec<VW> target = Q;
      float m = float(G);
      if (v < G) {  // the same crop as teacher view v: that pair is left out
        const Vec<VW> qv = teacher_q(v);
#pragma unroll
        for (int j = 0; j < VW; ++j) target.v[j] -= qv.v[j];
        m = float(G - 1);
      }
      Vec<VW> grad;
#pragma unroll
      for (int j = 0; j < VW; ++j) {
        const float p = __expf(s[i].v[j] * inv_tau_s - lse[G + v]);
        grad.v[j] = grad_scale * (m * p - target.v[j]);
        dot += target.v[j] * s[i].v[j];
      }
      store_vec<VW>(dstudent + (int64_t(v) * B + b) * K + col, grad);
    }
  }
  return dot;
}

// loss (1) = inv_nB * (Σ_rows m_v lse_s[row] − inv_tau_s Σ dot_partial), summed in double by
// one block in a fixed order; the inputs were written by other blocks of this launch.
__device__ void finalize_loss(float* loss, const float* lse_s, const float* dot_partial,
                              int n_partial, int G, int V, int B, float inv_tau_s, double inv_nB) {
  __shared__ double lse_sum[kThreads], dot_sum[kThreads];
  double a = 0, d = 0;
  for (int r = threadIdx.x; r < V * B; r += kThreads)
    a += double(r < G * B ? G - 1 : G) * __ldcg(lse_s + r);
  for (int i = threadIdx.x; i < n_partial; i += kThreads) d += __ldcg(dot_partial + i);
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

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

// kernels

// grid (chunks, ceil(B / kStatsRows) * (G + V)); blockIdx.y = sample group * (G + V) + view,
// views being the teacher's G then the student's V. partial (rows, chunks), rows indexed
// view * B + b, gets the (max, sum-exp) over each chunk of (t − c) / τt for a teacher row,
// s / τs for a student row; colsum_partial (groups * G, K), when not null, the sums of raw t
// over each teacher block's rows (row order); done (1) is zeroed for the grad pass.
template <int VW>
__global__ void __launch_bounds__(kThreads)
    dino_stats_kernel(float2* partial, float* colsum_partial, int* done,
                      const float* __restrict__ student, const float* __restrict__ teacher,
                      const float* __restrict__ center, int G, int V, int B, int K, int sweeps,
                      float inv_tau_s, const float* tau_t) {
  const float inv_tau_t = 1.f / *tau_t;
  const int views = G + V;
  const int group = blockIdx.y / views, view = blockIdx.y % views;
  const bool is_teacher = view < G;
  const int b0 = group * kStatsRows;
  const int rows = min(kStatsRows, B - b0);
  const float* x = is_teacher ? teacher + (int64_t(view) * B + b0) * K
                              : student + (int64_t(view - G) * B + b0) * K;
  const float inv_tau = is_teacher ? inv_tau_t : inv_tau_s;
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *done = 0;

  float2 st[kStatsRows];
#pragma unroll
  for (int r = 0; r < kStatsRows; ++r) st[r] = make_float2(-INFINITY, 0.f);
  const int chunk_cols = sweeps * kThreads * VW;
  for (int sweep = 0; sweep < sweeps; ++sweep) {
    const int col = blockIdx.x * chunk_cols + (sweep * kThreads + threadIdx.x) * VW;
    if (col >= K) break;
    const Vec<VW> c = is_teacher ? load_vec<VW>(center + col) : zero_vec<VW>();
    Vec<VW> v[kStatsRows];
#pragma unroll
    for (int r = 0; r < kStatsRows; ++r)
      if (r < rows) v[r] = load_vec<VW>(x + int64_t(r) * K + col);
#pragma unroll
    for (int r = 0; r < kStatsRows; ++r)
      if (r < rows) st[r] = add_to_stats<VW>(st[r], v[r], c, inv_tau);
    if (is_teacher && colsum_partial) {
      Vec<VW> sum = zero_vec<VW>();
#pragma unroll
      for (int r = 0; r < kStatsRows; ++r)
        if (r < rows)
#pragma unroll
          for (int j = 0; j < VW; ++j) sum.v[j] += v[r].v[j];
      store_vec<VW>(colsum_partial + (int64_t(group) * G + view) * K + col, sum);
    }
  }
  const float2 total = block_merge_rows(st);
  if (threadIdx.x < rows)
    partial[(int64_t(view) * B + b0 + threadIdx.x) * gridDim.x + blockIdx.x] = total;
}

// grid (ceil(K / (kThreads * VW)), B); blockIdx.y handles sample B − 1 − blockIdx.y.
// dstudent (V*B, K); q (G*B, K) when not null; teacher_colsum (K) when not null, from
// colsum_partial (ceil(B / kStatsRows) * G, K) in order; lse_s (V*B) by the blocks of column
// slice 0; dot_partial (gridDim.y, gridDim.x) per block Σ (Q_b − [v<G] q_vb)[k] · s_vb[k];
// loss (1) by the last block to increment done. Dynamic shared memory: G + V floats.
template <int VW>
__global__ void __launch_bounds__(kThreads)
    dino_loss_grad_kernel(float* loss, float* dstudent, float* q, float* teacher_colsum,
                          float* lse_s, float* dot_partial, int* done,
                          const float* __restrict__ student, const float* __restrict__ teacher,
                          const float* __restrict__ center, const float2* partial,
                          const float* colsum_partial, int G, int V, int B, int K, int chunks,
                          float inv_tau_s, const float* tau_t, float grad_scale, double inv_nB) {
  const float inv_tau_t = 1.f / *tau_t;
  float* lse = reinterpret_cast<float*>(dynamic_smem());  // sample b's rows: teacher, student
  const int b = B - 1 - int(blockIdx.y);
  sample_lse(lse, partial, b, G + V, B, chunks);
  __syncthreads();
  if (blockIdx.x == 0)
    for (int v = threadIdx.x; v < V; v += kThreads) lse_s[int64_t(v) * B + b] = lse[G + v];

  const int col = (int(blockIdx.x) * kThreads + threadIdx.x) * VW;
  float dot = 0.f;
  if (col < K) {
    dot = sample_grad<VW>(dstudent, q, student, teacher, center, lse, b, col, G, V, B, K, inv_tau_s,
                          inv_tau_t, grad_scale);
    if (teacher_colsum && b == B - 1) {
      const int partials = (B + kStatsRows - 1) / kStatsRows * G;
      Vec<VW> sum = zero_vec<VW>();
      for (int i = 0; i < partials; ++i) {
        const Vec<VW> p = load_vec<VW>(colsum_partial + int64_t(i) * K + col);
#pragma unroll
        for (int j = 0; j < VW; ++j) sum.v[j] += p.v[j];
      }
      store_vec<VW>(teacher_colsum + col, sum);
    }
  }

  // The fence publishes this block's lse_s and dot partial before its increment; the last
  // block to increment sums them all.
  __shared__ bool last;
  const float total = block_sum(dot);
  if (threadIdx.x == 0) dot_partial[int64_t(blockIdx.y) * gridDim.x + blockIdx.x] = total;
  __threadfence();
  __syncthreads();
  const int n_partial = int(gridDim.x * gridDim.y);
  if (threadIdx.x == 0) last = atomicAdd(done, 1) == n_partial - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  finalize_loss(loss, lse_s, dot_partial, n_partial, G, V, B, inv_tau_s, inv_nB);
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
__global__ void dino_center_update_kernel(float* center, const float* colsum, int K, float momentum,
                                          float inv_rows) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < K) center[k] = momentum * center[k] + (1.f - momentum) * (colsum[k] * inv_rows);
}

// launchers

namespace {

// Bytes of a scratch region, rounded up so the next one starts 256-byte aligned.
size_t aligned_bytes(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Block-wide sweeps per stats chunk: wide rows get wider chunks (fewer partials for pass 2
// to merge), but at least kMinStatsChunks of them per row, to keep the grid full. Depends on
// the shape only, so the reduction order (and the result) does too.
int stats_sweeps(int K, int vw) {
  const int sweeps = K / (kMinStatsChunks * kThreads * vw);
  return sweeps < 1 ? 1 : sweeps > kMaxSweeps ? kMaxSweeps : sweeps;
}

template <int VW>
void launch_forward_backward(float* loss, float* dstudent, float* teacher_colsum, float* q,
                             const float* student, const float* teacher, const float* center, int G,
                             int V, int B, int K, float tau_s, const float* tau_t,
                             cudaStream_t stream) {
  const int views = G + V;
  const int groups = (B + kStatsRows - 1) / kStatsRows;
  const int sweeps = stats_sweeps(K, VW);
  const int chunks = (K + sweeps * kThreads * VW - 1) / (sweeps * kThreads * VW);
  const dim3 stats_grid(chunks, groups * views);
  const dim3 grad_grid((K + kThreads * VW - 1) / (kThreads * VW), B);
  DINO_CHECK(int64_t(groups) * views <= 65535 && B <= 65535, "[dino_loss] G=", G, " V=", V,
             " B=", B, " exceed the kernels' grids");
  const int n_partial = int(grad_grid.x * grad_grid.y);
  const double nB = double(int64_t(G) * V - G) * B;

  // One allocation: stats partials, column-sum partials, student lse, dot partials, counter.
  const size_t partial_bytes = aligned_bytes(size_t(views) * B * chunks * sizeof(float2));
  const size_t colsum_bytes =
      teacher_colsum ? aligned_bytes(size_t(groups) * G * K * sizeof(float)) : 0;
  const size_t lse_bytes = aligned_bytes(size_t(V) * B * sizeof(float));
  const size_t dot_bytes = aligned_bytes(size_t(n_partial) * sizeof(float));
  char* scratch = static_cast<char*>(
      scratch_alloc(partial_bytes + colsum_bytes + lse_bytes + dot_bytes + sizeof(int), stream));
  float2* partial = reinterpret_cast<float2*>(scratch);
  float* colsum_partial =
      teacher_colsum ? reinterpret_cast<float*>(scratch + partial_bytes) : nullptr;
  float* lse_s = reinterpret_cast<float*>(scratch + partial_bytes + colsum_bytes);
  float* dot_partial = reinterpret_cast<float*>(scratch + partial_bytes + colsum_bytes + lse_bytes);
  int* done =
      reinterpret_cast<int*>(scratch + partial_bytes + colsum_bytes + lse_bytes + dot_bytes);

  dino_stats_kernel<VW><<<stats_grid, kThreads, 0, stream>>>(partial, colsum_partial, done, student,
                                                             teacher, center, G, V, B, K, sweeps,
                                                             1.f / tau_s, tau_t);
  CUDA_CHECK(cudaGetLastError());
  dino_loss_grad_kernel<VW><<<grad_grid, kThreads, size_t(views) * sizeof(float), stream>>>(
      loss, dstudent, q, teacher_colsum, lse_s, dot_partial, done, student, teacher, center,
      partial, colsum_partial, G, V, B, K, chunks, 1.f / tau_s, tau_t,
      float(1.0 / (nB * double(tau_s))), 1.0 / nB);
  CUDA_CHECK(cudaGetLastError());
  scratch_free(scratch, stream);
}

void forward_backward(float* loss, float* dstudent, float* teacher_colsum, float* q,
                      const float* student, const float* teacher, const float* center, int G, int V,
                      int B, int K, float tau_s, const float* tau_t, cudaStream_t stream) {
  const int64_t n_pairs = int64_t(G) * V - G;
  DINO_CHECK(G >= 1 && V >= G && B >= 1 && K >= 1 && n_pairs > 0, "[dino_loss] bad sizes G=", G,
             " V=", V, " B=", B, " K=", K);
  const bool vec = K % 4 == 0 && aligned16(student) && aligned16(teacher) && aligned16(center) &&
                   aligned16(dstudent) && (!q || aligned16(q)) &&
                   (!teacher_colsum || aligned16(teacher_colsum));
  if (vec)
    launch_forward_backward<4>(loss, dstudent, teacher_colsum, q, student, teacher, center, G, V, B,
                               K, tau_s, tau_t, stream);
  else
    launch_forward_backward<1>(loss, dstudent, teacher_colsum, q, student, teacher, center, G, V, B,
                               K, tau_s, tau_t, stream);
}

}  // namespace

void dino_loss_forward_backward(float* loss, float* dstudent, float* teacher_colsum,
                                const float* student, const float* teacher, const float* center,
                                int G, int V, int B, int K, float tau_s, const float* tau_t,
                                cudaStream_t stream) {
  forward_backward(loss, dstudent, teacher_colsum, nullptr, student, teacher, center, G, V, B, K,
                   tau_s, tau_t, stream);
}

void dino_loss_forward_backward_q(float* loss, float* dstudent, float* teacher_colsum, float* q,
                                  const float* student, const float* teacher, const float* center,
                                  int G, int V, int B, int K, float tau_s, const float* tau_t,
                                  cudaStream_t stream) {
  forward_backward(loss, dstudent, teacher_colsum, q, student, teacher, center, G, V, B, K, tau_s,
                   tau_t, stream);
}

void dino_loss_scale_grad(float* out, const float* dstudent, const float* dloss, int64_t n,
                          cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t want = (n + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(8) * context().sm_count;
  dino_loss_scale_grad_kernel<<<int(want < cap ? want : cap), kThreads, 0, stream>>>(out, dstudent,
                                                                                     dloss, n);
  CUDA_CHECK(cudaGetLastError());
}

void dino_teacher_stats(float* stats, const float* loss, const float* q, int R, int K,
                        cudaStream_t stream) {
  DINO_CHECK(R >= 1 && K >= 1, "[dino_loss] bad teacher statistics sizes R=", R, " K=", K);
  const int blocks = (K + kThreads - 1) / kThreads;
  float* partial = static_cast<float*>(scratch_alloc(size_t(2) * blocks * sizeof(float), stream));
  dino_teacher_stats_kernel<<<blocks, kThreads, 0, stream>>>(partial, q, R, K);
  CUDA_CHECK(cudaGetLastError());
  dino_teacher_stats_finalize_kernel<<<1, kThreads, 0, stream>>>(stats, loss, partial, blocks, R);
  CUDA_CHECK(cudaGetLastError());
  scratch_free(partial, stream);
}

void dino_center_update(float* center, const float* teacher_colsum, int64_t rows, int K,
                        float momentum, cudaStream_t stream) {
  if (K <= 0) return;
  dino_center_update_kernel<<<(K + 255) / 256, 256, 0, stream>>>(
      center, teacher_colsum, K, momentum, float(1.0 / double(rows)));
  CUDA_CHECK(cudaGetLastError());
}

// ---- the CUDA backend's DINO loss (core/ops_dino.cpp, losses/dino_loss.cpp): f32 logits. One
// launch gives the loss, the student gradient for an upstream gradient of 1 (what the backward
// scales on the device: no host synchronisation), the teacher's column sums and, on request, q.
void CudaBackend::dino_loss(const Tensor& loss, const Tensor& q, const Tensor& teacher_colsum,
                            Tensor& saved, const Tensor& student, const Tensor& teacher,
                            const Tensor& center, int64_t G, double tau_s,
                            const Tensor& tau_t) const {
  DINO_CHECK(tau_t.device() == Device::cuda && tau_t.dtype() == DType::f32 && tau_t.numel() == 1,
             "[dino_loss] the teacher temperature must be one f32 on the GPU, got ", tau_t.str());
  const int64_t K = student.size(1), B = teacher.size(0) / G, V = student.size(0) / B;
  Tensor ds = Tensor::empty(student.shape(), DType::f32, Device::cuda);
  // The kernel always forms the column sums: scratch when they are not wanted.
  const Tensor colsum =
      teacher_colsum.defined() ? teacher_colsum : Tensor::empty({K}, DType::f32, Device::cuda);
  const int g = as_int("dino_loss", G, "global views"), v = as_int("dino_loss", V, "views"),
            b = as_int("dino_loss", B, "batch"), k = as_int("dino_loss", K, "outputs");
  if (q.defined())
    dino_loss_forward_backward_q(f32_ptr(loss), f32_ptr(ds), f32_ptr(colsum), f32_ptr(q),
                                 f32_ptr(student), f32_ptr(teacher), f32_ptr(center), g, v, b, k,
                                 float(tau_s), f32_ptr(tau_t), op_stream());
  else
    dino_loss_forward_backward(f32_ptr(loss), f32_ptr(ds), f32_ptr(colsum), f32_ptr(student),
                               f32_ptr(teacher), f32_ptr(center), g, v, b, k, float(tau_s),
                               f32_ptr(tau_t), op_stream());
  saved = ds;
}

void CudaBackend::dino_loss_backward(const Tensor& dstudent, const Tensor& dloss,
                                     const Tensor& saved, const Tensor&, int64_t, double) const {
  dino_loss_scale_grad(f32_ptr(dstudent), f32_ptr(saved), f32_ptr(dloss), saved.numel(),
                       op_stream());
}

void CudaBackend::dino_teacher_stats(const Tensor& stats, const Tensor& loss,
                                     const Tensor& q) const {
  cuda::dino_teacher_stats(f32_ptr(stats), f32_ptr(loss), f32_ptr(q),
                           as_int("dino_loss", q.size(0), "teacher rows"),
                           as_int("dino_loss", q.size(1), "outputs"), op_stream());
}

void CudaBackend::dino_center_update(const Tensor& center, const Tensor& teacher_colsum,
                                     int64_t rows, double momentum) const {
  cuda::dino_center_update(f32_ptr(center), f32_ptr(teacher_colsum), rows,
                           as_int("dino_loss", center.numel(), "outputs"), float(momentum),
                           op_stream());
}

}  // namespace dino::kernels::cuda
