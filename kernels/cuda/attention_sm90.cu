// Flash attention, forward and backward, on Hopper's warpgroup MMA (wgmma, sm_90a;
// kernels/cuda/wgmma_sm90.cuh), head dim 64 (ViT-S, ViT-B): what attention_forward and
// attention_backward run on an sm_90 device past 64 tokens (attention_kernel_for,
// kernels/cuda/attention.cu). Same layout, arithmetic order of the softmax and bf16 rounding
// of P and dS as the portable mma.sync kernels (attention_mma.cuh), which it shares the online
// softmax, the backward's elementwise steps, the operand packing and the output staging with.
//
// Why it is faster than mma.sync there: one wgmma of a warpgroup computes 64 x 64 x 16 with B
// read once from shared memory for all 64 rows (mma.sync re-reads it per warp through
// ldmatrix), and Hopper's tensor cores reach their full rate only through wgmma. Tiles of 128
// keys halve the loop's barriers against the portable kernel's 64 (N = 197: two tiles).
// The tail tile is computed whole: N = 197 costs 256 keys' work (the portable kernel's 208).
//
// Forward: a block is one warpgroup (4 warps) and owns 64 queries of one head; per tile of
// 128 keys:
//   S (64 x 128) = Q K^T      8 wgmma m64n64k16, A = Q and B = K from shared memory
//   online softmax on S's registers, P rounded to bf16 in registers
//   O (64 x 64) += P V        8 wgmma m64n64k16, A = P from registers, B = V (MN-major)
// K and V tiles are double-buffered (cp.async, one barrier per tile). Tiles are stored in core
// matrix order, 8 rows x 16 bytes contiguous per core matrix (the no-swizzle canonical layout):
// row r, columns 8c..8c+7 at ((r / 8) * 8 + c) * 128 + (r % 8) * 16 bytes.
#include <cuda_bf16.h>

#include "kernels/cuda/attention_sm90.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/wgmma_sm90.cuh"
// After the primitives it is written against:
#include "kernels/cuda/attention_mma.cuh"

namespace dino::kernels::cuda {

namespace attention_wgmma {

namespace mma = attention_mma;

constexpr int kD = 64;
constexpr int kQueries = 64;  // one warpgroup, 16 rows per warp
constexpr int kThreads = 128;
static_assert(kThreads == mma::kThreads, "the shared helpers stride by the portable blocks' size");
constexpr uint32_t kCoreBytes = 128;                   // 8 rows x 16 bytes
constexpr uint32_t kGroupBytes = kD / 8 * kCoreBytes;  // 8 full rows: the next core matrix down
// Q in core order; after the loop, the output's staging in store_rows's padded row order.
constexpr size_t kQBytes = mma::Tiles<kD>::kBytes;
// Keys per tile: 128, or 64 where that is all of N (37 tokens of a 96-pixel crop). Every
// wgmma of a tile runs, tail keys included (masked in the softmax): a wgmma skipped on a
// run-time condition makes ptxas serialise all of them.
template <int kKeys>
constexpr size_t smem_bytes() {
  return kQBytes + 4 * size_t(kKeys) * kD * 2;  // Q, K x2, V x2
}

// Issues the copy of rows [n0, n0 + kRows) of one head (row stride `stride` elements) into a
// core-ordered tile; rows >= N are zero-filled.
template <int kRows>
__device__ __forceinline__ void load_core_tile(__nv_bfloat16* tile, const __nv_bfloat16* base,
                                               int64_t stride, int n0, int N) {
  constexpr int kChunks = kD / 8;
  for (int i = int(threadIdx.x); i < kRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;  // a row's chunks from neighbouring lanes
    const bool valid = n0 + r < N;
    cp_async_16(tile + ((r / 8) * kChunks + c) * 64 + (r % 8) * 8,
                valid ? base + int64_t(n0 + r) * stride + c * 8 : base, valid);
  }
}

// Every cp.async of this thread landed and is visible to wgmma, then the block's barrier.
__device__ __forceinline__ void tiles_ready() {
  cp_async_wait_all();
  fence_proxy_async_shared();
  __syncthreads();
}

// A tile of 64 rows in core order (the backward's tiles; the forward's are one or two of
// them); as a K-major operand (rows = M or N) or as an MN-major one (rows = K).
constexpr uint32_t kTileBytes = 64 * kD * 2;
constexpr int kTile = 64;
__device__ __forceinline__ uint64_t k_major(const __nv_bfloat16* tile) {
  return wgmma_descriptor(tile, kCoreBytes, kGroupBytes);
}
__device__ __forceinline__ uint64_t mn_major(const __nv_bfloat16* tile) {
  return wgmma_descriptor(tile, kGroupBytes, kCoreBytes);
}

// acc (64 x 64) = A B^T over the head dim, both K-major tiles.
__device__ __forceinline__ void product_abt(float (&acc)[8][4], uint64_t a, uint64_t b) {
  float(&d)[32] = reinterpret_cast<float(&)[32]>(acc);
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk)
    wgmma_m64n64k16_ss(d, wgmma_advance(a, kk * 2 * kCoreBytes),
                       wgmma_advance(b, kk * 2 * kCoreBytes), kk > 0);
}

// acc (64 x 64) += p (64 x 64 operand fragments) M, M an MN-major tile (rows are the K of this
// product).
__device__ __forceinline__ void product_pm(float (&acc)[8][4], const uint32_t (&p)[4][4],
                                           uint64_t m) {
  float(&d)[32] = reinterpret_cast<float(&)[32]>(acc);
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk)
    wgmma_m64n64k16_rs_mn(d, p[kk], wgmma_advance(m, kk * 2 * kGroupBytes), true);
}

