// Elementwise ops with numpy broadcasting, and the unary maps (exp, log, sqrt, gelu, ...).
// Dtypes follow core/precision.h: on the CPU one float dtype; on CUDA f32 and bf16 may mix and
// the result is f32 when either operand is.
#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

namespace dino {

namespace detail {

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    DINO_CHECK(da == db || da == 1 || db == 1, "[", op, "] shapes ", shape_str(a), " and ",
               shape_str(b), " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  DINO_CHECK(broadcast_shapes("sum_to", shape, g.shape()) == g.shape(), "[sum_to] cannot sum ",
             shape_str(g.shape()), " to ", shape_str(shape));
  Tensor out = Tensor::empty(shape, g.dtype(), g.device());
  backend(g.device()).sum_to(out, g);
  return out;
}

}  // namespace detail

using namespace detail;

namespace {

// a op b into a new tensor of dtype dt; not recorded.
Tensor apply_binary(BinaryOp op, const Tensor& a, const Tensor& b, DType dt) {
  Tensor out = Tensor::empty(broadcast_shapes(op_name(op), a.shape(), b.shape()), dt, a.device());
  if (out.numel()) backend(a.device()).binary(out, op, a, b);
  return out;
}

// g summed to `shape`, in dtype dt.
Tensor fold(const Tensor& g, const Shape& shape, DType dt) { return sum_to(g, shape).to(dt); }

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = op_name(op);
  check_defined(name, a, "a");
  check_defined(name, b, "b");
  precision::check_float_operands(name, {{&a, "a"}, {&b, "b"}});
  Tensor out = apply_binary(op, a, b, precision::promote(a.dtype(), b.dtype()));
  if (!needs_grad({a, b})) return out;
  const Shape sa = a.shape(), sb = b.shape(), so = out.shape();
  const DType ta = a.dtype(), tb = b.dtype();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  // Only what the backward reads (mul's da reads b, its db a; div's db both).
  const Tensor ad = (op == BinaryOp::mul || op == BinaryOp::div) && gb ? a.detach() : Tensor();
  const Tensor bd = op == BinaryOp::mul || op == BinaryOp::div ? b.detach() : Tensor();
  record(out, name, {a, b}, [=](const Tensor& g) {
    // Each gradient is summed to its input's shape and cast to its dtype; a product that is
    // summed afterwards is formed in at least f32, one that is not in the input's dtype.
    auto work = [&](const Shape& s, DType t) { return s == so ? t : precision::accumulation(t); };
    Tensor da, db;
    switch (op) {
      case BinaryOp::add:
        if (ga) da = fold(g, sa, ta);
        if (gb) db = fold(g, sb, tb);
        break;
      case BinaryOp::sub:
        if (ga) da = fold(g, sa, ta);
        if (gb) db = scale(sum_to(g, sb), -1.0).to(tb);
        break;
      case BinaryOp::mul:
        if (ga) da = fold(apply_binary(BinaryOp::mul, g, bd, work(sa, ta)), sa, ta);
        if (gb) db = fold(apply_binary(BinaryOp::mul, g, ad, work(sb, tb)), sb, tb);
        break;
      case BinaryOp::div:
        if (ga) da = fold(apply_binary(BinaryOp::div, g, bd, work(sa, ta)), sa, ta);
        if (gb) {  // -(g a) / b^2
          const DType acc = precision::accumulation(tb);
          Tensor num = apply_binary(BinaryOp::mul, g, ad, precision::accumulation(g.dtype()));
          Tensor den = apply_binary(BinaryOp::mul, bd, bd, acc);
          Tensor q = apply_binary(BinaryOp::div, num, den, work(sb, tb));
          db = scale(sum_to(q, sb), -1.0).to(tb);
        }
        break;
    }
    return std::vector<Tensor>{da, db};
  });
  return out;
}

Tensor unary(UnaryOp op, const Tensor& x, double s = 0.0) {
  const char* name = op_name(op);
  check_defined(name, x, "x");
  precision::check_float_operands(name, {{&x, "x"}});
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend(x.device()).unary(out, op, x, s);
  if (needs_grad({x})) {
    const Tensor xd = x.detach(), yd = out.detach();
    record(out, name, {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
      backend(xd.device()).unary_backward(dx, op, g, xd, yd, s);
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
Tensor scale(const Tensor& x, double s) { return unary(UnaryOp::scale, x, s); }
Tensor add_scalar(const Tensor& x, double s) { return unary(UnaryOp::add_scalar, x, s); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::sqrt, x); }
Tensor gelu(const Tensor& x) { return unary(UnaryOp::gelu, x); }

}  // namespace dino
