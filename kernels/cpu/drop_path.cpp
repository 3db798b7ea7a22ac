// Drop path (stochastic depth): each sample kept and scaled by 1 / (1 - p), or zeroed, as one
// broadcast product x * mask[b], so forward and backward are the same call. The keep decision
// of a sample is core/drop_path_mask.h's, on the nonce the tensor holds.
// CpuBackend::drop_path_bias_backward (linear_drop_path's backward) is drop path's backward then
// the column sums linear_backward would take of its output, the same two kernels in the same
// order, so the fused op gives the CPU the bits of linear then drop_path.
#include "core/drop_path_mask.h"
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

template <class T>
void drop_path_apply(T* out, const T* x, uint64_t nonce, uint32_t call, int64_t sample_offset,
                     int64_t sample_stride, uint32_t threshold, T scale, int64_t B, int64_t S) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    const bool keep =
        drop_path_keep(nonce, call, uint64_t(b * sample_stride + sample_offset), threshold);
    const T m = keep ? scale : T(0);
    const T* xb = x + b * S;
    T* ob = out + b * S;
#pragma omp simd
    for (int64_t i = 0; i < S; ++i) ob[i] = xb[i] * m;
  }
}

template void drop_path_apply<float>(float*, const float*, uint64_t, uint32_t, int64_t, int64_t,
                                     uint32_t, float, int64_t, int64_t);
template void drop_path_apply<double>(double*, const double*, uint64_t, uint32_t, int64_t, int64_t,
                                      uint32_t, double, int64_t, int64_t);

void CpuBackend::drop_path(const Tensor& out, const Tensor& x, const Tensor& nonce, uint32_t call,
                           int64_t sample_offset, int64_t sample_stride, double p) const {
  const int32_t* words = nonce.data<int32_t>();
  const uint64_t n = uint64_t(uint32_t(words[0])) | (uint64_t(uint32_t(words[1])) << 32);
  dispatch_float("drop_path", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const int64_t B = x.size(0);
    drop_path_apply<T>(out.data<T>(), x.data<T>(), n, call, sample_offset, sample_stride,
                       drop_path_threshold(p), T(1 / (1 - p)), B, B ? x.numel() / B : 0);
  });
}

void CpuBackend::drop_path_bias_backward(const Tensor& dy, const Tensor& dbias, const Tensor& dout,
                                         const Tensor& nonce, uint32_t call, int64_t sample_offset,
                                         int64_t sample_stride, double p) const {
  drop_path(dy, dout, nonce, call, sample_offset, sample_stride, p);
  if (!dbias.defined()) return;
  dispatch_float("linear_drop_path", dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    // In double, whatever T, as linear_backward sums its dout.
    column_sums<double>(dbias.data<T>(), dy.data<T>(), rows_of(dy), cols_of(dy), true);
  });
}

}  // namespace dino::kernels::cpu
