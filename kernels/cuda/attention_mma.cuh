#pragma once
// Flash attention kernels on mma.sync (m16n8k16, bf16 in, f32 accumulate), FlashAttention-2
// style: scores, probabilities and accumulators stay in registers; only the bf16 Q/K/V/dO
// tiles go through shared memory (cp.async, double-buffered, read with ldmatrix).
//
// Include after the primitives (kernels/cuda/mma_sm80.cuh).
//
// Layout: packed qkv (B, N, 3*H*Dh) bf16 (timm: q, k, v along the last dim, each (H, Dh)
// head-major), out (B, N, H*Dh) bf16, lse (B, H, N) f32, scale 1/sqrt(Dh).
// Blocks of 4 warps own 64 rows (keys in the dK/dV kernel, queries in the dQ kernel; 16 per
// warp) or, in the forward, 128 queries (32 per warp, Q in registers) for head dims up to 64,
// and loop over the other side in tiles of 64.
//
// Every product is one of two warp-level shapes (warp_abt, warp_pm below):
//   forward     S = Q K^T,  O += P V                     (P from S's registers)
//   dK/dV       S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q
//   dQ          S = Q K^T,  dP = dO V^T,   dQ += dS K
// Working on S^T in the dK/dV kernel makes each warp's rows its own keys, so the probabilities
// never leave registers there either. dQ gets its own kernel instead of f32 atomics so that
// the summation order is fixed (deterministic gradients), at the price of recomputing S and dP
// (7 tile products per tile pair instead of 5).
// FLOPs: forward 4*B*H*N^2*Dh, backward 14*B*H*N^2*Dh as written.
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace dino::kernels::cuda::attention_mma {

constexpr int kTile = 64;  // rows per block and per step of the loop
constexpr int kWarps = 4;  // 16 rows each
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Shared-memory tiles for head dim D: 64 rows of D bf16, row stride D + 8 elements, so the
// eight 16-byte rows an ldmatrix reads fall in eight different bank groups.
template <int D>
struct Tiles {
  static_assert(D % 16 == 0, "head dim must be a multiple of 16");
  static constexpr int kLd = D + 8;
  static constexpr int kElems = kTile * kLd;
  static constexpr size_t kBytes = size_t(kElems) * 2;  // a multiple of 128
  // The forward gives each warp two 16-row m-tiles where the registers allow (D <= 64): every
  // K and V fragment read from shared memory then feeds two mma instead of one, which the
  // ratio of shared-memory bandwidth to tensor throughput needs (see warp_abt).
  static constexpr int kForwardMTiles = D <= 64 ? 2 : 1;
  // Except for short sequences at D = 64 (the ViT-S head dim; 197 and 37 tokens): one m-tile
  // per warp, 64-row blocks. Twice the blocks per head, and fewer registers (Q's fragments
  // and accumulators halve) so that more blocks share an SM and hide each other's tile loads,
  // which is what a 4-tile loop cannot do for itself.
  static constexpr int kShortSequence = 256;
  static constexpr int forward_m_tiles(int N) {
    return D == 64 && N <= kShortSequence ? 1 : kForwardMTiles;
  }
  // Q stays in registers where ptxas then still keeps everything in registers (D = 64: 243
  // registers, no spills, the same 2 blocks per SM); at D = 32 and 128 it spills, so there Q
  // is re-read from shared memory.
  static constexpr bool kForwardQInRegisters = D == 64;
  template <int MT>
  static constexpr size_t forward_bytes() {
    return size_t(kWarps * 16 * MT) * kLd * 2 + 4 * kBytes;
  }  // Q, K x2, V x2
  // The dQ kernel's own rows of Q and dO are the same for its whole loop: in registers at
  // D = 64 (165 registers instead of 160, still 3 blocks per SM). Elsewhere, and for K and V
  // in the dK/dV kernel (166 -> 230 registers, 3 -> 2 blocks per SM), occupancy would drop.
  static constexpr bool kDqRowsInRegisters = D == 64;
  static constexpr size_t kDq = 6 * kBytes;                                // Q, dO, K x2, V x2
  static constexpr size_t kDkDv = 6 * kBytes + 4 * kTile * sizeof(float);  // K, V, Q x2, dO x2,
                                                                           // lse x2, Dv x2
};

// Issues the copy of rows [n0, n0 + kRows) of one head (row stride `stride` elements) into a
// tile; rows >= N are zero-filled.
template <int D, int kRows = kTile>
__device__ __forceinline__ void load_tile_async(__nv_bfloat16* tile, const __nv_bfloat16* base,
                                                int64_t stride, int n0, int N) {
  constexpr int kVecs = D / 8;
  for (int i = int(threadIdx.x); i < kRows * kVecs; i += kThreads) {
    const int r = i / kVecs, c = (i % kVecs) * 8;
    const bool valid = n0 + r < N;
    cp_async_16(tile + r * Tiles<D>::kLd + c, valid ? base + int64_t(n0 + r) * stride + c : base,
                valid);
  }
}

// Zeroes a register array of any shape (the accumulators).
__device__ __forceinline__ void zero_fill(float& x) { x = 0.f; }
template <class T, int N>
__device__ __forceinline__ void zero_fill(T (&a)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) zero_fill(a[i]);
}

