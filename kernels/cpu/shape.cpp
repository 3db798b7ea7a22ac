// The CPU backend's data movement (core/ops_shape.cpp): byte copies for any dtype.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/backend.h"

namespace dino::kernels::cpu {

void CpuBackend::permute(const Tensor& out, const Tensor& x,
                         const std::vector<int64_t>& dims) const {
  const Shape& si = x.shape();
  const int nd = int(si.size());
  std::vector<int64_t> in_stride(nd, 1);
  for (int d = nd - 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * si[d + 1];
  std::vector<int64_t> step(nd);  // input stride of each output dim
  for (int d = 0; d < nd; ++d) step[d] = in_stride[dims[d]];
  const Shape& so = out.shape();
  const size_t es = dtype_size(x.dtype());
  const char* pi = static_cast<const char*>(x.raw_data());
  char* po = static_cast<char*>(out.raw_data());
  std::vector<int64_t> idx(nd, 0);
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) {
    int64_t src = 0;
    for (int d = 0; d < nd; ++d) src += idx[d] * step[d];
    std::memcpy(po + i * es, pi + src * es, es);
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < so[d]) break;
      idx[d] = 0;
    }
  }
}

void CpuBackend::prepend_token(const Tensor& out, const Tensor& x, const Tensor& token) const {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  const size_t es = dtype_size(x.dtype());
  char* po = static_cast<char*>(out.raw_data());
  const char* px = static_cast<const char*>(x.raw_data());
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(po + b * (N + 1) * D * es, token.raw_data(), D * es);
    std::memcpy(po + (b * (N + 1) + 1) * D * es, px + b * N * D * es, N * D * es);
  }
}

void CpuBackend::prepend_token_backward(const Tensor& dx, const Tensor& dtoken,
                                        const Tensor& dout) const {
  const int64_t B = dx.size(0), N = dx.size(1), D = dx.size(2);
  dispatch_float("prepend_token", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pg = dout.data<T>();
    T *pdx = dx.data<T>(), *pdt = dtoken.data<T>();
    std::fill(pdt, pdt + D, T(0));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t d = 0; d < D; ++d) pdt[d] += pg[b * (N + 1) * D + d];
      std::memcpy(pdx + b * N * D, pg + (b * (N + 1) + 1) * D, N * D * sizeof(T));
    }
  });
}

void CpuBackend::select_token(const Tensor& out, const Tensor& x, int64_t i) const {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  const size_t es = dtype_size(x.dtype());
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(static_cast<char*>(out.raw_data()) + b * D * es,
                static_cast<const char*>(x.raw_data()) + (b * N + i) * D * es, D * es);
}

void CpuBackend::select_token_backward(const Tensor& dx, const Tensor& dout, int64_t i) const {
  const int64_t B = dx.size(0), N = dx.size(1), D = dx.size(2);
  const size_t es = dtype_size(dout.dtype());
  std::memset(dx.raw_data(), 0, dx.nbytes());
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(static_cast<char*>(dx.raw_data()) + (b * N + i) * D * es,
                static_cast<const char*>(dout.raw_data()) + b * D * es, D * es);
}

}  // namespace dino::kernels::cpu
