// Multi-head softmax attention, flash-attention style, on packed qkv (B, N, 3*H*Dh) bf16
// (timm's layout: q, k, v along the last dim, each (H, Dh) head-major), scale 1/sqrt(Dh).
// out (B, N, H*Dh) bf16 and lse (B, H, N) fp32; the N x N matrix never reaches global memory.
//
// Shape (first version, written to be clearly right; no pipelining yet): bf16 tensor cores
// through nvcuda::wmma 16x16x16 fragments with fp32 accumulators. Tiles of 64 queries x 64
// keys, 4 warps, each warp owning 16 query rows. Scores go through shared memory (fp32) so
// the online softmax is plain per-row code: 2 lanes per row, a running max m and sum l in
// log2 units. P is rounded to bf16 for the P·V product (as FlashAttention does); the output
// accumulator O lives in shared memory, rescaled by exp2(m_old - m_new) before each P·V.
// Tails: query rows >= N are computed on zero rows and not written; key columns >= N are
// masked to probability 0. Head dims 32, 64, 128 (the only instantiations).
//
// Backward (deterministic, no atomics):
//  1. attention_backward_dot_kernel: Dv = rowsum(dO * O) per (b, h, query), fp32.
//  2. attention_backward_dkdv_kernel: one block per 64 keys, looping over all query tiles:
//     recompute S = Q K^T and P = exp(S*scale - lse), dP = dO V^T, dS = P * (dP - Dv) * scale,
//     accumulate dV += P^T dO and dK += dS^T Q in fp32 wmma accumulators; write bf16.
//  3. attention_backward_dq_kernel: one block per 64 queries, looping over all key tiles:
//     recompute P and dS the same way and accumulate dQ += dS K in fp32; write bf16.
//  dQ gets its own pass instead of fp32 atomics so that the sum order is fixed: the price is
//  recomputing Q K^T and dO V^T once more (7 tile products per (query, key) tile pair instead
//  of 5).
// FLOPs: forward 4·B·H·N²·Dh; backward 14·B·H·N²·Dh as written (10 minimum). Bytes: qkv and
// out once each; bound by math for N >= ~200.
#include <cuda_bf16.h>
#include <mma.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

using namespace nvcuda;

constexpr int kTile = 64;           // queries and keys per tile
constexpr int kWarps = 4;           // each owns 16 rows of a 64-row tile
constexpr int kThreads = kWarps * 32;
constexpr int kLdS = kTile + 4;     // fp32 score tile row stride (floats)
constexpr int kLdP = kTile + 8;     // bf16 probability tile row stride (elements)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Shared-memory layout for head dim D: bf16 tiles have row stride D + 8 (16-byte rows, fewer
// bank conflicts); every array starts on a 128-byte boundary (wmma needs 32).
template <int D>
struct Smem {
  static constexpr int kLd = D + 8;    // bf16 q/k/v/dO tile row stride
  static constexpr int kLdO = D + 4;   // fp32 accumulator tile row stride
  static constexpr size_t kTileBytes = size_t(kTile) * kLd * 2;
  static constexpr size_t kScoreBytes = size_t(kTile) * kLdS * 4;
  static constexpr size_t kProbBytes = size_t(kTile) * kLdP * 2;
  static constexpr size_t kAccBytes = size_t(kTile) * kLdO * 4;
  // forward: Q, K, V tiles, S, P, O
  static constexpr size_t kForward = 3 * kTileBytes + kScoreBytes + kProbBytes + kAccBytes;
  // backward: 4 bf16 tiles, S and dP (reused as the fp32 staging of the result), P and dS,
  // lse and Dv of 64 rows
  static constexpr size_t kBackward =
      4 * kTileBytes + 2 * kScoreBytes + 2 * kProbBytes + 2 * kTile * 4;
  static_assert(kTileBytes % 128 == 0 && kScoreBytes % 128 == 0 && kProbBytes % 128 == 0 &&
                    kAccBytes % 128 == 0,
                "shared arrays must stay 128-byte aligned");
  static_assert(2 * kScoreBytes >= kAccBytes, "the staging tile must fit in S and dP");
};

// Copies the D-wide rows [n0, n0 + 64) of one head's q, k or v (or of dO/out, row stride
// `stride`) into a bf16 tile; rows >= N become zeros. 16-byte loads (D % 8 == 0, and the
// launcher checks the base pointers).
template <int D>
__device__ void load_tile(__nv_bfloat16* tile, const __nv_bfloat16* base, int64_t stride,
                          int n0, int N) {
  constexpr int kVecs = D / 8;
  for (int i = threadIdx.x; i < kTile * kVecs; i += kThreads) {
    const int r = i / kVecs, c = (i % kVecs) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (n0 + r < N) v = *reinterpret_cast<const uint4*>(base + int64_t(n0 + r) * stride + c);
    *reinterpret_cast<uint4*>(tile + r * Smem<D>::kLd + c) = v;
  }
}