// The warp's left operand: fragment (mt, kk) covers its rows 16mt..16mt+15 and columns
// 16kk..16kk+15 (matrices: rows 0-7 / 8-15 x columns 0-7, then the same for columns 8-15).
// SharedRows reads it from a shared-memory tile each time; RegisterRows keeps it in registers.
template <int D>
struct SharedRows {
  const __nv_bfloat16* rows;  // the warp's first row
  __device__ __forceinline__ explicit SharedRows(const __nv_bfloat16* first_row)
      : rows(first_row) {}
  __device__ __forceinline__ void operator()(int mt, int kk, uint32_t (&f)[4]) const {
    const int lane = int(threadIdx.x) % 32;
    ldmatrix_x4(f, rows + (mt * 16 + lane % 16) * Tiles<D>::kLd + kk * 16 + (lane / 16) * 8);
  }
};
template <int D, int MT>
struct RegisterRows {
  uint32_t f[MT][D / 16][4];
  __device__ __forceinline__ explicit RegisterRows(const __nv_bfloat16* first_row) {
    const SharedRows<D> rows(first_row);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) rows(mt, kk, f[mt][kk]);
  }
  __device__ __forceinline__ void operator()(int mt, int kk, uint32_t (&out)[4]) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = f[mt][kk][i];
  }
};

