// Reductions for the core ops (core/ops_reduce.cpp, detail::sum_to in ops_elementwise.cpp):
// the sum of all elements, the sum/mean/max of each row (the last dim), the broadcast back
// of a per-row gradient, and sum_to, which folds a broadcast gradient back onto its input's
// shape (the position-embedding gradient (1, N, D) from (B, N, D), a bias-like (1, C) from
// (R, C), a scalar-shaped (1) from anything).
//
// Every sum accumulates in f32 in a fixed order, with no float atomics, so the same input on
// the same device gives bit-identical results (ARCHITECTURE §6):
// - sum_all: P blocks (P from the element count and the SM count) each add a fixed,
//   strided slice per thread, reduce the block by a shuffle tree and write one partial; one
//   block then adds the P partials in block order (a two-pass reduction, ~P*4 bytes scratch).
// - reduce_rows: one warp per row (C < 1024) or one block per row (C >= 1024, few wide rows
//   such as 65536 logits), lanes striding the row, then a shuffle tree.
// - sum_to: the input is seen as kept dims x reduced dims (collapsed on the host). All
//   reduced: sum_all. Only the innermost dims reduced: reduce_rows. Otherwise a 32 x 8 block
//   owns 32 consecutive outputs (coalesced when the innermost dim is kept), its 8 thread rows
//   stride the reduced index space, and the 8 partials are added in row order.
//
// Bytes (minimum): every reduction reads its input once (2 or 4 B per element) and writes the
// (much smaller) output; expand_rows reads the per-row value and writes R*C elements. One add
// per element: memory-bound.
#include <cuda_bf16.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "kernels/broadcast.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;           // every 1-D block here; a multiple of 32
constexpr int kWideRow = 1024;          // rows at least this long get a block each
constexpr int kTileX = 32, kTileY = 8;  // sum_to's 2-D block

// The block's sum (or max) of v, valid in thread 0; the warps' results are combined in warp
// order. Every thread of the block must call it (it synchronises twice).
template <bool kMax>
__device__ float block_reduce(float v) {
  __shared__ float warp_part[32];
  v = kMax ? warp_max(v) : warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  float r = kMax ? -INFINITY : 0.f;
  if (threadIdx.x == 0) {
    const int warps = int(blockDim.x) / 32;
    for (int w = 0; w < warps; ++w) r = kMax ? fmaxf(r, warp_part[w]) : r + warp_part[w];
  }
  __syncthreads();  // warp_part may be written again by the caller's next call
  return r;
}

int sm_count() { return context().sm_count; }

}  // namespace

// kernels

// partials (gridDim.x) <- x (n)
template <class T>
__global__ void sum_partials_kernel(float* partials, const T* x, int64_t n) {
  float acc = 0.f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    acc += load_f(x, i);
  acc = block_reduce<false>(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// out (1) <- partials (P): one block
template <class To>
__global__ void sum_final_kernel(To* out, const float* partials, int P, float divisor) {
  float acc = 0.f;
  for (int i = threadIdx.x; i < P; i += blockDim.x) acc += partials[i];
  acc = block_reduce<false>(acc);
  if (threadIdx.x == 0) store_f(out, 0, acc / divisor);
}

// out (R) <- x (R, C), one warp per row
template <class T, bool kMax>
__global__ void reduce_rows_warp_kernel(T* out, const T* x, int64_t R, int64_t C, float divisor) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; r < R;
       r += warps) {  // r is the same for the 32 lanes of a warp
    const T* xr = x + r * C;
    float acc = kMax ? -INFINITY : 0.f;
    for (int64_t c = lane; c < C; c += 32) {
      const float v = load_f(xr, c);
      acc = kMax ? fmaxf(acc, v) : acc + v;
    }
    acc = kMax ? warp_max(acc) : warp_sum(acc);
    if (lane == 0) store_f(out, r, kMax ? acc : acc / divisor);
  }
}

// out (R) <- x (R, C), one block per row
template <class T, bool kMax>
__global__ void reduce_rows_block_kernel(T* out, const T* x, int64_t R, int64_t C, float divisor) {
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {  // uniform across the block
    const T* xr = x + r * C;
    float acc = kMax ? -INFINITY : 0.f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float v = load_f(xr, c);
      acc = kMax ? fmaxf(acc, v) : acc + v;
    }
    acc = block_reduce<kMax>(acc);
    if (threadIdx.x == 0) store_f(out, r, kMax ? acc : acc / divisor);
  }
}

