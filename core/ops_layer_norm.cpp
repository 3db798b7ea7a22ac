// LayerNorm, and LayerNorm fused with the residual add that precedes it in a pre-norm block.
// Each norm is ONE autograd node with a fused backward (dx, dweight, dbias from the saved
// row statistics), both directions on the tensors' backend (core/backend.h). Dtypes follow
// core/precision.h: on CUDA the norm reads the f32 residual stream and writes bf16 for the
// next GEMM; the fused form also takes the bf16 branch a GEMM wrote.
//
// Why fuse the add: unfused, the add reads x (4 B/element) and the branch (2) and writes the
// sum (4), then the norm reads the sum again (4) and writes (2): 16 B per element on CUDA.
// Fused, the sum is normalised while it is in registers: 12 B, a quarter less over the
// twice-per-block pair. The backward is unchanged: the sum's gradient is the norm's dx plus
// whatever the later blocks send back, which the tape adds as it would for an add.
#include <vector>

#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

namespace dino {

using namespace detail;

namespace {

void check_norm_params(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       double eps) {
  check_defined(op, x, "x");
  check_defined(op, weight, "weight");
  check_defined(op, bias, "bias");
  DINO_CHECK(x.dim() >= 1, "[", op, "] x needs at least one dim");
  const int64_t C = cols_of(x);
  DINO_CHECK(weight.numel() == C, "[", op, "] weight has ", weight.numel(), " elements, expected ",
             C, " (last dim of x)");
  DINO_CHECK(bias.numel() == C, "[", op, "] bias has ", bias.numel(), " elements, expected ", C,
             " (last dim of x)");
  DINO_CHECK(eps > 0, "[", op, "] eps must be positive, got ", eps);
  precision::require_f32_on_cuda(op, weight, "weight", "master weights");
  precision::require_f32_on_cuda(op, bias, "bias", "master weights");
}

// Records the norm's node on `out`: x is the tensor that was normalised (in the norm's input
// dtype; for the fused op, the sum), recorded_x the op's input whose gradient it gives.
void record_norm(Tensor& out, const Tensor& x, const Tensor& recorded_x, const Tensor& weight,
                 const Tensor& bias, const Tensor& mean, const Tensor& rstd) {
  if (!needs_grad({recorded_x, weight, bias})) return;
  const Tensor xd = x.detach(), wd = weight.detach();
  const Shape ws = weight.shape(), bs = bias.shape();
  const DType out_dtype = out.dtype(), x_dtype = recorded_x.dtype();
  record(out, "layer_norm", {recorded_x, weight, bias}, [=](const Tensor& g) {
    const Tensor gd = g.to(out_dtype);
    Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    Tensor dw = Tensor::empty(ws, wd.dtype(), wd.device());
    Tensor db = Tensor::empty(bs, wd.dtype(), wd.device());
    backend(xd.device()).layer_norm_backward(dx, dw, db, gd, xd, mean, rstd, wd);
    return std::vector<Tensor>{dx.to(x_dtype), dw, db};
  });
}

// The sum's node: the gradient passes to both terms (cast to each one's dtype by the tape).
void record_sum(Tensor& sum, const Tensor& x, const Tensor& branch) {
  if (!needs_grad({x, branch})) return;
  record(sum, "add", {x, branch}, [](const Tensor& g) { return std::vector<Tensor>{g, g}; });
}

struct RowStats {
  Tensor mean, rstd;
};

RowStats row_stats(const Tensor& x) {
  const int64_t N = rows_of(x);
  return {Tensor::empty({N}, x.dtype(), x.device()), Tensor::empty({N}, x.dtype(), x.device())};
}

}  // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, double eps) {
  check_norm_params("layer_norm", x_in, weight, bias, eps);
  precision::check_float_operands("layer_norm",
                                  {{&x_in, "x"}, {&weight, "weight"}, {&bias, "bias"}});
  const Tensor x = x_in.to(precision::norm_input(x_in));
  Tensor out = Tensor::empty(x.shape(), precision::norm_output(x_in), x.device());
  const RowStats s = row_stats(x);
  backend(x.device(), "layer_norm").layer_norm(out, s.mean, s.rstd, x, weight, bias, eps);
  record_norm(out, x, x_in, weight, bias, s.mean, s.rstd);
  return out;
}

AddNorm add_layer_norm(const Tensor& x, const Tensor& branch, const Tensor& weight,
                       const Tensor& bias, double eps) {
  check_norm_params("add_layer_norm", x, weight, bias, eps);
  check_defined("add_layer_norm", branch, "branch");
  DINO_CHECK(branch.shape() == x.shape(), "[add_layer_norm] branch ", shape_str(branch.shape()),
             " does not match x ", shape_str(x.shape()));
  precision::check_float_operands(
      "add_layer_norm", {{&x, "x"}, {&branch, "branch"}, {&weight, "weight"}, {&bias, "bias"}});
  if (!precision::fuses_add_norm(x, branch)) {
    Tensor sum = add(x, branch);
    return {sum, layer_norm(sum, weight, bias, eps)};
  }
  Tensor sum = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor out = Tensor::empty(x.shape(), precision::norm_output(x), x.device());
  const RowStats s = row_stats(x);
  backend(x.device(), "add_layer_norm")
      .add_layer_norm(sum, out, s.mean, s.rstd, x, branch, weight, bias, eps);
  record_sum(sum, x, branch);
  record_norm(out, sum, sum, weight, bias, s.mean, s.rstd);
  return {sum, out};
}

}  // namespace dino
