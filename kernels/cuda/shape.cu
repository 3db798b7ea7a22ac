// Data movement for the core ops (core/ops_shape.cpp): permute (tensors stay contiguous, so a
// permute is a copy), and the ViT's two [CLS]-token ops, prepend_token and select_token,
// forward and backward. Elements are moved as raw 2- or 4-byte words (bf16, f32, i32), so one
// instantiation serves every dtype of that size; only the token gradient adds (f32 math).
//
// Shape: permute collapses the permutation on the host first (size-1 dims dropped, input dims
// that stay adjacent and in order merged), so e.g. (B, H, N, D) -> (B, N, H, D) becomes a
// 4-dim gather with a contiguous inner run, and a swap of the last two dims becomes a batched
// transpose through a 32 x 33 shared-memory tile (reads and writes both coalesced). The rest
// is a grid-stride gather over the output (coalesced writes), 64-bit indices.
//
// Bytes (minimum): permute reads and writes each element once (2 x 2..4 B); prepend_token
// reads x and the token and writes B*(N+1)*D elements; its backward reads dout once and
// writes dx and the token gradient (B*D adds, in batch order); select_token reads and writes
// B*D elements, its backward writes the whole (B, N, D) gradient (zeros but the token).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTile = 32, kTileRows = 8;  // transpose: 32 x 32 tile, 32 x 8 threads

int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(context().sm_count) * 16;
  return int(std::max<int64_t>(1, std::min(blocks, cap)));
}

}  // namespace

// kernels

// out (n) <- x: out[i] = x[offset_of(i, g)] (g: the output's sizes, the input's strides)
template <class E>
__global__ void permute_gather_kernel(E* out, const E* x, StridedDims g, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[offset_of(i, g)];
}

// out (batch, cols, rows) <- x (batch, rows, cols). Block (32, 8) moves one 32 x 32 tile.
template <class E>
__global__ void transpose_kernel(E* out, const E* x, int64_t batch, int64_t rows, int64_t cols) {
  __shared__ E tile[kTile][kTile + 1];
  const int64_t c0 = int64_t(blockIdx.x) * kTile, r0 = int64_t(blockIdx.y) * kTile;
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {  // uniform across the block
    const E* xb = x + b * rows * cols;
    E* ob = out + b * rows * cols;
    for (int j = ty; j < kTile; j += kTileRows) {
      const int64_t r = r0 + j, c = c0 + tx;
      if (r < rows && c < cols) tile[j][tx] = xb[r * cols + c];
    }
    __syncthreads();
    for (int j = ty; j < kTile; j += kTileRows) {
      const int64_t c = c0 + j, r = r0 + tx;  // out[c][r] = x[r][c] = tile[tx][j]
      if (c < cols && r < rows) ob[c * rows + r] = tile[tx][j];
    }
    __syncthreads();
  }
}

// out (B, N+1, D) <- x (B, N, D), token (D)
template <class E>
__global__ void prepend_token_forward_kernel(E* out, const E* x, const E* token, int64_t B,
                                             int64_t N, int64_t D) {
  const int64_t n = B * (N + 1) * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, row = i / D;  // row = b * (N + 1) + t
    const int64_t t = row % (N + 1), b = row / (N + 1);
    out[i] = t == 0 ? token[d] : x[(b * N + (t - 1)) * D + d];
  }
}

// dx (B, N, D) <- dout (B, N+1, D): the rows after each sample's token
template <class E>
__global__ void prepend_token_dx_kernel(E* dx, const E* dout, int64_t B, int64_t N, int64_t D) {
  const int64_t n = B * N * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, row = i / D;  // row = b * N + t
    const int64_t t = row % N, b = row / N;
    dx[i] = dout[(b * (N + 1) + t + 1) * D + d];
  }
}

// dtoken (D) <- dout (B, N+1, D): the sum over b of row 0, in batch order, f32
template <class T>
__global__ void prepend_token_dtoken_kernel(T* dtoken, const T* dout, int64_t B, int64_t N,
                                            int64_t D) {
  for (int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; d < D;
       d += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int64_t b = 0; b < B; ++b) acc += load_f(dout, b * (N + 1) * D + d);
    store_f(dtoken, d, acc);
  }
}

// out (B, D) <- x (B, N, D): token `tok` of every sample
template <class E>
__global__ void select_token_forward_kernel(E* out, const E* x, int64_t B, int64_t N, int64_t D,
                                            int64_t tok) {
  const int64_t n = B * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, b = i / D;
    out[i] = x[(b * N + tok) * D + d];
  }
}