// grid (ceil(N / 64), B * H), kThreads threads, smem_bytes<kKeys>() bytes of shared memory.
template <int kKeys>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int N, int H) {
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(dynamic_smem());
  __nv_bfloat16* Ks = Qs + kQBytes / 2;     // two buffers
  __nv_bfloat16* Vs = Ks + 2 * kKeys * kD;  // two buffers
  const int b = int(blockIdx.y) / H, h = int(blockIdx.y) % H;
  const int q0 = int(blockIdx.x) * kQueries;
  const int lane = int(threadIdx.x) % 32, row0 = (int(threadIdx.x) / 32) * 16;
  const int64_t stride = int64_t(3) * H * kD;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * kD;
  const __nv_bfloat16* kb = qb + H * kD;
  const __nv_bfloat16* vb = qb + 2 * H * kD;
  const float scale2 = rsqrtf(float(kD)) * mma::kLog2e;  // scores in log2 units
  constexpr int kTileElems = kKeys * kD;
  constexpr int kHalves = kKeys / 64;

  load_core_tile<kQueries>(Qs, qb, stride, q0, N);
  load_core_tile<kKeys>(Ks, kb, stride, 0, N);
  load_core_tile<kKeys>(Vs, vb, stride, 0, N);
  tiles_ready();
  const uint64_t q_desc = k_major(Qs);  // K = the head dim

  float o[kD / 8][4];
  mma::zero_fill(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows g and g + 8, as in mma::

  const int tiles = (N + kKeys - 1) / kKeys;
  for (int it = 0; it < tiles; ++it) {
    const int k0 = it * kKeys, buf = it % 2;
    if (it + 1 < tiles) {  // the next tile's buffers were last read before the previous barrier
      load_core_tile<kKeys>(Ks + (1 - buf) * kTileElems, kb, stride, k0 + kKeys, N);
      load_core_tile<kKeys>(Vs + (1 - buf) * kTileElems, vb, stride, k0 + kKeys, N);
    }
    const __nv_bfloat16* Kt = Ks + buf * kTileElems;
    const __nv_bfloat16* Vt = Vs + buf * kTileElems;
    // S, in halves of 64 keys.
    float s[8 * kHalves][4];
    wgmma_fence();
#pragma unroll
    for (int half = 0; half < kHalves; ++half)
      product_abt(reinterpret_cast<float(&)[8][4]>(s[8 * half]), q_desc,
                  k_major(Kt + half * kTile * kD));
    wgmma_commit_group();
    wgmma_wait_all();
    wgmma_fence_operand(reinterpret_cast<float(&)[32 * kHalves]>(s));

    mma::online_softmax<kD>(s, m, l, o, k0, N, scale2);
    uint32_t p[4 * kHalves][4];  // P rounded to bf16 for the product, as the portable kernel does
    mma::to_operand(p, s);

    // O += P V, in halves of 64 keys: V is MN-major (rows are keys, the K of this product).
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(o));
    wgmma_fence_operand(reinterpret_cast<uint32_t(&)[16 * kHalves]>(p));
    wgmma_fence();
#pragma unroll
    for (int half = 0; half < kHalves; ++half)
      product_pm(o, reinterpret_cast<const uint32_t(&)[4][4]>(p[4 * half]),
                 mn_major(Vt + half * kTile * kD));
    wgmma_commit_group();
    wgmma_wait_all();
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(o));
    tiles_ready();
  }

  // Rows past N (zero-filled queries) computed a uniform softmax: l > 0 everywhere; not stored.
  const float l_row[2] = {mma::quad_sum(l[0]), mma::quad_sum(l[1])};
  const float inv[2] = {1.f / l_row[0], 1.f / l_row[1]};
  mma::store_rows<kD>(out + int64_t(b) * N * H * kD + h * kD, int64_t(H) * kD, Qs, o, inv, row0, q0,
                      N);
  if (lane % 4 == 0) {
    float* lse_bh = lse + (int64_t(b) * H + h) * N;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int qr = q0 + row0 + lane / 4 + 8 * r;
      if (qr < N) lse_bh[qr] = (m[r] + log2f(l_row[r])) * mma::kLn2;
    }
  }
}