// s[mt] (16 x 64) = the warp's m-tile mt of A (D wide) times B^T (64 rows of shared memory, D
// wide); s[mt][j] is the m16n8 accumulator of columns 8j..8j+7. Only B's first b_rows rows
// are valid: column groups of 16 beyond them are left at 0 without being computed (a tail
// tile, and all of a short sequence such as 37 tokens, then costs 48 columns instead of 64).
// Bytes per FLOP: one 512-byte ldmatrix of B feeds 2 * MT mma of 4096 FLOPs; an H100 SM
// sub-partition does about 1024 FLOP and reads about 32 bytes of shared memory per clock, so
// MT = 2 with A in registers is the first shape that is not shared-memory bound.
template <int D, int MT, class ARows>
__device__ __forceinline__ void warp_abt(float (&s)[MT][8][4], const ARows& A,
                                         const __nv_bfloat16* B, int b_rows) {
  constexpr int kLd = Tiles<D>::kLd;
  const int lane = int(threadIdx.x) % 32;
  zero_fill(s);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) A(mt, kk, a[mt]);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (16 * j >= b_rows) break;  // the same for the whole warp
      // B rows 16j..16j+15: (rows 0-7, cols 0-7), (rows 0-7, cols 8-15), then rows 8-15.
      uint32_t b[4];
      ldmatrix_x4(b,
                  B + (j * 16 + (lane / 16) * 8 + lane % 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_bf16_16816(s[mt][2 * j], a[mt], b[0], b[1]);
        mma_bf16_16816(s[mt][2 * j + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// The 16 x 8J accumulators of warp_abt (J = 8) or of a wgmma (J = 8 per 64 columns) as bf16
// A fragments of a 16 x 8J left operand: the m16n8 accumulator layout is the m16k16 operand
// layout, two column blocks at a time.
template <int J>
__device__ __forceinline__ void to_operand(uint32_t (&p)[J / 2][4], const float (&s)[J][4]) {
#pragma unroll
  for (int kk = 0; kk < J / 2; ++kk) {
    p[kk][0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
    p[kk][1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
    p[kk][2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    p[kk][3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

// o[mt] (16 x D) += p[mt] (16 x 64, operand fragments) times M (64 rows x D, shared memory),
// skipping the 16-row steps of M at or beyond m_rows (p is 0 there).
template <int D, int MT>
__device__ __forceinline__ void warp_pm(float (&o)[MT][D / 8][4], const uint32_t (&p)[MT][4][4],
                                        const __nv_bfloat16* M, int m_rows) {
  constexpr int kLd = Tiles<D>::kLd;
  const int lane = int(threadIdx.x) % 32;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk >= m_rows) break;  // the same for the whole warp
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      // M rows 16kk..16kk+15, columns 16j..16j+15, transposed: (rows 0-7, cols 0-7),
      // (rows 8-15, cols 0-7), then the same for cols 8-15.
      uint32_t b[4];
      ldmatrix_x4_trans(
          b, M + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kLd + j * 16 + (lane / 16) * 8);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_bf16_16816(o[mt][2 * j], p[mt][kk], b[0], b[1]);
        mma_bf16_16816(o[mt][2 * j + 1], p[mt][kk], b[2], b[3]);
      }
    }
  }
}

// Max and sum over the 4 lanes that share a row of an m16n8 accumulator.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Writes the warp's 16 x D accumulators times row_mul[0] (row g) / row_mul[1] (row g + 8) as
// bf16 to rows n0 + row0 .. of `base` (row stride `stride`), skipping rows >= N. Goes through
// the warp's own 16 rows of `stage` (a tile only this warp reads) for 16-byte stores.
template <int D>
__device__ __forceinline__ void store_rows(__nv_bfloat16* base, int64_t stride,
                                           __nv_bfloat16* stage, const float (&o)[D / 8][4],
                                           const float (&row_mul)[2], int row0, int n0, int N) {
  constexpr int kLd = Tiles<D>::kLd;
  const int lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
  __syncwarp();
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    *reinterpret_cast<uint32_t*>(stage + (row0 + g) * kLd + j * 8 + 2 * t) =
        pack_bf16x2(o[j][0] * row_mul[0], o[j][1] * row_mul[0]);
    *reinterpret_cast<uint32_t*>(stage + (row0 + g + 8) * kLd + j * 8 + 2 * t) =
        pack_bf16x2(o[j][2] * row_mul[1], o[j][3] * row_mul[1]);
  }
  __syncwarp();
  for (int i = lane; i < 16 * (D / 8); i += 32) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8;
    if (n0 + row0 + r < N)
      *reinterpret_cast<uint4*>(base + int64_t(n0 + row0 + r) * stride + c) =
          *reinterpret_cast<const uint4*>(stage + (row0 + r) * kLd + c);
  }
}

// Row statistics of query tile q0 (lse in log2 units, Dv = rowsum(dO * O)) into a dK/dV
// block's shared buffers of kTile, 0 past N (plain stores: visible after the block's barrier).
__device__ __forceinline__ void load_row_stats(float* lse_s, float* dv_s, const float* lse_bh,
                                               const float* dv_bh, int q0, int N) {
  for (int i = int(threadIdx.x); i < kTile; i += kThreads) {
    const bool valid = q0 + i < N;
    lse_s[i] = valid ? lse_bh[q0 + i] * kLog2e : 0.f;
    dv_s[i] = valid ? dv_bh[q0 + i] : 0.f;
  }
}

// A dK/dV block's S^T and dP^T (16 keys x 64 queries q0.., accumulator layout) into P^T and
// dS^T: P = exp2(S scale2 - lse), dS = P (dP - Dv) scale, 0 for queries at or past N.
__device__ __forceinline__ void transposed_gradients(float (&st)[8][4], float (&dpt)[8][4],
                                                     const float* lse_s, const float* dv_s, int q0,
                                                     int N, float scale, float scale2) {
  const int t = int(threadIdx.x) % 4;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int q = j * 8 + 2 * t + e % 2;
      const float p = q0 + q < N ? exp2f(st[j][e] * scale2 - lse_s[q]) : 0.f;
      st[j][e] = p;
      dpt[j][e] = p * (dpt[j][e] - dv_s[q]) * scale;
    }
}

// A dQ block's rows g and g + 8 (query q, q + 8 of this lane): lse (log2 units) and Dv.
__device__ __forceinline__ void own_row_stats(float (&lse2)[2], float (&dvr)[2], const float* lse,
                                              const float* dv_rows, int64_t bh, int q, int N) {
  for (int r = 0; r < 2; ++r) {
    const int64_t i = bh * N + q + 8 * r;
    lse2[r] = q + 8 * r < N ? lse[i] * kLog2e : 0.f;
    dvr[r] = q + 8 * r < N ? dv_rows[i] : 0.f;
  }
}

// A dQ block's S and dP (16 queries x 64 keys k0.., accumulator layout) into dS in dp:
// P = exp2(S scale2 - lse), dS = P (dP - Dv) scale, 0 for keys at or past N.
__device__ __forceinline__ void score_gradients(const float (&s)[8][4], float (&dp)[8][4],
                                                const float (&lse2)[2], const float (&dvr)[2],
                                                int k0, int N, float scale, float scale2) {
  const int t = int(threadIdx.x) % 4;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e / 2;
      const float p = k0 + j * 8 + 2 * t + e % 2 < N ? exp2f(s[j][e] * scale2 - lse2[r]) : 0.f;
      dp[j][e] = p * (dp[j][e] - dvr[r]) * scale;
    }
}

// kernels

// One step of the online softmax for the 16 rows of one m-tile: scales the scores s (raw
// dot products of key columns k0..k0+8J-1) into log2 units, masks the keys at or past N,
// updates the running max m and this lane's share of the sum l for rows g and g + 8,
// rescales the accumulator o, and leaves the probabilities in s.
template <int D, int J>
__device__ __forceinline__ void online_softmax(float (&s)[J][4], float (&m)[2], float (&l)[2],
                                               float (&o)[D / 8][4], int k0, int N, float scale2) {
  const int t = int(threadIdx.x) % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
      for (int e = 2 * r; e < 2 * r + 2; ++e) {
        const bool valid = k0 + j * 8 + 2 * t + e % 2 < N;
        s[j][e] = valid ? s[j][e] * scale2 : -INFINITY;
        mx = fmaxf(mx, s[j][e]);
      }
    const float m_new = fmaxf(m[r], quad_max(mx));  // finite: every tile has a valid key
    const float alpha = exp2f(m[r] - m_new);
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
      for (int e = 2 * r; e < 2 * r + 2; ++e) {
        s[j][e] = exp2f(s[j][e] - m_new);
        sum += s[j][e];
      }
    l[r] = l[r] * alpha + sum;
    m[r] = m_new;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][2 * r] *= alpha;
      o[j][2 * r + 1] *= alpha;
    }
  }
}