// The warp's 16 x 64 block of a @ b^T, both tiles (64, D) with row stride kLd, rows
// [row0, row0 + 16) of a, into the fp32 tile out (row stride kLdS).
template <int D>
__device__ void tile_abt(float* out, const __nv_bfloat16* a, const __nv_bfloat16* b, int row0) {
  constexpr int kLd = Smem<D>::kLd;
  for (int j = 0; j < kTile / 16; ++j) {
    FragC acc;
    wmma::fill_fragment(acc, 0.f);
    for (int k = 0; k < D / 16; ++k) {
      FragA fa;
      FragBT fb;
      wmma::load_matrix_sync(fa, a + row0 * kLd + k * 16, kLd);
      wmma::load_matrix_sync(fb, b + j * 16 * kLd + k * 16, kLd);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(out + row0 * kLdS + j * 16, acc, kLdS, wmma::mem_row_major);
  }
}

// Backward elementwise step for the warp's 16 query rows [row0, row0 + 16) of the tile:
// P = exp(S*scale - lse) (0 outside the valid rows/columns), dS = P * (dP - Dv) * scale.
// Two lanes per row, 32 columns each.
__device__ void backward_probs(__nv_bfloat16* P, __nv_bfloat16* dS, const float* S,
                               const float* dP, const float* lse, const float* dv, int row0,
                               int q0, int k0, int N, float scale) {
  const int lane = threadIdx.x % 32;
  const int r = row0 + lane / 2, c0 = (lane % 2) * 32;
  const bool row_ok = q0 + r < N;
  const float lse2 = lse[r] * kLog2e, d = dv[r];
  for (int c = c0; c < c0 + 32; ++c) {
    float p = 0.f;
    if (row_ok && k0 + c < N) p = exp2f(S[r * kLdS + c] * scale * kLog2e - lse2);
    P[r * kLdP + c] = __float2bfloat16_rn(p);
    dS[r * kLdP + c] = __float2bfloat16_rn(p * (dP[r * kLdS + c] - d) * scale);
  }
}

// Writes the warp's 16 rows of an fp32 tile (row stride kLdO), times mul, as bf16 to rows
// n0 + row of `base` (row stride `stride`); rows >= N are skipped. Two lanes per row.
template <int D>
__device__ void store_rows(__nv_bfloat16* base, int64_t stride, const float* tile, int row0,
                           int n0, int N, float mul) {
  const int lane = threadIdx.x % 32;
  const int r = row0 + lane / 2;
  if (n0 + r >= N) return;
  const int c0 = (lane % 2) * (D / 2);
  for (int c = c0; c < c0 + D / 2; ++c)
    base[int64_t(n0 + r) * stride + c] = __float2bfloat16_rn(tile[r * Smem<D>::kLdO + c] * mul);
}

}  // namespace

// kernels