// out (R, C) <- g (R): out[r, c] = g[r] * factor
template <class To, class Tg>
__global__ void expand_rows_kernel(To* out, const Tg* g, int64_t R, int64_t C, float factor) {
  const int64_t n = R * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store_f(out, i, load_f(g, i / C) * factor);
}

// out (M) <- g: out[m] = sum over l < L of g[offset(m, keep) + offset(l, red)].
// Block (32, 8): threadIdx.x picks the output in a tile of 32, threadIdx.y the reduced slice.
template <class T>
__global__ void sum_to_tile_kernel(T* out, const T* g, SumToGeom geom, int64_t M, int64_t L) {
  __shared__ float part[kTileY][kTileX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t tile = blockIdx.x; tile * kTileX < M; tile += gridDim.x) {  // uniform
    const int64_t m = tile * kTileX + tx;
    float acc = 0.f;
    if (m < M) {
      const int64_t base = offset_of(m, geom.keep);
      for (int64_t l = ty; l < L; l += kTileY) acc += load_f(g, base + offset_of(l, geom.red));
    }
    part[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && m < M) {
      float s = 0.f;
      for (int k = 0; k < kTileY; ++k) s += part[k][tx];
      store_f(out, m, s);
    }
    __syncthreads();
  }
}

// launchers

