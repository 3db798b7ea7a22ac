// The CPU backend's products (core/ops_linear.cpp) on kernels/cpu/gemm.cpp, weight_norm.cpp and
// patchify.cpp: every tensor in the op's one dtype.
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {

// T* of a tensor, or nullptr when it is undefined (an output not wanted, a missing bias).
template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// A weight-norm gradient not wanted still needs room: the kernel writes both.
Tensor or_scratch(const Tensor& t, const Shape& shape, const Tensor& like) {
  return t.defined() ? t : Tensor::empty(shape, like.dtype(), like.device());
}

}  // namespace

void CpuBackend::matmul(const Tensor& out, const Tensor& a, const Tensor& b) const {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const bool shared_b = b.dim() == 2;
  dispatch_float("matmul", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < nb; ++i)
      gemm<T>(out.data<T>() + i * M * N, a.data<T>() + i * M * K,
              b.data<T>() + (shared_b ? 0 : i * K * N), M, N, K, false, false, T(1), T(0));
  });
}

void CpuBackend::matmul_backward(const Tensor& da, const Tensor& db, const Tensor& dout,
                                 const Tensor& a, const Tensor& b) const {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const bool shared_b = b.dim() == 2;
  dispatch_float("matmul", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* g = dout.data<T>();
    if (da.defined())  // da = g @ b^T
      for (int64_t i = 0; i < nb; ++i)
        gemm<T>(da.data<T>() + i * M * K, g + i * M * N, b.data<T>() + (shared_b ? 0 : i * K * N),
                M, K, N, false, true, T(1), T(0));
    if (!db.defined()) return;
    if (shared_b)  // the batch folds into the GEMM's inner dim: db = a^T @ g over all rows
      gemm<T>(db.data<T>(), a.data<T>(), g, K, N, nb * M, true, false, T(1), T(0));
    else
      for (int64_t i = 0; i < nb; ++i)
        gemm<T>(db.data<T>() + i * K * N, a.data<T>() + i * M * K, g + i * M * N, K, N, M, true,
                false, T(1), T(0));
  });
}

void CpuBackend::linear(const Tensor& out, const Tensor& x, const Tensor& weight,
                        const Tensor& bias) const {
  dispatch_float("linear", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    linear_forward<T>(out.data<T>(), x.data<T>(), weight.data<T>(), data_or_null<T>(bias),
                      rows_of(x), cols_of(x), cols_of(out));
  });
}

void CpuBackend::linear_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                 const Tensor& dout, const Tensor& x,
                                 const Tensor& weight) const {
  const int64_t R = rows_of(x), I = cols_of(x), O = cols_of(dout);
  dispatch_float("linear", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (dx.defined())
      gemm<T>(dx.data<T>(), dout.data<T>(), weight.data<T>(), R, I, O, false, false, T(1), T(0));
    if (dweight.defined())
      gemm<T>(dweight.data<T>(), dout.data<T>(), x.data<T>(), O, I, R, true, false, T(1), T(0));
    // In double, whatever T: R can be every token of the batch.
    if (dbias.defined()) column_sums<double>(dbias.data<T>(), dout.data<T>(), R, O, true);
  });
}

void CpuBackend::weight_norm(const Tensor& w, const Tensor& vnorm, const Tensor& v,
                             const Tensor& g) const {
  dispatch_float("weight_norm", v.dtype(), [&](auto tag) {
    using T = decltype(tag);
    weight_norm_forward<T>(w.data<T>(), vnorm.data<T>(), v.data<T>(), g.data<T>(), v.size(0),
                           v.size(1));
  });
}

void CpuBackend::weight_norm_backward(const Tensor& dv, const Tensor& dg, const Tensor& dw,
                                      const Tensor& v, const Tensor& g,
                                      const Tensor& vnorm) const {
  const Tensor dv_out = or_scratch(dv, v.shape(), dw), dg_out = or_scratch(dg, g.shape(), dw);
  dispatch_float("weight_norm", dw.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::weight_norm_backward<T>(dv_out.data<T>(), dg_out.data<T>(), dw.data<T>(), v.data<T>(),
                                 g.data<T>(), vnorm.data<T>(), v.size(0), v.size(1));
  });
}

void CpuBackend::im2col_patches(const Tensor& cols, const Tensor& img, int64_t P) const {
  dispatch_float("patchify", img.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::im2col_patches<T>(cols.data<T>(), img.data<T>(), img.size(0), img.size(1), img.size(2),
                           img.size(3), P);
  });
}

void CpuBackend::col2im_patches(const Tensor& dimg, const Tensor& dcols, int64_t P) const {
  dispatch_float("patchify", dcols.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::col2im_patches<T>(dimg.data<T>(), dcols.data<T>(), dimg.size(0), dimg.size(1),
                           dimg.size(2), dimg.size(3), P);
  });
}

}  // namespace dino::kernels::cpu