// grid (ceil(N / (64 MT)), B * H), kThreads threads, Tiles<D>::forward_bytes<MT>() bytes of
// shared memory. Each warp owns 16 * MT consecutive queries.
template <int D, int MT>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int N, int H) {
  using T = Tiles<D>;
  constexpr int kRows = kWarps * 16 * MT;
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(dynamic_smem());
  __nv_bfloat16* Ks = Qs + kRows * T::kLd;  // two buffers
  __nv_bfloat16* Vs = Ks + 2 * T::kElems;   // two buffers
  const int b = int(blockIdx.y) / H, h = int(blockIdx.y) % H;
  const int q0 = int(blockIdx.x) * kRows;
  const int lane = int(threadIdx.x) % 32, row0 = (int(threadIdx.x) / 32) * 16 * MT;
  const int64_t stride = int64_t(3) * H * D;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * D;
  const __nv_bfloat16* kb = qb + H * D;
  const __nv_bfloat16* vb = qb + 2 * H * D;
  const float scale2 = rsqrtf(float(D)) * kLog2e;  // scores in log2 units

  load_tile_async<D, kRows>(Qs, qb, stride, q0, N);
  load_tile_async<D>(Ks, kb, stride, 0, N);
  load_tile_async<D>(Vs, vb, stride, 0, N);
  cp_async_wait_all();
  __syncthreads();
  using QRows = std::conditional_t<T::kForwardQInRegisters, RegisterRows<D, MT>, SharedRows<D>>;
  const QRows q(Qs + row0 * T::kLd);

  float o[MT][D / 8][4];
  zero_fill(o);
  // Rows g and g + 8 of each m-tile: running max (log2 units) and this lane's share of the sum.
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;

  const int tiles = (N + kTile - 1) / kTile;
  for (int it = 0; it < tiles; ++it) {
    const int k0 = it * kTile, buf = it % 2;
    if (it + 1 < tiles) {  // the next tile's buffer was last read before the previous sync
      load_tile_async<D>(Ks + (1 - buf) * T::kElems, kb, stride, k0 + kTile, N);
      load_tile_async<D>(Vs + (1 - buf) * T::kElems, vb, stride, k0 + kTile, N);
    }
    // A warp whose queries are all at or past N has nothing to compute (it still loads and
    // syncs); N - k0 keys of this tile are valid.
    if (q0 + row0 < N) {
      float s[MT][8][4];
      warp_abt<D, MT>(s, q, Ks + buf * T::kElems, N - k0);
      uint32_t p[MT][4][4];  // P rounded to bf16 for the product, as FlashAttention does
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        online_softmax<D>(s[mt], m[mt], l[mt], o[mt], k0, N, scale2);
        to_operand(p[mt], s[mt]);
      }
      warp_pm<D, MT>(o, p, Vs + buf * T::kElems, N - k0);
    }
    cp_async_wait_all();
    __syncthreads();
  }

  // The warp's own rows of Qs (its Q is in registers) stage the output.
  float* lse_bh = lse + (int64_t(b) * H + h) * N;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const float l_row[2] = {quad_sum(l[mt][0]), quad_sum(l[mt][1])};
    // l is 0 only in a warp that computed nothing (rows past N, not stored).
    const float inv[2] = {l_row[0] > 0.f ? 1.f / l_row[0] : 0.f,
                          l_row[1] > 0.f ? 1.f / l_row[1] : 0.f};
    store_rows<D>(out + int64_t(b) * N * H * D + h * D, int64_t(H) * D, Qs, o[mt], inv,
                  row0 + 16 * mt, q0, N);
    if (lane % 4 == 0)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int qr = q0 + row0 + 16 * mt + lane / 4 + 8 * r;
        if (qr < N) lse_bh[qr] = (m[mt][r] + log2f(l_row[r])) * kLn2;
      }
  }
}