// dx (B, N, D) <- dout (B, D): dout in token `tok`, zero elsewhere (every element written)
template <class E>
__global__ void select_token_backward_kernel(E* dx, const E* dout, int64_t B, int64_t N, int64_t D,
                                             int64_t tok) {
  const int64_t n = B * N * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, row = i / D;  // row = b * N + t
    const int64_t t = row % N, b = row / N;
    dx[i] = t == tok ? dout[b * D + d] : E(0);  // all-zero bits: +0 in f32, bf16 and i32
  }
}

// launchers

namespace {

template <class E>
void launch_permute(void* out, const void* x, int ng, const int64_t* cs, const int* cp, int64_t n,
                    cudaStream_t stream) {
  E* o = static_cast<E*>(out);
  const E* xi = static_cast<const E*>(x);
  // A swap of the last two collapsed dims: a batched tiled transpose.
  const bool swap2 = ng == 2 && cp[0] == 1 && cp[1] == 0;
  const bool swap3 = ng == 3 && cp[0] == 0 && cp[1] == 2 && cp[2] == 1;
  if (swap2 || swap3) {
    const int64_t batch = swap3 ? cs[0] : 1;
    const int64_t rows = swap3 ? cs[1] : cs[0], cols = swap3 ? cs[2] : cs[1];
    const int64_t gx = (cols + kTile - 1) / kTile, gy = (rows + kTile - 1) / kTile;
    if (gy <= 65535 && gx <= 0x7fffffff) {
      const dim3 grid(unsigned(gx), unsigned(gy), unsigned(std::min<int64_t>(batch, 65535)));
      transpose_kernel<E><<<grid, dim3(kTile, kTileRows), 0, stream>>>(o, xi, batch, rows, cols);
      CUDA_CHECK(cudaGetLastError());
      return;
    }
  }
  StridedDims g{};
  g.nd = ng;
  int64_t in_stride[5];
  int64_t s = 1;
  for (int k = ng - 1; k >= 0; --k) {
    in_stride[k] = s;
    s *= cs[k];
  }
  for (int k = 0; k < ng; ++k) {
    g.size[k] = cs[cp[k]];
    g.stride[k] = in_stride[cp[k]];
  }
  permute_gather_kernel<E><<<grid_for(n), kThreads, 0, stream>>>(o, xi, g, n);
  CUDA_CHECK(cudaGetLastError());
}

void check_elem_size(const char* what, int elem_size) {
  DINO_CHECK(elem_size == 2 || elem_size == 4, "[cuda] ", what,
             " moves 2- or 4-byte elements, "
             "got ",
             elem_size);
}

}  // namespace

