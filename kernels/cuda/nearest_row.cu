// KoLeo's nearest neighbour on the device (kernels/cpu/nearest_row.cpp is the reference):
//   forward:  index[i] = the row j != i with the largest z_i . z_j (first j on ties),
//             diff[i] = z[i] - z[index[i]]
//   backward: dz[k] = ddiff[k] - ddiff[i] for each i with index[i] = k, in descending i
// Each thread sums its dot products in double in d order, as the reference does: a product of
// two floats is exact in double (so contracting it into an FMA changes nothing), and the
// neighbours equal the CPU's bit for bit. The backward subtracts in the reference's order, so
// its bits equal the CPU's too, and a rerun's.
//
// Shape: forward one block of kThreads per row i, thread t scanning rows j = t, t + kThreads,
// ...; the block's candidates are combined in thread order. B (B - 1) D double multiply-adds
// (B = 128, D = 384: 6.2 M) reading z (B D 4 bytes, cache-resident) B times: a few tens of
// microseconds, one launch. Backward one block per row k, threads over d, each scanning the B
// indices: B D 4 bytes written, at most 2 B D 4 bytes of gradient and B^2 indices read.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"

namespace dino::kernels::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kMaxBackwardThreads = 512;

}  // namespace

// kernels

// grid (B), block kThreads. index (B), diff (B, D) <- z (B, D)
__global__ void nearest_row_diff_kernel(int32_t* index, float* diff, const float* z, int B, int D) {
  __shared__ double s_dot[kThreads];
  __shared__ int s_row[kThreads];
  const int i = blockIdx.x;
  const float* zi = z + int64_t(i) * D;
  double best_dot = -double(INFINITY);
  int best = -1;  // none: every dot this thread saw was NaN
  for (int j = threadIdx.x; j < B; j += blockDim.x) {
    if (j == i) continue;
    const float* zj = z + int64_t(j) * D;
    double dot = 0;
    for (int d = 0; d < D; ++d) dot += double(zi[d]) * double(zj[d]);
    if (dot > best_dot) best_dot = dot, best = j;
  }
  s_dot[threadIdx.x] = best_dot;
  s_row[threadIdx.x] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int t = 1; t < int(blockDim.x); ++t) {
      const int j = s_row[t];
      if (j < 0) continue;
      if (best < 0 || s_dot[t] > best_dot || (s_dot[t] == best_dot && j < best))
        best_dot = s_dot[t], best = j;
    }
    if (best < 0) best = i == 0 ? 1 : 0;
    s_row[0] = best;
    index[i] = best;
  }
  __syncthreads();
  const float* zb = z + int64_t(s_row[0]) * D;
  float* out = diff + int64_t(i) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) out[d] = zi[d] - zb[d];
}

// grid (B), block min(D rounded up to a warp, kMaxBackwardThreads). dz (B, D) <- ddiff (B, D),
// index (B)
__global__ void nearest_row_diff_backward_kernel(float* dz, const float* ddiff,
                                                 const int32_t* index, int B, int D) {
  const int k = blockIdx.x;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = ddiff[int64_t(k) * D + d];
    for (int i = B - 1; i >= 0; --i)
      if (index[i] == k) acc -= ddiff[int64_t(i) * D + d];
    dz[int64_t(k) * D + d] = acc;
  }
}

// launchers

namespace {

// index (B), diff (B, D) <- z (B, D)
void launch_forward(int32_t* index, float* diff, const float* z, int B, int D,
                    cudaStream_t stream) {
  if (B <= 0 || D <= 0) return;
  nearest_row_diff_kernel<<<unsigned(B), kThreads, 0, stream>>>(index, diff, z, B, D);
  CUDA_CHECK(cudaGetLastError());
}

// dz (B, D) <- ddiff (B, D), index (B)
void launch_backward(float* dz, const float* ddiff, const int32_t* index, int B, int D,
                     cudaStream_t stream) {
  if (B <= 0 || D <= 0) return;
  const int warps = (D + 31) / 32;
  const int threads = warps * 32 < kMaxBackwardThreads ? warps * 32 : kMaxBackwardThreads;
  nearest_row_diff_backward_kernel<<<unsigned(B), threads, 0, stream>>>(dz, ddiff, index, B, D);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void CudaBackend::nearest_row_diff(const Tensor& index, const Tensor& diff, const Tensor& z) const {
  const int B = as_int("nearest_row_diff", z.size(0), "rows");
  const int D = columns("nearest_row_diff", z);
  launch_forward(index.data<int32_t>(), f32_ptr(diff), f32_ptr(z), B, D, op_stream());
}

void CudaBackend::nearest_row_diff_backward(const Tensor& dz, const Tensor& ddiff,
                                            const Tensor& index) const {
  const int B = as_int("nearest_row_diff", ddiff.size(0), "rows");
  const int D = columns("nearest_row_diff", ddiff);
  launch_backward(f32_ptr(dz), f32_ptr(ddiff), index.data<int32_t>(), B, D, op_stream());
}

}  // namespace dino::kernels::cuda