// grid (ceil(N / 64) key tiles, B * H), kThreads threads, Tiles<D>::kDkDv bytes. dv_rows is
// rowsum(dO * O) per (b, h, query). Writes the k and v parts of dqkv for 64 keys.
template <int D>
__global__ void __launch_bounds__(kThreads)
    backward_dkdv_kernel(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                         const float* lse, const float* dv_rows, int N, int H) {
  using T = Tiles<D>;
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(dynamic_smem());
  __nv_bfloat16* Vs = Ks + T::kElems;
  __nv_bfloat16* Qs = Vs + T::kElems;                            // two buffers
  __nv_bfloat16* dOs = Qs + 2 * T::kElems;                       // two buffers
  float* lse_s = reinterpret_cast<float*>(dOs + 2 * T::kElems);  // two buffers, log2 units
  float* dv_s = lse_s + 2 * kTile;                               // two buffers
  const int b = int(blockIdx.y) / H, h = int(blockIdx.y) % H;
  const int k0 = int(blockIdx.x) * kTile;
  const int row0 = (int(threadIdx.x) / 32) * 16;
  const int64_t stride = int64_t(3) * H * D, ostride = int64_t(H) * D;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * D;
  const __nv_bfloat16* dob = dout + int64_t(b) * N * ostride + h * D;
  const float* lse_bh = lse + (int64_t(b) * H + h) * N;
  const float* dv_bh = dv_rows + (int64_t(b) * H + h) * N;
  const float scale = rsqrtf(float(D)), scale2 = scale * kLog2e;

  load_tile_async<D>(Ks, qb + H * D, stride, k0, N);
  load_tile_async<D>(Vs, qb + 2 * H * D, stride, k0, N);
  load_tile_async<D>(Qs, qb, stride, 0, N);
  load_tile_async<D>(dOs, dob, ostride, 0, N);
  load_row_stats(lse_s, dv_s, lse_bh, dv_bh, 0, N);
  cp_async_wait_all();
  __syncthreads();
  const SharedRows<D> k_rows(Ks + row0 * T::kLd), v_rows(Vs + row0 * T::kLd);

  float dk[1][D / 8][4], dv[1][D / 8][4];
  zero_fill(dk);
  zero_fill(dv);

  const int tiles = (N + kTile - 1) / kTile;
  for (int it = 0; it < tiles; ++it) {
    const int q0 = it * kTile, buf = it % 2;
    if (it + 1 < tiles) {
      load_tile_async<D>(Qs + (1 - buf) * T::kElems, qb, stride, q0 + kTile, N);
      load_tile_async<D>(dOs + (1 - buf) * T::kElems, dob, ostride, q0 + kTile, N);
      load_row_stats(lse_s + (1 - buf) * kTile, dv_s + (1 - buf) * kTile, lse_bh, dv_bh, q0 + kTile,
                     N);
    }
    const __nv_bfloat16* Qt = Qs + buf * T::kElems;
    const __nv_bfloat16* dOt = dOs + buf * T::kElems;
    if (k0 + row0 < N) {  // the warp has keys before N; N - q0 queries of this tile are valid
      float st[1][8][4], dpt[1][8][4];  // S^T and dP^T: the warp's 16 keys x 64 queries
      warp_abt<D, 1>(st, k_rows, Qt, N - q0);
      warp_abt<D, 1>(dpt, v_rows, dOt, N - q0);
      transposed_gradients(st[0], dpt[0], lse_s + buf * kTile, dv_s + buf * kTile, q0, N, scale,
                           scale2);
      uint32_t pt[1][4][4], dst[1][4][4];
      to_operand(pt[0], st[0]);
      to_operand(dst[0], dpt[0]);
      warp_pm<D, 1>(dv, pt, dOt, N - q0);
      warp_pm<D, 1>(dk, dst, Qt, N - q0);
    }
    cp_async_wait_all();
    __syncthreads();
  }

  const float one[2] = {1.f, 1.f};
  __nv_bfloat16* dqkv_b = dqkv + int64_t(b) * N * stride + h * D;
  store_rows<D>(dqkv_b + H * D, stride, Ks, dk[0], one, row0, k0, N);
  store_rows<D>(dqkv_b + 2 * H * D, stride, Vs, dv[0], one, row0, k0, N);
}