// The backward, as the portable kernels' (attention_mma.cuh: dK/dV over key blocks, dQ over
// query blocks, no atomics, so deterministic), one warpgroup per 64 rows and tiles of 64 on
// the other side; every product is one of the forward's two wgmma shapes:
//   dK/dV   S^T = K Q^T, dP^T = V dO^T     (ss: A = K or V, B = Q or dO, K-major over the head dim)
//           dV += P^T dO, dK += dS^T Q     (rs: A = P^T or dS^T from registers, B MN-major)
//   dQ      S = Q K^T, dP = dO V^T         (ss)
//           dQ += dS K                     (rs, B = K MN-major)
// Shared memory of both backward kernels: two tiles that stay (padded to store_rows's row
// order, which stages the outputs there), four double-buffered, and the dK/dV kernel's row
// statistics.
constexpr size_t kBackwardBytes =
    2 * mma::Tiles<kD>::kBytes + 4 * size_t(kTileBytes) + 4 * kTile * sizeof(float);

// grid (ceil(N / 64) key blocks, B * H), kThreads threads, kBackwardBytes bytes. dv_rows is
// rowsum(dO * O) per (b, h, query). Writes the k and v parts of dqkv for 64 keys.
__global__ void __launch_bounds__(kThreads)
    backward_dkdv_kernel(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                         const float* lse, const float* dv_rows, int N, int H) {
  constexpr int kElems = kTile * kD;
  unsigned char* smem = dynamic_smem();
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Vs = Ks + mma::Tiles<kD>::kBytes / 2;
  __nv_bfloat16* Qs = Vs + mma::Tiles<kD>::kBytes / 2;        // two buffers
  __nv_bfloat16* dOs = Qs + 2 * kElems;                       // two buffers
  float* lse_s = reinterpret_cast<float*>(dOs + 2 * kElems);  // two buffers, log2 units
  float* dv_s = lse_s + 2 * kTile;                            // two buffers
  const int b = int(blockIdx.y) / H, h = int(blockIdx.y) % H;
  const int k0 = int(blockIdx.x) * kTile;
  const int row0 = (int(threadIdx.x) / 32) * 16;
  const int64_t stride = int64_t(3) * H * kD, ostride = int64_t(H) * kD;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * kD;
  const __nv_bfloat16* dob = dout + int64_t(b) * N * ostride + h * kD;
  const float* lse_bh = lse + (int64_t(b) * H + h) * N;
  const float* dv_bh = dv_rows + (int64_t(b) * H + h) * N;
  const float scale = rsqrtf(float(kD)), scale2 = scale * mma::kLog2e;

  load_core_tile<kTile>(Ks, qb + H * kD, stride, k0, N);
  load_core_tile<kTile>(Vs, qb + 2 * H * kD, stride, k0, N);
  load_core_tile<kTile>(Qs, qb, stride, 0, N);
  load_core_tile<kTile>(dOs, dob, ostride, 0, N);
  mma::load_row_stats(lse_s, dv_s, lse_bh, dv_bh, 0, N);
  tiles_ready();

  float dk[8][4], dv[8][4];
  mma::zero_fill(dk);
  mma::zero_fill(dv);

  const int tiles = (N + kTile - 1) / kTile;
  for (int it = 0; it < tiles; ++it) {
    const int q0 = it * kTile, buf = it % 2;
    if (it + 1 < tiles) {
      load_core_tile<kTile>(Qs + (1 - buf) * kElems, qb, stride, q0 + kTile, N);
      load_core_tile<kTile>(dOs + (1 - buf) * kElems, dob, ostride, q0 + kTile, N);
      mma::load_row_stats(lse_s + (1 - buf) * kTile, dv_s + (1 - buf) * kTile, lse_bh, dv_bh,
                          q0 + kTile, N);
    }
    const __nv_bfloat16* Qt = Qs + buf * kElems;
    const __nv_bfloat16* dOt = dOs + buf * kElems;
    float st[8][4], dpt[8][4];  // S^T and dP^T: 64 keys x 64 queries
    wgmma_fence();
    product_abt(st, k_major(Ks), k_major(Qt));
    product_abt(dpt, k_major(Vs), k_major(dOt));
    wgmma_commit_group();
    wgmma_wait_all();
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(st));
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dpt));
    mma::transposed_gradients(st, dpt, lse_s + buf * kTile, dv_s + buf * kTile, q0, N, scale,
                              scale2);
    uint32_t pt[4][4], dst[4][4];
    mma::to_operand(pt, st);
    mma::to_operand(dst, dpt);
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dv));
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dk));
    wgmma_fence_operand(reinterpret_cast<uint32_t(&)[16]>(pt));
    wgmma_fence_operand(reinterpret_cast<uint32_t(&)[16]>(dst));
    wgmma_fence();
    product_pm(dv, pt, mn_major(dOt));
    product_pm(dk, dst, mn_major(Qt));
    wgmma_commit_group();
    wgmma_wait_all();
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dv));
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dk));
    tiles_ready();
  }

  const float one[2] = {1.f, 1.f};
  __nv_bfloat16* dqkv_b = dqkv + int64_t(b) * N * stride + h * kD;
  mma::store_rows<kD>(dqkv_b + H * kD, stride, Ks, dk, one, row0, k0, N);
  mma::store_rows<kD>(dqkv_b + 2 * H * kD, stride, Vs, dv, one, row0, k0, N);
}

