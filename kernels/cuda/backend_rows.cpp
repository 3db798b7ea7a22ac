// The CUDA backend's softmax, log_softmax, l2_normalize (kernels/cuda/softmax.cu,
// l2_normalize.cu) on f32 or bf16 rows (the same dtype in and out, f32 math, f32 row
// statistics), and the bicubic grid resize (resize.cu, f32), for core/ops_nn.cpp. The softmax
// backwards recompute the probabilities from x and the f32 lse.
#include "kernels/cuda/backend.h"

namespace dino::kernels::cuda {

namespace {

// Calls f with x's typed device pointer (float* or __nv_bfloat16*).
template <class F>
void with_rows(const Tensor& x, F&& f) {
  if (is_bf16(x))
    f(bf16_ptr(x));
  else
    f(f32_ptr(x));
}

template <class P>
P* same_type(const Tensor& t, P*) {
  return reinterpret_cast<P*>(t.raw_data());
}

int columns(const char* op, const Tensor& x) { return as_int(op, x.size(-1), "columns"); }

}  // namespace

void CudaBackend::softmax(const Tensor& out, const Tensor& lse, const Tensor& x,
                          bool log_space) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns(log_space ? "log_softmax" : "softmax", x);
  with_rows(x, [&](auto* px) {
    if (log_space)
      log_softmax_forward(same_type(out, px), f32_ptr(lse), px, N, C, op_stream());
    else
      softmax_forward(same_type(out, px), f32_ptr(lse), px, N, C, op_stream());
  });
}

void CudaBackend::softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                   const Tensor&, const Tensor& lse, bool log_space) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns(log_space ? "log_softmax" : "softmax", x);
  with_rows(x, [&](auto* px) {
    if (log_space)
      log_softmax_backward(same_type(dx, px), same_type(dout, px), px, f32_ptr(lse), N, C,
                           op_stream());
    else
      cuda::softmax_backward(same_type(dx, px), same_type(dout, px), px, f32_ptr(lse), N, C,
                             op_stream());
  });
}

void CudaBackend::l2_normalize(const Tensor& out, const Tensor& norm, const Tensor& x,
                               double eps) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns("l2_normalize", x);
  with_rows(x, [&](auto* px) {
    l2_normalize_forward(same_type(out, px), f32_ptr(norm), px, N, C, eps, op_stream());
  });
}

void CudaBackend::l2_normalize_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                        const Tensor& norm, double eps) const {
  const int64_t N = x.numel() / x.size(-1);
  const int C = columns("l2_normalize", x);
  with_rows(x, [&](auto* px) {
    cuda::l2_normalize_backward(same_type(dx, px), same_type(dout, px), px, f32_ptr(norm), N, C,
                                eps, op_stream());
  });
}

void CudaBackend::resize_bicubic(const Tensor& out, const Tensor& grid, double scale_h,
                                 double scale_w) const {
  bicubic_resize_forward(f32_ptr(out), f32_ptr(grid), as_int("resize_bicubic", grid.size(0), "rows"),
                         as_int("resize_bicubic", grid.size(1), "columns"),
                         as_int("resize_bicubic", out.size(0), "output rows"),
                         as_int("resize_bicubic", out.size(1), "output columns"),
                         as_int("resize_bicubic", grid.size(2), "channels"), scale_h, scale_w,
                         op_stream());
}

void CudaBackend::resize_bicubic_backward(const Tensor& dgrid, const Tensor& dout, double scale_h,
                                          double scale_w) const {
  bicubic_resize_backward(f32_ptr(dgrid), f32_ptr(dout), int(dgrid.size(0)), int(dgrid.size(1)),
                          int(dout.size(0)), int(dout.size(1)), int(dgrid.size(2)), scale_h,
                          scale_w, op_stream());
}

}  // namespace dino::kernels::cuda