// grid (ceil(N / 64) query tiles, B * H), kThreads threads, Tiles<D>::kDq bytes. Writes the
// q part of dqkv for 64 queries.
template <int D>
__global__ void __launch_bounds__(kThreads)
    backward_dq_kernel(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                       const float* lse, const float* dv_rows, int N, int H) {
  using T = Tiles<D>;
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(dynamic_smem());
  __nv_bfloat16* dOs = Qs + T::kElems;
  __nv_bfloat16* Ks = dOs + T::kElems;     // two buffers
  __nv_bfloat16* Vs = Ks + 2 * T::kElems;  // two buffers
  const int b = int(blockIdx.y) / H, h = int(blockIdx.y) % H;
  const int q0 = int(blockIdx.x) * kTile;
  const int lane = int(threadIdx.x) % 32, row0 = (int(threadIdx.x) / 32) * 16;
  const int g = lane / 4;
  const int64_t stride = int64_t(3) * H * D, ostride = int64_t(H) * D;
  const __nv_bfloat16* qb = qkv + int64_t(b) * N * stride + h * D;
  const __nv_bfloat16* kb = qb + H * D;
  const __nv_bfloat16* vb = qb + 2 * H * D;
  const float scale = rsqrtf(float(D)), scale2 = scale * kLog2e;

  load_tile_async<D>(Qs, qb, stride, q0, N);
  load_tile_async<D>(dOs, dout + int64_t(b) * N * ostride + h * D, ostride, q0, N);
  load_tile_async<D>(Ks, kb, stride, 0, N);
  load_tile_async<D>(Vs, vb, stride, 0, N);
  float lse2[2], dvr[2];
  own_row_stats(lse2, dvr, lse, dv_rows, int64_t(b) * H + h, q0 + row0 + g, N);
  cp_async_wait_all();
  __syncthreads();
  using OwnRows = std::conditional_t<T::kDqRowsInRegisters, RegisterRows<D, 1>, SharedRows<D>>;
  const OwnRows q_rows(Qs + row0 * T::kLd), do_rows(dOs + row0 * T::kLd);

  float dq[1][D / 8][4];
  zero_fill(dq);

  const int tiles = (N + kTile - 1) / kTile;
  for (int it = 0; it < tiles; ++it) {
    const int k0 = it * kTile, buf = it % 2;
    if (it + 1 < tiles) {
      load_tile_async<D>(Ks + (1 - buf) * T::kElems, kb, stride, k0 + kTile, N);
      load_tile_async<D>(Vs + (1 - buf) * T::kElems, vb, stride, k0 + kTile, N);
    }
    if (q0 + row0 < N) {  // the warp has queries before N; N - k0 keys of this tile are valid
      const __nv_bfloat16* Kt = Ks + buf * T::kElems;
      float s[1][8][4], dp[1][8][4];
      warp_abt<D, 1>(s, q_rows, Kt, N - k0);
      warp_abt<D, 1>(dp, do_rows, Vs + buf * T::kElems, N - k0);
      score_gradients(s[0], dp[0], lse2, dvr, k0, N, scale, scale2);
      uint32_t ds[1][4][4];
      to_operand(ds[0], dp[0]);
      warp_pm<D, 1>(dq, ds, Kt, N - k0);
    }
    cp_async_wait_all();
    __syncthreads();
  }

  const float one[2] = {1.f, 1.f};
  store_rows<D>(dqkv + int64_t(b) * N * stride + h * D, stride, Qs, dq[0], one, row0, q0, N);
}

}  // namespace dino::kernels::cuda::attention_mma