// grid (ceil(N / 64) query blocks, B * H), kThreads threads, kBackwardBytes bytes. Writes the
// q part of dqkv for 64 queries.
__global__ void __launch_bounds__(kThreads)
    backward_dq_kernel(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                       const float* lse, const float* dv_rows, int N, int H) {
  constexpr int kElems = kTile * kD;
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(dynamic_smem());
  __nv_bfloat16* dOs = Qs + mma::Tiles<kD>::kBytes / 2;
  __nv_bfloat16* Ks = dOs + mma::Tiles<kD>::kBytes / 2;  // two buffers
  __nv_bfloat16* Vs = Ks + 2 * kElems;                   // two buffers
  const int b = int(blockIdx.y) / H, h = int(blockIdx.y) % H;
  const int q0 = int(blockIdx.x) * kTile;
  const int lane = int(threadIdx.x) % 32, row0 = (int(threadIdx.x) / 32) * 16;
  const int g = lane / 4;
  const int64_t stride = int64_t(3) * H * kD, ostride = int64_t(H) * kD;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * kD;
  const __nv_bfloat16* kb = qb + H * kD;
  const __nv_bfloat16* vb = qb + 2 * H * kD;
  const float scale = rsqrtf(float(kD)), scale2 = scale * mma::kLog2e;

  load_core_tile<kTile>(Qs, qb, stride, q0, N);
  load_core_tile<kTile>(dOs, dout + int64_t(b) * N * ostride + h * kD, ostride, q0, N);
  load_core_tile<kTile>(Ks, kb, stride, 0, N);
  load_core_tile<kTile>(Vs, vb, stride, 0, N);
  float lse2[2], dvr[2];
  mma::own_row_stats(lse2, dvr, lse, dv_rows, int64_t(b) * H + h, q0 + row0 + g, N);
  tiles_ready();

  float dq[8][4];
  mma::zero_fill(dq);

  const int tiles = (N + kTile - 1) / kTile;
  for (int it = 0; it < tiles; ++it) {
    const int k0 = it * kTile, buf = it % 2;
    if (it + 1 < tiles) {
      load_core_tile<kTile>(Ks + (1 - buf) * kElems, kb, stride, k0 + kTile, N);
      load_core_tile<kTile>(Vs + (1 - buf) * kElems, vb, stride, k0 + kTile, N);
    }
    const __nv_bfloat16* Kt = Ks + buf * kElems;
    float s[8][4], dp[8][4];
    wgmma_fence();
    product_abt(s, k_major(Qs), k_major(Kt));
    product_abt(dp, k_major(dOs), k_major(Vs + buf * kElems));
    wgmma_commit_group();
    wgmma_wait_all();
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(s));
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dp));
    mma::score_gradients(s, dp, lse2, dvr, k0, N, scale, scale2);
    uint32_t ds[4][4];
    mma::to_operand(ds, dp);
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dq));
    wgmma_fence_operand(reinterpret_cast<uint32_t(&)[16]>(ds));
    wgmma_fence();
    product_pm(dq, ds, mn_major(Kt));
    wgmma_commit_group();
    wgmma_wait_all();
    wgmma_fence_operand(reinterpret_cast<float(&)[32]>(dq));
    tiles_ready();
  }

  const float one[2] = {1.f, 1.f};
  mma::store_rows<kD>(dqkv + int64_t(b) * N * stride + h * kD, stride, Qs, dq, one, row0, q0, N);
}

}  // namespace attention_wgmma