// grid (ceil(N / 64), B * H), kThreads threads, Smem<D>::kForward bytes of shared memory.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int N,
                             int H) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Smem<D>;
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Ks = Qs + kTile * L::kLd;
  __nv_bfloat16* Vs = Ks + kTile * L::kLd;
  float* S = reinterpret_cast<float*>(Vs + kTile * L::kLd);
  __nv_bfloat16* P = reinterpret_cast<__nv_bfloat16*>(S + kTile * kLdS);
  float* O = reinterpret_cast<float*>(P + kTile * kLdP);

  const int b = blockIdx.y / H, h = blockIdx.y % H;
  const int q0 = blockIdx.x * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row0 = warp * 16;
  const int64_t stride = int64_t(3) * H * D;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * D;
  const float scale2 = rsqrtf(float(D)) * kLog2e;  // scores in log2 units

  load_tile<D>(Qs, qb, stride, q0, N);
  const int r = row0 + lane / 2;           // this lane's row of the tile
  const int half = lane % 2;
  for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c) O[r * L::kLdO + c] = 0.f;
  float m = -INFINITY, l = 0.f;

  for (int k0 = 0; k0 < N; k0 += kTile) {
    __syncthreads();  // every warp is done with the previous K and V tiles
    load_tile<D>(Ks, qb + H * D, stride, k0, N);
    load_tile<D>(Vs, qb + 2 * H * D, stride, k0, N);
    __syncthreads();

    tile_abt<D>(S, Qs, Ks, row0);
    __syncwarp();

    float mx = -INFINITY;
    for (int c = half * 32; c < half * 32 + 32; ++c)
      if (k0 + c < N) mx = fmaxf(mx, S[r * kLdS + c] * scale2);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx);  // finite: every key tile has a valid column
    const float alpha = exp2f(m - m_new);
    float sum = 0.f;
    for (int c = half * 32; c < half * 32 + 32; ++c) {
      const float p = k0 + c < N ? exp2f(S[r * kLdS + c] * scale2 - m_new) : 0.f;
      P[r * kLdP + c] = __float2bfloat16_rn(p);
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c) O[r * L::kLdO + c] *= alpha;
    __syncwarp();

    for (int j = 0; j < D / 16; ++j) {
      FragC acc;
      wmma::load_matrix_sync(acc, O + row0 * L::kLdO + j * 16, L::kLdO, wmma::mem_row_major);
      for (int k = 0; k < kTile / 16; ++k) {
        FragA fa;
        FragB fb;
        wmma::load_matrix_sync(fa, P + row0 * kLdP + k * 16, kLdP);
        wmma::load_matrix_sync(fb, Vs + k * 16 * L::kLd + j * 16, L::kLd);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(O + row0 * L::kLdO + j * 16, acc, L::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }

  store_rows<D>(out + int64_t(b) * N * H * D + h * D, int64_t(H) * D, O, row0, q0, N, 1.f / l);
  if (half == 0 && q0 + r < N) lse[(int64_t(b) * H + h) * N + q0 + r] = (m + log2f(l)) * kLn2;
}

// dv (B, H, N) = rowsum(dout * out) per head; one warp per (b, n, h) row of D elements.
template <int D>
__global__ void attention_backward_dot_kernel(float* dv, const __nv_bfloat16* dout,
                                              const __nv_bfloat16* out, int B, int N, int H) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // (b, n, h)
  const int lane = threadIdx.x % 32;
  if (row >= int64_t(B) * N * H) return;
  float s = 0.f;
  for (int c = lane; c < D; c += 32)
    s += __bfloat162float(dout[row * D + c]) * __bfloat162float(out[row * D + c]);
  s = warp_sum(s);
  const int h = int(row % H);
  const int64_t bn = row / H;
  const int n = int(bn % N), b = int(bn / N);
  if (lane == 0) dv[(int64_t(b) * H + h) * N + n] = s;
}

// grid (ceil(N / 64) key tiles, B * H). Writes the k and v parts of dqkv for 64 keys.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkdv_kernel(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                                   const __nv_bfloat16* qkv, const float* lse, const float* dv,
                                   int N, int H) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Smem<D>;
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Vs = Ks + kTile * L::kLd;
  __nv_bfloat16* Qs = Vs + kTile * L::kLd;
  __nv_bfloat16* dOs = Qs + kTile * L::kLd;
  float* S = reinterpret_cast<float*>(dOs + kTile * L::kLd);
  float* dP = S + kTile * kLdS;
  __nv_bfloat16* P = reinterpret_cast<__nv_bfloat16*>(dP + kTile * kLdS);
  __nv_bfloat16* dS = P + kTile * kLdP;
  float* lse_s = reinterpret_cast<float*>(dS + kTile * kLdP);
  float* dv_s = lse_s + kTile;

  const int b = blockIdx.y / H, h = blockIdx.y % H;
  const int k0 = blockIdx.x * kTile;
  const int row0 = (threadIdx.x / 32) * 16;
  const int64_t stride = int64_t(3) * H * D, ostride = int64_t(H) * D;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * D;
  const __nv_bfloat16* dob = dout + int64_t(b) * N * ostride + h * D;
  const float* lse_bh = lse + (int64_t(b) * H + h) * N;
  const float* dv_bh = dv + (int64_t(b) * H + h) * N;
  const float scale = rsqrtf(float(D));

  load_tile<D>(Ks, qb + H * D, stride, k0, N);
  load_tile<D>(Vs, qb + 2 * H * D, stride, k0, N);
  FragC acc_dk[D / 16], acc_dv[D / 16];
