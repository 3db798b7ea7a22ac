// KoLeo's nearest neighbour: for each row i of z (B, D), the row j != i with the largest dot
// product, then z[i] - z[j]. Each product of two elements is exact in double (for f32 data)
// and the sum runs in d order, so every backend finds the same neighbours bit for bit.
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/backend.h"

namespace dino::kernels::cpu {

namespace {

// index (B), diff (B, D) <- z (B, D)
template <class T>
void nearest_row_diff_forward(int32_t* index, T* diff, const T* z, int64_t B, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    const T* zi = z + i * D;
    int64_t best = i == 0 ? 1 : 0;  // kept when every dot is NaN
    double best_dot = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < B; ++j) {
      if (j == i) continue;
      const T* zj = z + j * D;
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += double(zi[d]) * double(zj[d]);
      if (dot > best_dot) best_dot = dot, best = j;  // strict: the first j on ties
    }
    index[i] = int32_t(best);
    const T* zb = z + best * D;
    for (int64_t d = 0; d < D; ++d) diff[i * D + d] = zi[d] - zb[d];
  }
}

// dz (B, D) <- ddiff (B, D), index (B). The order (ddiff[k] first, then the rows that chose k,
// last first) is the one autograd summed the same gradient in when the neighbours were
// gathered as one-row views.
template <class T>
void nearest_row_diff_backward(T* dz, const T* ddiff, const int32_t* index, int64_t B, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < B; ++k) {
    T* dk = dz + k * D;
    for (int64_t d = 0; d < D; ++d) dk[d] = ddiff[k * D + d];
    for (int64_t i = B - 1; i >= 0; --i) {
      if (index[i] != k) continue;
      for (int64_t d = 0; d < D; ++d) dk[d] -= ddiff[i * D + d];
    }
  }
}

}  // namespace

void CpuBackend::nearest_row_diff(const Tensor& index, const Tensor& diff, const Tensor& z) const {
  dispatch_float("nearest_row_diff", z.dtype(), [&](auto tag) {
    using T = decltype(tag);
    nearest_row_diff_forward<T>(index.data<int32_t>(), diff.data<T>(), z.data<T>(), z.size(0),
                                z.size(1));
  });
}

void CpuBackend::nearest_row_diff_backward(const Tensor& dz, const Tensor& ddiff,
                                           const Tensor& index) const {
  dispatch_float("nearest_row_diff", ddiff.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::nearest_row_diff_backward<T>(dz.data<T>(), ddiff.data<T>(), index.data<int32_t>(),
                                      ddiff.size(0), ddiff.size(1));
  });
}

}  // namespace dino::kernels::cpu
