// Drop path (stochastic depth): each sample kept and scaled by 1 / (1 - p), or zeroed, as one
// broadcast product x * mask[b], so forward and backward are the same call.
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

template <class T>
void drop_path_apply(T* out, const T* x, const uint8_t* keep, T scale, int64_t B, int64_t S) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    const T m = keep[b] ? scale : T(0);
    const T* xb = x + b * S;
    T* ob = out + b * S;
#pragma omp simd
    for (int64_t i = 0; i < S; ++i) ob[i] = xb[i] * m;
  }
}

template void drop_path_apply<float>(float*, const float*, const uint8_t*, float, int64_t, int64_t);
template void drop_path_apply<double>(double*, const double*, const uint8_t*, double, int64_t,
                                      int64_t);

void CpuBackend::drop_path(const Tensor& out, const Tensor& x, const std::vector<uint8_t>& keep,
                           double p) const {
  dispatch_float("drop_path", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const int64_t B = x.size(0);
    drop_path_apply<T>(out.data<T>(), x.data<T>(), keep.data(), T(1 / (1 - p)), B,
                       B ? x.numel() / B : 0);
  });
}

}  // namespace dino::kernels::cpu
