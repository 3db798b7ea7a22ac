// LayerNorm, and LayerNorm fused with the residual add that precedes it in a pre-norm block.
// Each norm is ONE autograd node with a fused backward (dx, dweight, dbias from the saved
// row statistics). On CUDA (ARCHITECTURE §3) the norm reads the f32 residual stream and writes
// bf16 for the next GEMM; the fused form also takes the bf16 branch a GEMM wrote.
//
// Why fuse the add: unfused, the add reads x (4 B/element) and the branch (2) and writes the
// sum (4), then the norm reads the sum again (4) and writes (2): 16 B per element on CUDA.
// Fused, the sum is normalised while it is in registers: 12 B, a quarter less over the
// twice-per-block pair. The backward is unchanged: the sum's gradient is the norm's dx plus
// whatever the later blocks send back, which the tape adds as it would for an add.
#include <vector>

#include "core/ops_util.h"
#include "kernels/cpu/kernels.h"

namespace dino {

using namespace detail;
namespace kc = kernels::cpu;

namespace {

void check_norm_params(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       double eps) {
  check_defined(op, x, "x");
  check_defined(op, weight, "weight");
  check_defined(op, bias, "bias");
  DINO_CHECK(x.dim() >= 1, "[", op, "] x needs at least one dim");
  const int64_t C = cols_of(x);
  DINO_CHECK(weight.numel() == C, "[", op, "] weight has ", weight.numel(),
             " elements, expected ", C, " (last dim of x)");
  DINO_CHECK(bias.numel() == C, "[", op, "] bias has ", bias.numel(), " elements, expected ", C,
             " (last dim of x)");
  DINO_CHECK(eps > 0, "[", op, "] eps must be positive, got ", eps);
}

// Records the norm's node on `out`: x is the tensor that was normalised (for the fused op,
// the sum), mean and rstd its row statistics.
void record_norm_cpu(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                     const Tensor& mean, const Tensor& rstd) {
  if (!needs_grad({x, weight, bias})) return;
  const int64_t N = rows_of(x), C = cols_of(x);
  Tensor xd = x.detach(), wd = weight.detach();
  const Shape ws = weight.shape(), bs = bias.shape();
  record(out, "layer_norm", {x, weight, bias}, [=](const Tensor& g) {
    Tensor dx = Tensor::empty(xd.shape(), g.dtype(), g.device());
    Tensor dw = Tensor::empty(ws, g.dtype(), g.device());
    Tensor db = Tensor::empty(bs, g.dtype(), g.device());
    dispatch_float("layer_norm", g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kc::layernorm_backward<T>(dx.data<T>(), dw.data<T>(), db.data<T>(), g.data<T>(),
                                xd.data<T>(), mean.data<T>(), rstd.data<T>(), wd.data<T>(), N, C);
    });
    return std::vector<Tensor>{dx, dw, db};
  });
}

// The sum's node: the gradient passes to both terms (cast to each one's dtype by the tape).
void record_sum(Tensor& sum, const Tensor& x, const Tensor& branch) {
  if (!needs_grad({x, branch})) return;
  record(sum, "add", {x, branch}, [](const Tensor& g) { return std::vector<Tensor>{g, g}; });
}

#ifdef DINO_HAS_CUDA
namespace kg = kernels::cuda;

void check_norm_cuda(const char* op, const Tensor& weight, const Tensor& bias) {
  check_on_cuda(op, {&weight, &bias});
  DINO_CHECK(weight.dtype() == DType::f32 && bias.dtype() == DType::f32, "[", op,
             "] weight and bias must be f32 on CUDA (master weights), got ",
             dtype_name(weight.dtype()), " and ", dtype_name(bias.dtype()));
}

// x: the f32 tensor that was normalised; x_dtype: the dtype its gradient must have.
void record_norm_cuda(Tensor& out, const Tensor& x, DType x_dtype, const Tensor& recorded_x,
                      const Tensor& weight, const Tensor& bias, const Tensor& mean,
                      const Tensor& rstd) {
  if (!needs_grad({recorded_x, weight, bias})) return;
  const int N = int(rows_of(x)), C = int(cols_of(x));
  Tensor xd = x.detach(), wd = weight.detach();
  const Shape ws = weight.shape(), bs = bias.shape();
  record(out, "layer_norm", {recorded_x, weight, bias}, [=](const Tensor& g) {
    const Tensor gb = in_dtype(g, DType::bf16);
    Tensor dx = Tensor::empty(xd.shape(), DType::f32, Device::cuda);
    Tensor dw = Tensor::empty(ws, DType::f32, Device::cuda);
    Tensor db = Tensor::empty(bs, DType::f32, Device::cuda);
    kg::layernorm_backward(f32_ptr(dx), f32_ptr(dw), f32_ptr(db), bf16_ptr(gb), f32_ptr(xd),
                           f32_ptr(mean), f32_ptr(rstd), f32_ptr(wd), N, C, cuda_stream());
    return std::vector<Tensor>{in_dtype(dx, x_dtype), dw, db};
  });
}

Tensor layer_norm_cuda(const Tensor& x_in, const Tensor& weight, const Tensor& bias, double eps) {
  check_norm_cuda("layer_norm", weight, bias);
  check_float("layer_norm", x_in, "x");
  const int64_t N64 = rows_of(x_in);
  const int N = as_int("layer_norm", N64, "rows"),
            C = as_int("layer_norm", cols_of(x_in), "columns");
  // The kernel reads the f32 residual stream; a bf16 x is widened first (its gradient is
  // narrowed back).
  const Tensor x = in_dtype(x_in, DType::f32);
  Tensor out = Tensor::empty(x.shape(), DType::bf16, Device::cuda);
  Tensor mean = Tensor::empty({N64}, DType::f32, Device::cuda);
  Tensor rstd = Tensor::empty({N64}, DType::f32, Device::cuda);
  kg::layernorm_forward(bf16_ptr(out), f32_ptr(mean), f32_ptr(rstd), f32_ptr(x), f32_ptr(weight),
                        f32_ptr(bias), N, C, float(eps), cuda_stream());
  record_norm_cuda(out, x, x_in.dtype(), x_in, weight, bias, mean, rstd);
  return out;
}

// The kernel's layout: the f32 stream plus a bf16 branch (what a GEMM writes). Other dtype
// pairs take the unfused path, which handles every mix.
AddNorm add_layer_norm_cuda(const Tensor& x, const Tensor& branch, const Tensor& weight,
                            const Tensor& bias, double eps) {
  check_on_cuda("add_layer_norm", {&branch});
  if (x.dtype() != DType::f32 || branch.dtype() != DType::bf16) {
    Tensor sum = add(x, branch);
    return {sum, layer_norm_cuda(sum, weight, bias, eps)};
  }
  check_norm_cuda("add_layer_norm", weight, bias);
  const int64_t N64 = rows_of(x);
  const int N = as_int("add_layer_norm", N64, "rows"),
            C = as_int("add_layer_norm", cols_of(x), "columns");
  Tensor sum = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  Tensor out = Tensor::empty(x.shape(), DType::bf16, Device::cuda);
  Tensor mean = Tensor::empty({N64}, DType::f32, Device::cuda);
  Tensor rstd = Tensor::empty({N64}, DType::f32, Device::cuda);
  kg::residual_layernorm_forward(f32_ptr(sum), bf16_ptr(out), f32_ptr(mean), f32_ptr(rstd),
                                 f32_ptr(x), bf16_ptr(branch), f32_ptr(weight), f32_ptr(bias), N,
                                 C, float(eps), cuda_stream());
  record_sum(sum, x, branch);
  record_norm_cuda(out, sum, DType::f32, sum, weight, bias, mean, rstd);
  return {sum, out};
}
#endif  // DINO_HAS_CUDA

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_norm_params("layer_norm", x, weight, bias, eps);
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return layer_norm_cuda(x, weight, bias, eps);
#endif
  }
  check_same("layer_norm", {&x, &weight, &bias});
  const int64_t N = rows_of(x), C = cols_of(x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({N}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({N}, x.dtype(), x.device());
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::layernorm_forward<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(),
                             weight.data<T>(), bias.data<T>(), N, C, eps);
  });
  record_norm_cpu(out, x, weight, bias, mean, rstd);
  return out;
}

AddNorm add_layer_norm(const Tensor& x, const Tensor& branch, const Tensor& weight,
                       const Tensor& bias, double eps) {
  check_norm_params("add_layer_norm", x, weight, bias, eps);
  check_defined("add_layer_norm", branch, "branch");
  DINO_CHECK(branch.shape() == x.shape(), "[add_layer_norm] branch ", shape_str(branch.shape()),
             " does not match x ", shape_str(x.shape()));
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return add_layer_norm_cuda(x, branch, weight, bias, eps);
#endif
  }
  check_same("add_layer_norm", {&x, &branch, &weight, &bias});
  const int64_t N = rows_of(x), C = cols_of(x);
  Tensor sum = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({N}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({N}, x.dtype(), x.device());
  dispatch_float("add_layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kc::residual_layernorm_forward<T>(sum.data<T>(), out.data<T>(), mean.data<T>(),
                                      rstd.data<T>(), x.data<T>(), branch.data<T>(),
                                      weight.data<T>(), bias.data<T>(), N, C, eps);
  });
  record_sum(sum, x, branch);
  record_norm_cpu(out, sum, weight, bias, mean, rstd);
  return {sum, out};
}

}  // namespace dino