namespace {

template <class T>
void launch_sum_partials(float* partials, const void* x, int64_t n, int P, cudaStream_t stream) {
  sum_partials_kernel<<<P, kThreads, 0, stream>>>(partials, static_cast<const T*>(x), n);
  CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_reduce_rows(void* out, const void* x, int64_t R, int64_t C, RowReduce op, float divisor,
                        cudaStream_t stream) {
  T* o = static_cast<T*>(out);
  const T* xi = static_cast<const T*>(x);
  const bool max = op == RowReduce::max;
  const int64_t cap = int64_t(sm_count()) * 16;
  if (C >= kWideRow) {
    const int grid = int(std::max<int64_t>(1, std::min(R, cap)));
    if (max)
      reduce_rows_block_kernel<T, true><<<grid, kThreads, 0, stream>>>(o, xi, R, C, divisor);
    else
      reduce_rows_block_kernel<T, false><<<grid, kThreads, 0, stream>>>(o, xi, R, C, divisor);
  } else {
    const int64_t rows_per_block = kThreads / 32;
    const int grid =
        int(std::max<int64_t>(1, std::min((R + rows_per_block - 1) / rows_per_block, cap)));
    if (max)
      reduce_rows_warp_kernel<T, true><<<grid, kThreads, 0, stream>>>(o, xi, R, C, divisor);
    else
      reduce_rows_warp_kernel<T, false><<<grid, kThreads, 0, stream>>>(o, xi, R, C, divisor);
  }
  CUDA_CHECK(cudaGetLastError());
}

template <class To, class Tg>
void launch_expand_rows(void* out, const void* g, int64_t R, int64_t C, float factor,
                        cudaStream_t stream) {
  const int64_t n = R * C;
  const int grid =
      int(std::max<int64_t>(1, std::min((n + kThreads - 1) / kThreads, int64_t(sm_count()) * 16)));
  expand_rows_kernel<<<grid, kThreads, 0, stream>>>(static_cast<To*>(out),
                                                    static_cast<const Tg*>(g), R, C, factor);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void sum_all(void* out, bool out_bf16, const void* x, bool x_bf16, int64_t n, float divisor,
             cudaStream_t stream) {
  // A fixed number of blocks for a given n on a given device: the summation order is fixed.
  const int64_t cap = int64_t(sm_count()) * 4;
  const int P = int(std::max<int64_t>(1, std::min((n + kThreads - 1) / kThreads, cap)));
  float* partials = static_cast<float*>(scratch_alloc(size_t(P) * sizeof(float), stream));
  if (x_bf16)
    launch_sum_partials<__nv_bfloat16>(partials, x, n, P, stream);
  else
    launch_sum_partials<float>(partials, x, n, P, stream);
  if (out_bf16)
    sum_final_kernel<<<1, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(out), partials, P,
                                                 divisor);
  else
    sum_final_kernel<<<1, kThreads, 0, stream>>>(static_cast<float*>(out), partials, P, divisor);
  CUDA_CHECK(cudaGetLastError());
  scratch_free(partials, stream);
}

void reduce_rows(void* out, const void* x, bool bf16, int64_t R, int64_t C, RowReduce op,
                 float divisor, cudaStream_t stream) {
  if (R <= 0) return;
  if (bf16)
    launch_reduce_rows<__nv_bfloat16>(out, x, R, C, op, divisor, stream);
  else
    launch_reduce_rows<float>(out, x, R, C, op, divisor, stream);
}

void expand_rows(void* out, bool out_bf16, const void* g, bool g_bf16, int64_t R, int64_t C,
                 float factor, cudaStream_t stream) {
  if (R <= 0 || C <= 0) return;
  if (out_bf16) {
    if (g_bf16)
      launch_expand_rows<__nv_bfloat16, __nv_bfloat16>(out, g, R, C, factor, stream);
    else
      launch_expand_rows<__nv_bfloat16, float>(out, g, R, C, factor, stream);
  } else {
    if (g_bf16)
      launch_expand_rows<float, __nv_bfloat16>(out, g, R, C, factor, stream);
    else
      launch_expand_rows<float, float>(out, g, R, C, factor, stream);
  }
}

void sum_to_shape(void* out, const void* g, bool bf16, const SumToGeom& geom, cudaStream_t stream) {
  int64_t M = 1, L = 1;
  for (int k = 0; k < geom.keep.nd; ++k) M *= geom.keep.size[k];
  for (int k = 0; k < geom.red.nd; ++k) L *= geom.red.size[k];
  if (M <= 0) return;
  if (geom.keep.nd == 0)  // everything reduced: g is L contiguous elements
    return sum_all(out, bf16, g, bf16, L, 1.f, stream);
  if (geom.red.nd == 1 && geom.red.stride[0] == 1)  // only the innermost dims: rows (M, L)
    return reduce_rows(out, g, bf16, M, L, RowReduce::sum, 1.f, stream);
  const int64_t tiles = (M + kTileX - 1) / kTileX;
  const int grid = int(std::max<int64_t>(1, std::min(tiles, int64_t(sm_count()) * 8)));
  const dim3 block(kTileX, kTileY);
  if (bf16)
    sum_to_tile_kernel<<<grid, block, 0, stream>>>(
        static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(g), geom, M, L);
  else
    sum_to_tile_kernel<<<grid, block, 0, stream>>>(static_cast<float*>(out),
                                                   static_cast<const float*>(g), geom, M, L);
  CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::sum_to(const Tensor& out, const Tensor& g) const {
  const Shape& so = g.shape();
  const Shape& shape = out.shape();
  const int nd = int(so.size());
  const size_t off = so.size() - shape.size();
  std::array<int64_t, kMaxDims> gstride{};
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; --d) {
    gstride[size_t(d)] = s;
    s *= so[size_t(d)];
  }
  SumToGeom geom;
  int prev = -1;  // kind of the last non-1 dim: 0 kept, 1 reduced
  for (int d = 0; d < nd; ++d) {
    const int64_t n = so[size_t(d)];
    const int64_t t = size_t(d) < off ? 1 : shape[size_t(d) - off];
    if (n == 1) continue;
    const int kind = t == 1 ? 1 : 0;
    StridedDims& sd = kind ? geom.red : geom.keep;
    if (kind == prev) {  // contiguous g: the outer dim's stride is inner stride x inner size
      sd.size[sd.nd - 1] *= n;
      sd.stride[sd.nd - 1] = gstride[size_t(d)];
    } else {
      sd.size[sd.nd] = n;
      sd.stride[sd.nd] = gstride[size_t(d)];
      ++sd.nd;
    }
    prev = kind;
  }
  if (geom.red.nd == 0) {  // only size-1 dims summed: the same elements
    copy_d2d(out.raw_data(), g.raw_data(), out.nbytes());
    return;
  }
  sum_to_shape(out.raw_data(), g.raw_data(), is_bf16(g), geom, op_stream());
}

void CudaBackend::sum_all(const Tensor& out, const Tensor& x, double divisor) const {
  cuda::sum_all(out.raw_data(), is_bf16(out), x.raw_data(), is_bf16(x), x.numel(), float(divisor),
                op_stream());
}

void CudaBackend::reduce_rows(const Tensor& out, const Tensor& x, RowReduce op,
                              double divisor) const {
  const int64_t C = x.dim() ? x.size(-1) : 1, R = C ? x.numel() / C : 0;
  cuda::reduce_rows(out.raw_data(), x.raw_data(), is_bf16(x), R, C, op, float(divisor),
                    op_stream());
}

void CudaBackend::expand_rows(const Tensor& out, const Tensor& g, double factor) const {
  const int64_t R = g.numel(), C = R ? out.numel() / R : 0;
  cuda::expand_rows(out.raw_data(), is_bf16(out), g.raw_data(), is_bf16(g), R, C, float(factor),
                    op_stream());
}

}  // namespace dino::kernels::cuda
