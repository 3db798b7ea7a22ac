// The CPU backend's softmax, log_softmax, l2_normalize (kernels/cpu/softmax.cpp,
// l2_normalize.cpp) and bicubic grid resize (resize.cpp), for core/ops_nn.cpp: every tensor in
// the op's one dtype. The softmax backwards read the probabilities, not the log-sum-exp.
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

void CpuBackend::softmax(const Tensor& out, const Tensor&, const Tensor& x,
                         bool log_space) const {
  dispatch_float(log_space ? "log_softmax" : "softmax", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    (log_space ? log_softmax_forward<T> : softmax_forward<T>)(out.data<T>(), x.data<T>(),
                                                              rows_of(x), cols_of(x));
  });
}

void CpuBackend::softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor&,
                                  const Tensor& out, const Tensor&, bool log_space) const {
  dispatch_float(log_space ? "log_softmax" : "softmax", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    (log_space ? log_softmax_backward<T> : cpu::softmax_backward<T>)(
        dx.data<T>(), dout.data<T>(), out.data<T>(), rows_of(out), cols_of(out));
  });
}

void CpuBackend::l2_normalize(const Tensor& out, const Tensor& norm, const Tensor& x,
                              double eps) const {
  dispatch_float("l2_normalize", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    l2_normalize_forward<T>(out.data<T>(), norm.data<T>(), x.data<T>(), rows_of(x), cols_of(x),
                            eps);
  });
}

void CpuBackend::l2_normalize_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                       const Tensor& norm, double eps) const {
  dispatch_float("l2_normalize", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::l2_normalize_backward<T>(dx.data<T>(), dout.data<T>(), x.data<T>(), norm.data<T>(),
                                  rows_of(x), cols_of(x), eps);
  });
}

void CpuBackend::resize_bicubic(const Tensor& out, const Tensor& grid, double scale_h,
                                double scale_w) const {
  dispatch_float("resize_bicubic", grid.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bicubic_resize_forward<T>(out.data<T>(), grid.data<T>(), grid.size(0), grid.size(1),
                              out.size(0), out.size(1), grid.size(2), scale_h, scale_w);
  });
}

void CpuBackend::resize_bicubic_backward(const Tensor& dgrid, const Tensor& dout, double scale_h,
                                         double scale_w) const {
  dispatch_float("resize_bicubic", dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bicubic_resize_backward<T>(dgrid.data<T>(), dout.data<T>(), dgrid.size(0), dgrid.size(1),
                               dout.size(0), dout.size(1), dgrid.size(2), scale_h, scale_w);
  });
}

}  // namespace dino::kernels::cpu