// launchers

namespace {

template <int kKeys>
void forward_tiles(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N, int H,
                   cudaStream_t stream) {
  namespace w = attention_wgmma;
  constexpr size_t bytes = w::smem_bytes<kKeys>();
  CUDA_CHECK(cudaFuncSetAttribute(w::forward_kernel<kKeys>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  const dim3 grid((N + w::kQueries - 1) / w::kQueries, B * H);
  w::forward_kernel<kKeys><<<grid, w::kThreads, bytes, stream>>>(out, lse, qkv, N, H);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void attention_forward_sm90(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                            int H, cudaStream_t stream) {
  if (N <= 64) return forward_tiles<64>(out, lse, qkv, B, N, H, stream);
  forward_tiles<128>(out, lse, qkv, B, N, H, stream);
}

void attention_backward_sm90(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                             const __nv_bfloat16* qkv, const float* lse, const float* dv_rows,
                             int B, int N, int H, cudaStream_t stream) {
  namespace w = attention_wgmma;
  const dim3 grid((N + w::kTile - 1) / w::kTile, B * H);
  for (auto kernel : {w::backward_dkdv_kernel, w::backward_dq_kernel}) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(w::kBackwardBytes)));
    kernel<<<grid, w::kThreads, w::kBackwardBytes, stream>>>(dqkv, dout, qkv, lse, dv_rows, N, H);
    CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace dino::kernels::cuda
