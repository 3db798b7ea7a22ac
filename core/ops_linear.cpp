// GEMM-backed ops: matmul, linear, the weight-normalised linear of DINO's head, and the
// patch embedding (im2col + GEMM). Each is ONE autograd node; forward and backward run on the
// tensors' backend (core/backend.h) in the dtypes of core/precision.h.
//
// On CUDA every product is a bf16 GEMM with fp32 accumulation. Parameters are f32 master
// weights, read through their cached bf16 copy (Tensor::bf16_copy on the parameter's own
// handle); activations are cast. linear and matmul write bf16; weight_norm_linear writes f32
// logits and patchify the f32 residual stream (fp32-output GEMMs). Backward: input gradients in
// the input's dtype; weight and bias gradients from one fp32-output GEMM (the bias's from its
// epilogue, a column sum of dy); an upstream gradient that arrives in f32 is rounded to bf16
// for the GEMMs. On the CPU all of it is in the op's one dtype.
//
// linear_gelu is a Linear followed by GELU as one node, because its bias gradient is the column
// sum of the GELU backward's output: the backward pass that writes dpre also sums it
// (gelu_bias_backward), so the weight product runs without the two column-sum launches and
// without reading dpre again. The forward is linear's then GELU's, the same kernels.
//
// linear_drop_path is a Linear followed by drop path (stochastic depth) as one node for the same
// reason: proj's and fc2's dy in training is what drop path's backward writes, so that pass
// sums it too (drop_path_bias_backward): before the products, one pass over dy instead of two
// (drop path's, then the column sums' re-read) and one launch fewer.
// The forward is linear's then drop_path's, the same kernels with the same call index.
#include <vector>

#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