#pragma unroll
  for (int j = 0; j < D / 16; ++j) {
    wmma::fill_fragment(acc_dk[j], 0.f);
    wmma::fill_fragment(acc_dv[j], 0.f);
  }

  for (int q0 = 0; q0 < N; q0 += kTile) {
    __syncthreads();  // every warp is done with the previous query tile
    load_tile<D>(Qs, qb, stride, q0, N);
    load_tile<D>(dOs, dob, ostride, q0, N);
    for (int i = threadIdx.x; i < kTile; i += kThreads) {
      lse_s[i] = q0 + i < N ? lse_bh[q0 + i] : 0.f;
      dv_s[i] = q0 + i < N ? dv_bh[q0 + i] : 0.f;
    }
    __syncthreads();

    // The warp's 16 query rows: S = Q K^T, dP = dO V^T, then P and dS.
    tile_abt<D>(S, Qs, Ks, row0);
    tile_abt<D>(dP, dOs, Vs, row0);
    __syncwarp();
    backward_probs(P, dS, S, dP, lse_s, dv_s, row0, q0, k0, N, scale);
    __syncthreads();  // the products below read every warp's rows of P and dS

    // The warp's 16 key rows: dV += P^T dO, dK += dS^T Q. P^T and dS^T are loaded once per
    // 16 queries and used for every column block (the other order reloads them D/16 times).
    for (int k = 0; k < kTile / 16; ++k) {
      FragAT pt, dst;
      wmma::load_matrix_sync(pt, P + k * 16 * kLdP + row0, kLdP);
      wmma::load_matrix_sync(dst, dS + k * 16 * kLdP + row0, kLdP);
#pragma unroll
      for (int j = 0; j < D / 16; ++j) {
        FragB fdo, fq;
        wmma::load_matrix_sync(fdo, dOs + k * 16 * L::kLd + j * 16, L::kLd);
        wmma::load_matrix_sync(fq, Qs + k * 16 * L::kLd + j * 16, L::kLd);
        wmma::mma_sync(acc_dv[j], pt, fdo, acc_dv[j]);
        wmma::mma_sync(acc_dk[j], dst, fq, acc_dk[j]);
      }
    }
  }

  __syncthreads();  // S and dP become the fp32 staging tile
  float* stage = S;
  __nv_bfloat16* dqb = dqkv + int64_t(b) * N * stride + h * D;
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
    wmma::store_matrix_sync(stage + row0 * L::kLdO + j * 16, acc_dk[j], L::kLdO,
                            wmma::mem_row_major);
  __syncwarp();
  store_rows<D>(dqb + H * D, stride, stage, row0, k0, N, 1.f);
  __syncwarp();
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
    wmma::store_matrix_sync(stage + row0 * L::kLdO + j * 16, acc_dv[j], L::kLdO,
                            wmma::mem_row_major);
  __syncwarp();
  store_rows<D>(dqb + 2 * H * D, stride, stage, row0, k0, N, 1.f);
}

// grid (ceil(N / 64) query tiles, B * H). Writes the q part of dqkv for 64 queries.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_kernel(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                                 const __nv_bfloat16* qkv, const float* lse, const float* dv,
                                 int N, int H) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Smem<D>;
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Vs = Ks + kTile * L::kLd;
  __nv_bfloat16* Qs = Vs + kTile * L::kLd;
  __nv_bfloat16* dOs = Qs + kTile * L::kLd;
  float* S = reinterpret_cast<float*>(dOs + kTile * L::kLd);
  float* dP = S + kTile * kLdS;
  __nv_bfloat16* P = reinterpret_cast<__nv_bfloat16*>(dP + kTile * kLdS);
  __nv_bfloat16* dS = P + kTile * kLdP;
  float* lse_s = reinterpret_cast<float*>(dS + kTile * kLdP);
  float* dv_s = lse_s + kTile;

  const int b = blockIdx.y / H, h = blockIdx.y % H;
  const int q0 = blockIdx.x * kTile;
  const int row0 = (threadIdx.x / 32) * 16;
  const int64_t stride = int64_t(3) * H * D, ostride = int64_t(H) * D;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * D;
  const float scale = rsqrtf(float(D));

  load_tile<D>(Qs, qb, stride, q0, N);
  load_tile<D>(dOs, dout + int64_t(b) * N * ostride + h * D, ostride, q0, N);
  for (int i = threadIdx.x; i < kTile; i += kThreads) {
    lse_s[i] = q0 + i < N ? lse[(int64_t(b) * H + h) * N + q0 + i] : 0.f;
    dv_s[i] = q0 + i < N ? dv[(int64_t(b) * H + h) * N + q0 + i] : 0.f;
  }
  FragC acc_dq[D / 16];
