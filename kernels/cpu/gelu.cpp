// Exact (erf) GELU, PyTorch's nn.GELU() default, and its derivative.
// Elementwise, so it is computed in T: there is no reduction to protect. The float path uses
// the vectorisable erf/exp of fast_math.h (GELU is a large share of a CPU training step);
// the double path, used for references and gradient checks, uses the C library.
// CpuBackend::gelu_bias_backward (linear_gelu's backward) is the GELU backward then the column
// sums linear_backward would take of its output, the same two kernels in the same order, so
// the fused op gives the CPU the bits of linear then gelu.
#include <cmath>

#include "kernels/cpu/backend.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {
inline float erf_t(float v) { return fast::erf(v); }
inline double erf_t(double v) { return std::erf(v); }
inline float exp_t(float v) { return fast::exp(v); }
inline double exp_t(double v) { return std::exp(v); }
}  // namespace

template <class T>
void gelu_forward(T* out, const T* x, int64_t n) {
  const T inv_sqrt2 = T(0.70710678118654752440);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * T(0.5) * (T(1) + erf_t(x[i] * inv_sqrt2));
}

// d/dx = Phi(x) + x * phi(x), with Phi the normal CDF and phi its density.
template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n) {
  const T inv_sqrt2 = T(0.70710678118654752440);
  const T inv_sqrt_2pi = T(0.39894228040143267794);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T cdf = T(0.5) * (T(1) + erf_t(x[i] * inv_sqrt2));
    const T pdf = exp_t(T(-0.5) * x[i] * x[i]) * inv_sqrt_2pi;
    dx[i] = dout[i] * (cdf + x[i] * pdf);
  }
}

template void gelu_forward<float>(float*, const float*, int64_t);
template void gelu_forward<double>(double*, const double*, int64_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t);
template void gelu_backward<double>(double*, const double*, const double*, int64_t);

void CpuBackend::gelu_bias_backward(const Tensor& dpre, const Tensor& dbias, const Tensor& dout,
                                    const Tensor& pre) const {
  const int64_t R = rows_of(pre), O = cols_of(pre);
  dispatch_float("linear_gelu", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    gelu_backward<T>(dpre.data<T>(), dout.data<T>(), pre.data<T>(), pre.numel());
    // In double, whatever T, as linear_backward sums its dout.
    if (dbias.defined()) column_sums<double>(dbias.data<T>(), dpre.data<T>(), R, O, true);
  });
}

}  // namespace dino::kernels::cpu