void permute_elements(void* out, const void* x, int elem_size, const int64_t* shape,
                      const int64_t* dims, int nd, cudaStream_t stream) {
  check_elem_size("permute", elem_size);
  DINO_CHECK(nd >= 0 && nd <= 5, "[cuda] permute of ", nd, " dims");
  int64_t n = 1;
  for (int d = 0; d < nd; ++d) n *= shape[d];
  if (n == 0) return;
  // 1. Drop size-1 dims: new index of each kept input dim, and the permutation over them.
  int newidx[5], p1[5];
  int64_t s1[5];
  int m = 0;
  for (int d = 0; d < nd; ++d) {
    newidx[d] = shape[d] == 1 ? -1 : m;
    if (shape[d] != 1) s1[m++] = shape[d];
  }
  int k = 0;
  for (int d = 0; d < nd; ++d)
    if (shape[dims[d]] != 1) p1[k++] = newidx[dims[d]];
  // 2. Output dims whose input dims follow each other form one group (a run of input dims).
  int ng = 0, first[5], last[5];
  for (int j = 0; j < k; ++j) {
    if (j > 0 && p1[j] == p1[j - 1] + 1) {
      last[ng - 1] = p1[j];
    } else {
      first[ng] = last[ng] = p1[j];
      ++ng;
    }
  }
  if (ng <= 1) {  // the identity on the data: a copy
    CUDA_CHECK(
        cudaMemcpyAsync(out, x, size_t(n) * size_t(elem_size), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  // 3. The groups tile the input dims; in input order they are the collapsed input shape cs,
  // and output group j reads collapsed input dim cp[j].
  int64_t cs[5];
  int cp[5];
  for (int j = 0; j < ng; ++j) {
    int rank = 0;
    for (int h = 0; h < ng; ++h) rank += first[h] < first[j];
    int64_t size = 1;
    for (int d = first[j]; d <= last[j]; ++d) size *= s1[d];
    cp[j] = rank;
    cs[rank] = size;
  }
  if (elem_size == 2)
    launch_permute<uint16_t>(out, x, ng, cs, cp, n, stream);
  else
    launch_permute<uint32_t>(out, x, ng, cs, cp, n, stream);
}

void prepend_token_forward(void* out, const void* x, const void* token, int elem_size, int64_t B,
                           int64_t N, int64_t D, cudaStream_t stream) {
  check_elem_size("prepend_token", elem_size);
  const int64_t n = B * (N + 1) * D;
  if (n == 0) return;
  if (elem_size == 2)
    prepend_token_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<uint16_t*>(out), static_cast<const uint16_t*>(x),
        static_cast<const uint16_t*>(token), B, N, D);
  else
    prepend_token_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<uint32_t*>(out), static_cast<const uint32_t*>(x),
        static_cast<const uint32_t*>(token), B, N, D);
  CUDA_CHECK(cudaGetLastError());
}

void prepend_token_backward(void* dx, void* dtoken, const void* dout, bool bf16, int64_t B,
                            int64_t N, int64_t D, cudaStream_t stream) {
  const int64_t n = B * N * D;
  if (n > 0) {
    if (bf16)
      prepend_token_dx_kernel<<<grid_for(n), kThreads, 0, stream>>>(
          static_cast<uint16_t*>(dx), static_cast<const uint16_t*>(dout), B, N, D);
    else
      prepend_token_dx_kernel<<<grid_for(n), kThreads, 0, stream>>>(
          static_cast<uint32_t*>(dx), static_cast<const uint32_t*>(dout), B, N, D);
    CUDA_CHECK(cudaGetLastError());
  }
  if (D > 0) {
    if (bf16)
      prepend_token_dtoken_kernel<<<grid_for(D), kThreads, 0, stream>>>(
          static_cast<__nv_bfloat16*>(dtoken), static_cast<const __nv_bfloat16*>(dout), B, N, D);
    else
      prepend_token_dtoken_kernel<<<grid_for(D), kThreads, 0, stream>>>(
          static_cast<float*>(dtoken), static_cast<const float*>(dout), B, N, D);
    CUDA_CHECK(cudaGetLastError());
  }
}

void select_token_forward(void* out, const void* x, int elem_size, int64_t B, int64_t N, int64_t D,
                          int64_t i, cudaStream_t stream) {
  check_elem_size("select_token", elem_size);
  const int64_t n = B * D;
  if (n == 0) return;
  if (elem_size == 2)
    select_token_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<uint16_t*>(out), static_cast<const uint16_t*>(x), B, N, D, i);
  else
    select_token_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<uint32_t*>(out), static_cast<const uint32_t*>(x), B, N, D, i);
  CUDA_CHECK(cudaGetLastError());
}

void select_token_backward(void* dx, const void* dout, int elem_size, int64_t B, int64_t N,
                           int64_t D, int64_t i, cudaStream_t stream) {
  check_elem_size("select_token", elem_size);
  const int64_t n = B * N * D;
  if (n == 0) return;
  if (elem_size == 2)
    select_token_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<uint16_t*>(dx), static_cast<const uint16_t*>(dout), B, N, D, i);
  else
    select_token_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<uint32_t*>(dx), static_cast<const uint32_t*>(dout), B, N, D, i);
  CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::permute(const Tensor& out, const Tensor& x,
                          const std::vector<int64_t>& dims) const {
  permute_elements(out.raw_data(), x.raw_data(), int(dtype_size(x.dtype())), x.shape().data(),
                   dims.data(), int(x.dim()), op_stream());
}

void CudaBackend::prepend_token(const Tensor& out, const Tensor& x, const Tensor& token) const {
  prepend_token_forward(out.raw_data(), x.raw_data(), token.raw_data(), int(dtype_size(x.dtype())),
                        x.size(0), x.size(1), x.size(2), op_stream());
}

void CudaBackend::prepend_token_backward(const Tensor& dx, const Tensor& dtoken,
                                         const Tensor& dout) const {
  cuda::prepend_token_backward(dx.raw_data(), dtoken.raw_data(), dout.raw_data(), is_bf16(dout),
                               dx.size(0), dx.size(1), dx.size(2), op_stream());
}

void CudaBackend::select_token(const Tensor& out, const Tensor& x, int64_t i) const {
  select_token_forward(out.raw_data(), x.raw_data(), int(dtype_size(x.dtype())), x.size(0),
                       x.size(1), x.size(2), i, op_stream());
}

void CudaBackend::select_token_backward(const Tensor& dx, const Tensor& dout, int64_t i) const {
  cuda::select_token_backward(dx.raw_data(), dout.raw_data(), int(dtype_size(dout.dtype())),
                              dx.size(0), dx.size(1), dx.size(2), i, op_stream());
}

}  // namespace dino::kernels::cuda