#pragma unroll
  for (int j = 0; j < D / 16; ++j) wmma::fill_fragment(acc_dq[j], 0.f);

  for (int k0 = 0; k0 < N; k0 += kTile) {
    __syncthreads();  // every warp is done with the previous K and V tiles
    load_tile<D>(Ks, qb + H * D, stride, k0, N);
    load_tile<D>(Vs, qb + 2 * H * D, stride, k0, N);
    __syncthreads();
    tile_abt<D>(S, Qs, Ks, row0);
    tile_abt<D>(dP, dOs, Vs, row0);
    __syncwarp();
    backward_probs(P, dS, S, dP, lse_s, dv_s, row0, q0, k0, N, scale);
    __syncwarp();
    // The warp's own 16 query rows: dQ += dS K.
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      for (int k = 0; k < kTile / 16; ++k) {
        FragA fds;
        FragB fk;
        wmma::load_matrix_sync(fds, dS + row0 * kLdP + k * 16, kLdP);
        wmma::load_matrix_sync(fk, Ks + k * 16 * L::kLd + j * 16, L::kLd);
        wmma::mma_sync(acc_dq[j], fds, fk, acc_dq[j]);
      }
    }
  }

  // The staging tile's rows (stride D + 4) overlap other warps' rows of S and dP (stride 68):
  // wait until every warp is done with them.
  __syncthreads();
  float* stage = S;
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
    wmma::store_matrix_sync(stage + row0 * L::kLdO + j * 16, acc_dq[j], L::kLdO,
                            wmma::mem_row_major);
  __syncwarp();
  store_rows<D>(dqkv + int64_t(b) * N * stride + h * D, stride, stage, row0, q0, N, 1.f);
}

// launchers

namespace {

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

template <int D>
void forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N, int H,
             cudaStream_t stream) {
  set_smem(attention_forward_kernel<D>, Smem<D>::kForward);
  const dim3 grid((N + kTile - 1) / kTile, B * H);
  attention_forward_kernel<D><<<grid, kThreads, Smem<D>::kForward, stream>>>(out, lse, qkv, N, H);
  CUDA_CHECK(cudaGetLastError());
}

template <int D>
void backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
              const __nv_bfloat16* out, const float* lse, int B, int N, int H,
              cudaStream_t stream) {
  float* dv = nullptr;
  const int64_t rows = int64_t(B) * N * H;
  CUDA_CHECK(cudaMallocAsync(&dv, size_t(rows) * sizeof(float), stream));
  attention_backward_dot_kernel<D><<<int((rows * 32 + 255) / 256), 256, 0, stream>>>(dv, dout, out,
                                                                                   B, N, H);
  CUDA_CHECK(cudaGetLastError());
  const dim3 grid((N + kTile - 1) / kTile, B * H);
  set_smem(attention_backward_dkdv_kernel<D>, Smem<D>::kBackward);
  attention_backward_dkdv_kernel<D><<<grid, kThreads, Smem<D>::kBackward, stream>>>(
      dqkv, dout, qkv, lse, dv, N, H);
  CUDA_CHECK(cudaGetLastError());
  set_smem(attention_backward_dq_kernel<D>, Smem<D>::kBackward);
  attention_backward_dq_kernel<D><<<grid, kThreads, Smem<D>::kBackward, stream>>>(
      dqkv, dout, qkv, lse, dv, N, H);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaFreeAsync(dv, stream));
}

}  // namespace

void attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                       int H, int Dh, cudaStream_t stream) {
  if (B <= 0 || N <= 0 || H <= 0) return;
  DINO_CHECK(aligned16(out) && aligned16(qkv), "[attention] qkv and out must be 16-byte aligned");
  check_grid(B, H);
  switch (Dh) {
    case 32: forward<32>(out, lse, qkv, B, N, H, stream); break;
    case 64: forward<64>(out, lse, qkv, B, N, H, stream); break;
    case 128: forward<128>(out, lse, qkv, B, N, H, stream); break;
    default: throw Error(str_cat("[attention] head dim ", Dh, " is not supported (32, 64, 128)"));
  }
}

void attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                        const __nv_bfloat16* out, const float* lse, int B, int N, int H, int Dh,
                        cudaStream_t stream) {
  if (B <= 0 || N <= 0 || H <= 0) return;
  DINO_CHECK(aligned16(dqkv) && aligned16(dout) && aligned16(qkv),
             "[attention] qkv, dqkv and dout must be 16-byte aligned");
  check_grid(B, H);
  switch (Dh) {
    case 32: backward<32>(dqkv, dout, qkv, out, lse, B, N, H, stream); break;
    case 64: backward<64>(dqkv, dout, qkv, out, lse, B, N, H, stream); break;
    case 128: backward<128>(dqkv, dout, qkv, out, lse, B, N, H, stream); break;
    default: throw Error(str_cat("[attention] head dim ", Dh, " is not supported (32, 64, 128)"));
  }
}

}  // namespace dino::kernels::cuda