namespace dino {

using namespace detail;

namespace {

// An activation (or gradient) as a GEMM operand: cast when its dtype differs, never recorded.
Tensor operand(const Tensor& t) {
  const DType dt = precision::gemm_operand(t);
  return t.dtype() == dt ? t.detach() : t.to(dt);
}

// A parameter in dtype dt (undefined stays undefined): its bf16 is the cached copy.
Tensor parameter_as(const Tensor& p, DType dt) {
  if (!p.defined()) return Tensor();
  if (p.dtype() == dt) return p.detach();
  return dt == DType::bf16 ? p.bf16_copy() : p.to(dt);
}

struct LinearGrads {
  Tensor dx, dw, db;
};

// The gradients of out (R, O) = x (R, I) @ w (O, I)^T + b for upstream g, from one backend
// call: dx (x's shape, in dx_dtype), dw (O, I) and db (O) in the fp32-output GEMM's dtype;
// each only when wanted.
LinearGrads linear_grads(const Tensor& g, const Tensor& x, const Tensor& w, bool want_dx,
                         DType dx_dtype, bool want_dw, bool want_db) {
  const Tensor gd = operand(g);
  const int64_t I = cols_of(x), O = cols_of(g);
  const DType acc = precision::accumulator(g);
  LinearGrads r;
  if (want_dx) r.dx = Tensor::empty(x.shape(), dx_dtype, x.device());
  if (want_dw) r.dw = Tensor::empty({O, I}, acc, x.device());
  if (want_db) r.db = Tensor::empty({O}, acc, x.device());
  backend(x.device()).linear_backward(r.dx, r.dw, r.db, gd, x, w);
  return r;
}

// A parameter's gradient from the fp32-output GEMM, in the parameter's dtype and shape.
Tensor param_grad(const Tensor& grad, DType dt, const Shape& shape) {
  return grad.defined() ? grad.to(dt).reshape(shape) : Tensor();
}

// What the backward of a Linear node (linear, linear_gelu, linear_drop_path) keeps of its
// inputs when the node is recorded: which gradients are wanted, and their dtypes and shapes.
struct LinearNode {
  bool gx, gw, gb;
  DType xdt, wdt, bdt;
  Shape wshape, bshape;
};

LinearNode linear_node(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const bool has_bias = bias.defined();
  return {x.requires_grad(),
          weight.requires_grad(),
          has_bias && bias.requires_grad(),
          x.dtype(),
          weight.dtype(),
          has_bias ? bias.dtype() : weight.dtype(),
          weight.shape(),
          has_bias ? bias.shape() : Shape{}};
}

// The node's {dx, dW, db} from dy. db is the products' column sum, or, for a fused op whose
// elementwise backward already summed it, `fused_db` (bias_grad_buffer's, filled).
std::vector<Tensor> linear_node_grads(const LinearNode& n, const Tensor& dy, const Tensor& xo,
                                      const Tensor& wo) {
  const LinearGrads r = linear_grads(dy, xo, wo, n.gx, n.xdt, n.gw, n.gb);
  return {r.dx, param_grad(r.dw, n.wdt, n.wshape), param_grad(r.db, n.bdt, n.bshape)};
}
std::vector<Tensor> linear_node_grads(const LinearNode& n, const Tensor& dy, const Tensor& xo,
                                      const Tensor& wo, const Tensor& fused_db) {
  const LinearGrads r = linear_grads(dy, xo, wo, n.gx, n.xdt, n.gw, false);
  return {r.dx, param_grad(r.dw, n.wdt, n.wshape), param_grad(fused_db, n.bdt, n.bshape)};
}

// The bias gradient (O) a fused elementwise backward fills, in the accumulator's dtype for the
// upstream gradient g; undefined when the bias needs none.
Tensor bias_grad_buffer(const LinearNode& n, const Tensor& g) {
  return n.gb ? Tensor::empty({n.wshape[0]}, precision::accumulator(g), g.device()) : Tensor();
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_defined("matmul", a, "a");
  check_defined("matmul", b, "b");
  precision::check_float_operands("matmul", {{&a, "a"}, {&b, "b"}});
  DINO_CHECK(a.dim() >= 2 && b.dim() >= 2, "[matmul] needs at least 2-D operands, got ",
             shape_str(a.shape()), " and ", shape_str(b.shape()));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  DINO_CHECK(b.size(-2) == K, "[matmul] inner dims differ: ", shape_str(a.shape()), " @ ",
             shape_str(b.shape()));
  const Shape batch(a.shape().begin(), a.shape().end() - 2);
  DINO_CHECK(b.dim() == 2 || Shape(b.shape().begin(), b.shape().end() - 2) == batch,
             "[matmul] batch dims differ: ", shape_str(a.shape()), " @ ", shape_str(b.shape()));
  Shape so = batch;
  so.push_back(M);
  so.push_back(N);
  const Tensor ao = operand(a), bo = operand(b);
  Tensor out = Tensor::empty(so, precision::gemm_operand(a), a.device());
  backend(a.device(), "matmul").matmul(out, ao, bo);
  if (needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    const DType adt = a.dtype(), bdt = b.dtype();
    record(out, "matmul", {a, b}, [=](const Tensor& g) {
      Tensor da = ga ? Tensor::empty(ao.shape(), adt, ao.device()) : Tensor();
      Tensor db = gb ? Tensor::empty(bo.shape(), bdt, bo.device()) : Tensor();
      backend(ao.device()).matmul_backward(da, db, operand(g), ao, bo);
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

namespace {

// The checks linear, linear_gelu and linear_drop_path share, naming the op.
void check_linear(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(op, x, "x");
  check_defined(op, weight, "weight");
  precision::check_float_operands(op, {{&x, "x"}, {&weight, "weight"}, {&bias, "bias"}});
  DINO_CHECK(weight.dim() == 2, "[", op, "] weight must be (out, in), got ",
             shape_str(weight.shape()));
  DINO_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "[", op, "] x has ", x.size(-1),
             " features in its last dim, weight expects ", weight.size(1));
  DINO_CHECK(!bias.defined() || bias.numel() == weight.size(0), "[", op, "] bias has ",
             bias.numel(), " elements, expected ", weight.size(0));
}

// x (..., I) -> (..., O) in the GEMM operand's dtype, with the bias epilogue.
Tensor linear_product(const char* op, const Tensor& xo, const Tensor& wo, const Tensor& bias) {
  Shape so = xo.shape();
  so.back() = wo.size(0);
  Tensor out = Tensor::empty(so, precision::gemm_operand(xo), xo.device());
  backend(xo.device(), op).linear(out, xo, wo, parameter_as(bias, out.dtype()));
  return out;
}

}  // namespace

// x (..., I) @ weight (O, I)^T + bias (O) -> (..., O)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_linear("linear", x, weight, bias);
  const Tensor xo = operand(x), wo = parameter_as(weight, precision::gemm_operand(weight));
  Tensor out = linear_product("linear", xo, wo, bias);
  if (needs_grad({x, weight, bias})) {
    const LinearNode n = linear_node(x, weight, bias);
    record(out, "linear", {x, weight, bias},
           [=](const Tensor& g) { return linear_node_grads(n, g, xo, wo); });
  }
  return out;
}

// gelu(x (..., I) @ weight (O, I)^T + bias (O)) -> (..., O). Saves the pre-activation (what
// gelu alone saves); backward: dpre and db in one pass, then dx and dW from dpre.
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_linear("linear_gelu", x, weight, bias);
  const Tensor xo = operand(x), wo = parameter_as(weight, precision::gemm_operand(weight));
  const Tensor pre = linear_product("linear_gelu", xo, wo, bias);
  Tensor out = Tensor::empty(pre.shape(), pre.dtype(), pre.device());
  backend(pre.device()).unary(out, UnaryOp::gelu, pre, 0.0);
  if (needs_grad({x, weight, bias})) {
    const LinearNode n = linear_node(x, weight, bias);
    record(out, "linear_gelu", {x, weight, bias}, [=](const Tensor& g) {
      // g arrives in out's dtype (the engine casts a CUDA gradient to its tensor's dtype).
      const Tensor dpre = Tensor::empty(pre.shape(), pre.dtype(), pre.device());
      const Tensor db = bias_grad_buffer(n, g);
      backend(pre.device()).gelu_bias_backward(dpre, db, g, pre);
      return linear_node_grads(n, dpre, xo, wo, db);
    });
  }
  return out;
}

// drop_path(x (..., I) @ weight (O, I)^T + bias (O), p) -> (..., O). Saves nothing beyond
// linear's operands (the mask is a function of the nonce and the call); backward: dy and db in
// one pass, then dx and dW from dy.
Tensor linear_drop_path(const Tensor& x, const Tensor& weight, const Tensor& bias, double p,
                        DropPathNoise& noise) {
  check_linear("linear_drop_path", x, weight, bias);
  DINO_CHECK(p >= 0 && p < 1, "[linear_drop_path] probability must be in [0, 1), got ", p);
  if (p == 0) return linear(x, weight, bias);
  DINO_CHECK(x.dim() >= 2, "[linear_drop_path] x needs a batch dim and a feature dim, got ",
             shape_str(x.shape()));
  const DropPathCall dc = take_drop_path_call("linear_drop_path", x, noise);
  const Tensor xo = operand(x), wo = parameter_as(weight, precision::gemm_operand(weight));
  const Tensor pre = linear_product("linear_drop_path", xo, wo, bias);
  Tensor out = Tensor::empty(pre.shape(), pre.dtype(), pre.device());
  backend(pre.device()).drop_path(out, pre, dc.nonce, dc.call, dc.rank, dc.ranks, p);
  if (needs_grad({x, weight, bias})) {
    const LinearNode n = linear_node(x, weight, bias);
    const DType odt = out.dtype();
    const Shape oshape = out.shape();
    record(out, "linear_drop_path", {x, weight, bias}, [=](const Tensor& g) {
      const Tensor dy = Tensor::empty(oshape, odt, g.device());
      const Tensor db = bias_grad_buffer(n, g);
      backend(g.device())
          .drop_path_bias_backward(dy, db, g.to(odt), dc.nonce, dc.call, dc.rank, dc.ranks, p);
      return linear_node_grads(n, dy, xo, wo, db);
    });
  }
  return out;
}

namespace {

void check_weight_norm_params(const char* op, const Tensor& v, const Tensor& g) {
  check_defined(op, v, "v");
  check_defined(op, g, "g");
  DINO_CHECK(v.dim() == 2, "[", op, "] v must be (K, C), got ", shape_str(v.shape()));
  DINO_CHECK(g.numel() == v.size(0), "[", op, "] g has ", g.numel(), " elements, expected ",
             v.size(0), " (rows of v)");
  precision::require_f32_on_cuda(op, v, "v", "master weights");
  precision::require_f32_on_cuda(op, g, "g", "master weights");
}

// dv, dg (each when wanted, in v's dtype) of w = weight_norm(v, g) from dw.
std::vector<Tensor> weight_norm_grads(const Tensor& dw, const Tensor& v, const Tensor& g,
                                      const Tensor& vnorm, bool gv, bool gg) {
  Tensor dv = gv ? Tensor::empty(v.shape(), v.dtype(), v.device()) : Tensor();
  Tensor dg = gg ? Tensor::empty(g.shape(), g.dtype(), g.device()) : Tensor();
  backend(v.device()).weight_norm_backward(dv, dg, dw.to(v.dtype()), v, g, vnorm);
  return {dv, dg};
}

}  // namespace

Tensor weight_norm(const Tensor& v, const Tensor& g) {
  check_weight_norm_params("weight_norm", v, g);
  precision::check_float_operands("weight_norm", {{&v, "v"}, {&g, "g"}});
  const int64_t K = v.size(0), C = v.size(1);
  Tensor w = Tensor::empty({K, C}, v.dtype(), v.device());
  Tensor vnorm = Tensor::empty({K}, v.dtype(), v.device());
  backend(v.device(), "weight_norm").weight_norm(w, vnorm, v, g);
  if (needs_grad({v, g})) {
    const Tensor vd = v.detach(), gd = g.detach();
    const bool gv = v.requires_grad(), gg = g.requires_grad();
    record(w, "weight_norm", {v, g},
           [=](const Tensor& dw) { return weight_norm_grads(dw, vd, gd, vnorm, gv, gg); });
  }
  return w;
}

// DINO's last layer as ONE node: w = g * v / ||v|| per row (on CUDA written straight as the
// bf16 GEMM operand), logits (..., K) = x w^T in precision::accumulator (f32 on CUDA). Backward:
// dx = dy w; dw = dy^T x (fp32-output GEMM), then the weight-norm backward (dv, and dg only
// when g trains: with norm_last_layer it is frozen).
Tensor weight_norm_linear(const Tensor& x, const Tensor& v, const Tensor& g) {
  check_defined("weight_norm_linear", x, "x");
  check_weight_norm_params("weight_norm_linear", v, g);
  precision::check_float_operands("weight_norm_linear", {{&x, "x"}, {&v, "v"}, {&g, "g"}});
  const int64_t K = v.size(0), C = v.size(1);
  DINO_CHECK(x.dim() >= 1 && x.size(-1) == C, "[weight_norm_linear] x has ",
             x.dim() ? x.size(-1) : 0, " features in its last dim, v expects ", C);
  const Backend& be = backend(x.device(), "weight_norm_linear");
  const Tensor xo = operand(x);
  Tensor w = Tensor::empty({K, C}, precision::gemm_operand(v), v.device());
  Tensor vnorm = Tensor::empty({K}, v.dtype(), v.device());
  be.weight_norm(w, vnorm, v, g);
  Shape so = x.shape();
  so.back() = K;
  Tensor out = Tensor::empty(so, precision::accumulator(x), x.device());
  be.linear(out, xo, w, Tensor());
  if (needs_grad({x, v, g})) {
    const bool gx = x.requires_grad(), gv = v.requires_grad(), gg = g.requires_grad();
    const Tensor vd = v.detach(), gd = g.detach();
    const DType xdt = x.dtype();
    record(out, "weight_norm_linear", {x, v, g}, [=](const Tensor& dy) {
      const LinearGrads r = linear_grads(dy, xo, w, gx, xdt, gv || gg, false);
      std::vector<Tensor> dvg(2);
      if (gv || gg) dvg = weight_norm_grads(r.dw, vd, gd, vnorm, gv, gg);
      return std::vector<Tensor>{r.dx, dvg[0], dvg[1]};
    });
  }
  return out;
}

// img (B, C, H, W) -> tokens (B, Np, D): im2col (one pass over the image, into the GEMM's
// operand dtype), then one GEMM against the (D, C*P*P) weight with the bias in the output's
// dtype (f32 on CUDA: the residual stream). The patches are saved for dW (on CUDA bf16, half
// the image's bytes). The CUDA backend computes no image gradient: images never need one.
Tensor patchify(const Tensor& img, const Tensor& weight, const Tensor& bias) {
  check_defined("patchify", img, "img");
  check_defined("patchify", weight, "weight");
  precision::check_float_operands("patchify",
                                  {{&img, "img"}, {&weight, "weight"}, {&bias, "bias"}});
  precision::require_f32_on_cuda("patchify", img, "img", "the image batch");
  DINO_CHECK(img.dim() == 4, "[patchify] img must be (B, C, H, W), got ", shape_str(img.shape()));
  DINO_CHECK(weight.dim() == 4 && weight.size(2) == weight.size(3),
             "[patchify] weight must be "
             "(D, C, P, P), got ",
             shape_str(weight.shape()));
  const int64_t B = img.size(0), C = img.size(1), H = img.size(2), W = img.size(3);
  const int64_t D = weight.size(0), P = weight.size(2);
  DINO_CHECK(weight.size(1) == C, "[patchify] image has ", C, " channels, weight expects ",
             weight.size(1));
  DINO_CHECK(H >= P && W >= P, "[patchify] image ", H, "x", W, " is smaller than the patch ", P);
  DINO_CHECK(!bias.defined() || bias.numel() == D, "[patchify] bias has ", bias.numel(),
             " elements, expected ", D);
  const Backend& be = backend(img.device(), "patchify");
  const int64_t Np = (H / P) * (W / P);
  const Tensor cols =
      Tensor::empty({B * Np, C * P * P}, precision::gemm_operand(img), img.device());
  be.im2col_patches(cols, img, P);
  const Tensor wo = parameter_as(weight, precision::gemm_operand(weight));
  Tensor out = Tensor::empty({B, Np, D}, precision::accumulator(img), img.device());
  be.linear(out, cols, wo, parameter_as(bias, out.dtype()));
  if (needs_grad({img, weight, bias})) {
    const bool gi = img.requires_grad(), gw = weight.requires_grad();
    const bool gb = bias.defined() && bias.requires_grad();
    const DType wdt = weight.dtype(), bdt = bias.defined() ? bias.dtype() : wdt;
    const Shape ishape = img.shape(), wshape = weight.shape(),
                bshape = bias.defined() ? bias.shape() : Shape{};
    record(out, "patchify", {img, weight, bias}, [=](const Tensor& g) {
      const LinearGrads r = linear_grads(g, cols, wo, gi, cols.dtype(), gw, gb);
      Tensor dimg;
      if (gi) {
        dimg = Tensor::empty(ishape, r.dx.dtype(), r.dx.device());
        backend(dimg.device()).col2im_patches(dimg, r.dx, P);
      }
      return std::vector<Tensor>{dimg, param_grad(r.dw, wdt, wshape),
                                 param_grad(r.db, bdt, bshape)};
    });
  }
  return out;
}

}  // namespace dino
