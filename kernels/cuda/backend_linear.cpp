// The CUDA backend's products (core/ops_linear.cpp): cuBLASLt GEMMs on bf16 operands with fp32
// accumulation (kernels/cuda/gemm.cu); each output bf16 or f32 as its tensor says. Weight and
// bias gradients share one fp32-output GEMM whose epilogue writes the bias gradient (a column
// sum of dout); weight_norm and im2col on kernels/cuda/weight_norm.cu and patchify.cu.
#include "kernels/cuda/backend.h"

namespace dino::kernels::cuda {

namespace {

const __nv_bfloat16* operand(const char* op, const Tensor& t, const char* name) {
  DINO_CHECK(is_bf16(t), "[", op, "] ", name, " must be a bf16 GEMM operand on CUDA, got ",
             dtype_name(t.dtype()));
  return bf16_ptr(t);
}

void* data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

void check_not_empty(const char* op, const Tensor& a, const Tensor& b) {
  DINO_CHECK(a.numel() > 0 && b.numel() > 0, "[", op, "] empty operands ", shape_str(a.shape()),
             " and ", shape_str(b.shape()), " are not supported on CUDA");
}

}  // namespace

void CudaBackend::matmul(const Tensor& out, const Tensor& a, const Tensor& b) const {
  check_not_empty("matmul", a, b);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const __nv_bfloat16 *pa = operand("matmul", a, "a"), *pb = operand("matmul", b, "b");
  if (b.dim() == 2)  // a shared b folds the batch into the rows: one GEMM
    gemm(out.raw_data(), is_bf16(out), pa, pb, nullptr, GemmEpilogue::none, nb * M, N, K, false,
         false, 1, 0, 0, 0, op_stream());
  else
    gemm(out.raw_data(), is_bf16(out), pa, pb, nullptr, GemmEpilogue::none, M, N, K, false, false,
         as_int("matmul", nb, "batch"), M * K, K * N, M * N, op_stream());
}

void CudaBackend::matmul_backward(const Tensor& da, const Tensor& db, const Tensor& dout,
                                  const Tensor& a, const Tensor& b) const {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const bool shared_b = b.dim() == 2;
  const int batch = as_int("matmul", nb, "batch");
  const __nv_bfloat16* g = operand("matmul", dout, "dout");
  if (da.defined()) {  // da = g @ b^T
    const __nv_bfloat16* pb = operand("matmul", b, "b");
    if (shared_b)
      gemm(da.raw_data(), is_bf16(da), g, pb, nullptr, GemmEpilogue::none, nb * M, K, N, false,
           true, 1, 0, 0, 0, op_stream());
    else
      gemm(da.raw_data(), is_bf16(da), g, pb, nullptr, GemmEpilogue::none, M, K, N, false, true,
           batch, M * N, K * N, M * K, op_stream());
  }
  if (db.defined()) {  // db = a^T @ g; a shared b sums over every row of the batch
    const __nv_bfloat16* pa = operand("matmul", a, "a");
    if (shared_b)
      gemm(db.raw_data(), is_bf16(db), pa, g, nullptr, GemmEpilogue::none, K, N, nb * M, true,
           false, 1, 0, 0, 0, op_stream());
    else
      gemm(db.raw_data(), is_bf16(db), pa, g, nullptr, GemmEpilogue::none, K, N, M, true, false,
           batch, M * K, M * N, K * N, op_stream());
  }
}

void CudaBackend::linear(const Tensor& out, const Tensor& x, const Tensor& weight,
                         const Tensor& bias) const {
  check_not_empty("linear", x, weight);
  const int64_t R = x.numel() / x.size(-1), I = x.size(-1), O = out.size(-1);
  // cuBLASLt's bias has the output's type (autocast casts the bias too).
  gemm(out.raw_data(), is_bf16(out), operand("linear", x, "x"),
       operand("linear", weight, "weight"), data_or_null(bias),
       bias.defined() ? GemmEpilogue::bias : GemmEpilogue::none, R, O, I, false, true, 1, 0, 0,
       0, op_stream());
}

void CudaBackend::linear_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                  const Tensor& dout, const Tensor& x,
                                  const Tensor& weight) const {
  const int64_t R = x.numel() / x.size(-1), I = x.size(-1), O = dout.size(-1);
  const __nv_bfloat16* g = operand("linear", dout, "dout");
  if (dx.defined())  // dx = dout W
    gemm(dx.raw_data(), is_bf16(dx), g, operand("linear", weight, "weight"), nullptr,
         GemmEpilogue::none, R, I, O, false, false, 1, 0, 0, 0, op_stream());
  if (!dweight.defined() && !dbias.defined()) return;
  // dW = dout^T x with db from the epilogue. Without a weight gradient the product still runs
  // for its db (a bias trained under a frozen weight: rare, so no separate column sum).
  const Tensor dw = dweight.defined()
                        ? dweight
                        : Tensor::empty({O, I}, dbias.dtype(), Device::cuda);
  gemm(dw.raw_data(), is_bf16(dw), g, operand("linear", x, "x"), data_or_null(dbias),
       dbias.defined() ? GemmEpilogue::bias_grad : GemmEpilogue::none, O, I, R, true, false, 1,
       0, 0, 0, op_stream());
}

void CudaBackend::weight_norm(const Tensor& w, const Tensor& vnorm, const Tensor& v,
                              const Tensor& g) const {
  check_not_empty("weight_norm", v, g);
  // w in f32, or straight as the bf16 GEMM operand of DINO's last layer
  cuda::weight_norm_forward(is_bf16(w) ? nullptr : f32_ptr(w), is_bf16(w) ? bf16_ptr(w) : nullptr,
                            f32_ptr(vnorm), f32_ptr(v), f32_ptr(g), v.size(0),
                            as_int("weight_norm", v.size(1), "columns"), op_stream());
}

void CudaBackend::weight_norm_backward(const Tensor& dv, const Tensor& dg, const Tensor& dw,
                                       const Tensor& v, const Tensor& g,
                                       const Tensor& vnorm) const {
  cuda::weight_norm_backward(dv.defined() ? f32_ptr(dv) : nullptr,
                             dg.defined() ? f32_ptr(dg) : nullptr, f32_ptr(dw), f32_ptr(v),
                             f32_ptr(g), f32_ptr(vnorm), v.size(0),
                             as_int("weight_norm", v.size(1), "columns"), op_stream());
}

void CudaBackend::im2col_patches(const Tensor& cols, const Tensor& img, int64_t P) const {
  DINO_CHECK(!img.requires_grad(), "[patchify] img requires grad, but on CUDA patchify computes "
             "no image gradient (images never need one): detach the images, or run on --device "
             "cpu");
  DINO_CHECK(cols.numel() > 0, "[patchify] empty batch ", shape_str(img.shape()),
             " is not supported on CUDA");
  cuda::im2col_patches(bf16_ptr(cols), f32_ptr(img), img.size(0),
                       as_int("patchify", img.size(1), "channels"),
                       as_int("patchify", img.size(2), "rows"),
                       as_int("patchify", img.size(3), "columns"), int(P), op_stream());
}

void CudaBackend::col2im_patches(const Tensor&, const Tensor&, int64_t) const {
  throw Error("[patchify] no image gradient on CUDA (images never need one)");
}

}  // namespace dino::kernels::cuda
