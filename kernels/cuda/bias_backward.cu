// The host side of kernels/cuda/bias_backward.cuh, the fused elementwise backward and bias
// gradient of linear_gelu and linear_drop_path: the launch's split and the second kernel, which
// adds the blocks' partial rows in order.
#include <algorithm>

#include "kernels/cuda/bias_backward.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

// kernels

// dbias (O) <- Σ over chunks of partial (chunks, O), chunks in order.
__global__ void bias_backward_reduce_kernel(float* dbias, const float* partial, int chunks,
                                            int64_t O) {
  __shared__ float tree[32][33];
  const float sum = sum_partial_column(partial, chunks, O, tree);
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  if (threadIdx.x < 32 && c < O) dbias[c] = sum;
}

// launchers

BiasBackwardLaunch bias_backward_launch(int64_t R, int64_t O, bool want_partial,
                                        std::initializer_list<const void*> pointers) {
  const int64_t strips = (O + kBiasBackwardColumnsPerBlock - 1) / kBiasBackwardColumnsPerBlock;
  const int64_t want = std::max<int64_t>(1, 8 * int64_t(context().sm_count) / strips);
  const int64_t rows_per_chunk = std::max<int64_t>(kBiasBackwardWarps, (R + want - 1) / want);
  const int chunks = int((R + rows_per_chunk - 1) / rows_per_chunk);
  bool vec = O % kBiasBackwardColumnsPerLane == 0;
  for (const void* p : pointers) vec = vec && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  float* partial = want_partial
                       ? static_cast<float*>(alloc(size_t(chunks) * size_t(O) * sizeof(float)))
                       : nullptr;
  return {dim3(static_cast<unsigned>(strips), static_cast<unsigned>(chunks)), chunks,
          rows_per_chunk, vec, partial};
}

void bias_backward_reduce(float* dbias, float* partial, int chunks, int64_t O,
                          cudaStream_t stream) {
  bias_backward_reduce_kernel<<<int((O + 31) / 32), kPartialColumnThreads, 0, stream>>>(
      dbias, partial, chunks, O);
  CUDA_CHECK(cudaGetLastError());
  free(partial);  // stream-ordered: after the kernels that use it
}

}  // namespace dino::kernels::cuda
