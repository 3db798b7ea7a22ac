// Elementwise ops with numpy broadcasting, and the unary maps (exp, log, sqrt, gelu). On CUDA
// (kernels/cuda/elementwise.cu, reduce.cu for sum_to) operands are f32 or bf16, mixed allowed.
#include <cmath>

#include "core/ops_util.h"
#include "kernels/cpu/kernels.h"

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

namespace {

constexpr int kMaxDims = 5;

// Strides (in elements) of `shape` read as if it had `out`'s rank, 0 along broadcast dims.
std::array<int64_t, kMaxDims> broadcast_strides(const Shape& shape, const Shape& out) {
  std::array<int64_t, kMaxDims> st{};
  int64_t stride = 1;
  const size_t off = out.size() - shape.size();
  for (size_t i = out.size(); i-- > 0;) {
    const int64_t d = i < off ? 1 : shape[i - off];
    st[i] = d == 1 ? 0 : stride;
    stride *= d;
  }
  return st;
}

// Below this many elements an elementwise loop runs on one thread: a parallel region's fork
// and barrier would cost more than the loop.
constexpr int64_t kParallelMin = int64_t(1) << 15;

// out[i] = f(a[ia], b[ib]) over the broadcast index space, innermost dim contiguous. Rows of
// the innermost dim are independent, so threads share them out.
template <class T, class F>
void broadcast_binary(T* out, const T* a, const T* b, const Shape& sa, const Shape& sb,
                      const Shape& so, F f) {
  const int64_t n = shape_numel(so);
  if (sa == so && sb == so) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
    return;
  }
  const auto st_a = broadcast_strides(sa, so), st_b = broadcast_strides(sb, so);
  const int nd = int(so.size());
  const int64_t inner = nd ? so[nd - 1] : 1;
  const int64_t ia_step = nd ? st_a[nd - 1] : 0, ib_step = nd ? st_b[nd - 1] : 0;
  const int64_t rows = inner ? n / inner : 0;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t ia = 0, ib = 0, rest = r;  // r's outer index, last outer dim fastest
    for (int d = nd - 2; d >= 0; --d) {
      const int64_t i = rest % so[d];
      rest /= so[d];
      ia += i * st_a[d];
      ib += i * st_b[d];
    }
    T* o = out + r * inner;
    for (int64_t j = 0; j < inner; ++j) o[j] = f(a[ia + j * ia_step], b[ib + j * ib_step]);
  }
}

}  // namespace

Tensor sum_to_cuda(const Tensor& g, const Shape& shape);

namespace {

// When only leading dims are summed (a broadcast bias or position table), g is (R, C) and the
// result is its column sums. Threads share out blocks of columns; each column adds its rows
// in order, as the general loop below does, so the result is the same. Returns false, with
// out untouched, when a dim after a kept one is summed.
bool sum_leading_dims(Tensor& out, const Tensor& g, const Shape& shape) {
  const Shape& so = g.shape();
  if (shape.size() > so.size()) return false;
  const size_t off = so.size() - shape.size();
  size_t first_kept = so.size();
  for (size_t d = 0; d < so.size(); ++d) {
    const int64_t t = d < off ? 1 : shape[d - off];
    if (t == so[d] && so[d] != 1 && first_kept == so.size()) first_kept = d;
    if (d >= first_kept && t != so[d]) return false;  // a reduced dim after a kept one
  }
  int64_t C = 1;
  for (size_t d = first_kept; d < so.size(); ++d) C *= so[d];
  const int64_t R = C ? g.numel() / C : 0;
  dispatch_float("sum_to", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    column_sums<T>(out.data<T>(), g.data<T>(), R, C, g.numel() >= kParallelMin);
  });
  return true;
}

}  // namespace

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  if (on_cuda(g)) return sum_to_cuda(g, shape);
  Tensor out = Tensor::zeros(shape, g.dtype(), g.device());
  if (sum_leading_dims(out, g, shape)) return out;
  const auto st = broadcast_strides(shape, g.shape());
  const Shape& so = g.shape();
  const int nd = int(so.size());
  dispatch_float("sum_to", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pg = g.data<T>();
    T* po = out.data<T>();
    std::array<int64_t, kMaxDims> idx{};
    const int64_t n = g.numel();
    for (int64_t i = 0; i < n; ++i) {  // sequential: a fixed summation order
      int64_t o = 0;
      for (int d = 0; d < nd; ++d) o += idx[d] * st[d];
      po[o] += pg[i];
      for (int d = nd - 1; d >= 0; --d) {
        if (++idx[d] < so[d]) break;
        idx[d] = 0;
      }
    }
  });
  return out;
}

#ifdef DINO_HAS_CUDA
namespace {
namespace kg = kernels::cuda;
}  // namespace

// g (contiguous) as kept dims x reduced dims: consecutive non-1 dims of the same kind merge.
Tensor sum_to_cuda(const Tensor& g, const Shape& shape) {
  DINO_CHECK(g.dtype() == DType::f32 || g.dtype() == DType::bf16,
             "[sum_to] expects f32 or bf16 on CUDA, got ", dtype_name(g.dtype()));
  const Shape& so = g.shape();
  if (shape.size() > so.size()) {  // only leading 1s added: the same elements
    DINO_CHECK(shape_numel(shape) == g.numel(), "[sum_to] cannot sum ", shape_str(so), " to ",
               shape_str(shape));
    return g.detach().reshape(shape).clone();
  }
  const int nd = int(so.size());
  const size_t off = so.size() - shape.size();
  std::array<int64_t, kMaxDims> gstride{};
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; --d) {
    gstride[size_t(d)] = s;
    s *= so[size_t(d)];
  }
  kg::SumToGeom geom;
  int prev = -1;  // kind of the last non-1 dim: 0 kept, 1 reduced
  for (int d = 0; d < nd; ++d) {
    const int64_t n = so[size_t(d)];
    const int64_t t = size_t(d) < off ? 1 : shape[size_t(d) - off];
    DINO_CHECK(t == n || t == 1, "[sum_to] cannot sum ", shape_str(so), " to ", shape_str(shape));
    if (n == 1) continue;
    const int kind = t == 1 ? 1 : 0;
    kg::StridedDims& sd = kind ? geom.red : geom.keep;
    if (kind == prev) {  // contiguous g: the outer dim's stride is inner stride x inner size
      sd.size[sd.nd - 1] *= n;
      sd.stride[sd.nd - 1] = gstride[size_t(d)];
    } else {
      sd.size[sd.nd] = n;
      sd.stride[sd.nd] = gstride[size_t(d)];
      ++sd.nd;
    }
    prev = kind;
  }
  if (geom.red.nd == 0) return g.detach().reshape(shape).clone();
  Tensor out = Tensor::empty(shape, g.dtype(), g.device());
  kg::sum_to_shape(out.raw_data(), g.raw_data(), g.dtype() == DType::bf16, geom, cuda_stream());
  return out;
}
#else
Tensor sum_to_cuda(const Tensor& g, const Shape&) {
  require_cpu("sum_to", g);
  return g;
}
#endif

}  // namespace detail

using namespace detail;

namespace {

enum class BinOp { add, sub, mul, div };
enum class UnaryKind { scale, add_scalar, exp, log, sqrt, gelu };

Tensor binary_cuda(BinOp kind, const char* op, const Tensor& a, const Tensor& b);
Tensor unary_cuda(const char* op, UnaryKind kind, const Tensor& x, double s);

Tensor binary(BinOp kind, const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a, "a");
  check_defined(op, b, "b");
  if (on_cuda(a) || on_cuda(b)) return binary_cuda(kind, op, a, b);
  check_same(op, {&a, &b});
  const Shape so = broadcast_shapes(op, a.shape(), b.shape());
  Tensor out = Tensor::empty(so, a.dtype(), a.device());
  dispatch_float(op, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *pa = a.data<T>(), *pb = b.data<T>();
    T* po = out.data<T>();
    switch (kind) {
      case BinOp::add: broadcast_binary(po, pa, pb, a.shape(), b.shape(), so, [](T x, T y) { return x + y; }); break;
      case BinOp::sub: broadcast_binary(po, pa, pb, a.shape(), b.shape(), so, [](T x, T y) { return x - y; }); break;
      case BinOp::mul: broadcast_binary(po, pa, pb, a.shape(), b.shape(), so, [](T x, T y) { return x * y; }); break;
      case BinOp::div: broadcast_binary(po, pa, pb, a.shape(), b.shape(), so, [](T x, T y) { return x / y; }); break;
    }
  });
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    Tensor ad = a.detach(), bd = b.detach();
    record(out, op, {a, b}, [=](const Tensor& g) {
      Tensor da, db;
      switch (kind) {
        case BinOp::add:
          if (ga) da = sum_to(g, sa);
          if (gb) db = sum_to(g, sb);
          break;
        case BinOp::sub:
          if (ga) da = sum_to(g, sa);
          if (gb) db = sum_to(scale(g, -1.0), sb);
          break;
        case BinOp::mul:
          if (ga) da = sum_to(mul(g, bd), sa);
          if (gb) db = sum_to(mul(g, ad), sb);
          break;
        case BinOp::div:
          if (ga) da = sum_to(div(g, bd), sa);
          if (gb) db = sum_to(scale(div(mul(g, ad), mul(bd, bd)), -1.0), sb);
          break;
      }
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

// out = f(x) elementwise; backward dx = g * df(x, y) with y = f(x).
template <class F, class DF>
Tensor unary(const char* op, const Tensor& x, F f, DF df) {
  check_defined(op, x, "x");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = T(f(double(px[i])));
  });
  if (needs_grad({x})) {
    Tensor xd = x.detach(), yd = out.detach();
    record(out, op, {x}, [=](const Tensor& g) {
      Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
      dispatch_float(op, g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T *pg = g.data<T>(), *px = xd.data<T>(), *py = yd.data<T>();
        T* pd = dx.data<T>();
        const int64_t n = g.numel();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) pd[i] = T(double(pg[i]) * df(double(px[i]), double(py[i])));
      });
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

#ifdef DINO_HAS_CUDA
namespace kg = kernels::cuda;

// The CUDA forms (ARCHITECTURE §3): operands f32 or bf16, mixed allowed; the output is f32 when
// either operand is, else bf16; math in f32, one rounding per result.
void check_cuda_float(const char* op, const Tensor& t, const char* name) {
  check_on_cuda(op, {&t});
  check_float(op, t, name);
}

// The broadcast's output index space with size-1 dims dropped and adjacent dims merged where
// both operands stay contiguous across them (same shapes collapse to one dim).
kg::BroadcastGeom broadcast_geom(const Shape& sa, const Shape& sb, const Shape& so) {
  const auto st_a = broadcast_strides(sa, so), st_b = broadcast_strides(sb, so);
  kg::BroadcastGeom g;
  int nd = 0;
  for (size_t d = 0; d < so.size(); ++d) {
    if (so[d] == 1) continue;
    if (nd > 0 && g.stride_a[nd - 1] == st_a[d] * so[d] && g.stride_b[nd - 1] == st_b[d] * so[d]) {
      g.size[nd - 1] *= so[d];
      g.stride_a[nd - 1] = st_a[d];
      g.stride_b[nd - 1] = st_b[d];
    } else {
      g.size[nd] = so[d];
      g.stride_a[nd] = st_a[d];
      g.stride_b[nd] = st_b[d];
      ++nd;
    }
  }
  if (nd == 0) {  // one element
    g.size[0] = 1;
    g.stride_a[0] = g.stride_b[0] = 0;
    nd = 1;
  }
  g.nd = nd;
  return g;
}

kg::BinaryOp to_kernel_op(BinOp kind) {
  switch (kind) {
    case BinOp::add: return kg::BinaryOp::add;
    case BinOp::sub: return kg::BinaryOp::sub;
    case BinOp::mul: return kg::BinaryOp::mul;
    case BinOp::div: return kg::BinaryOp::div;
  }
  return kg::BinaryOp::add;
}

// a op b with numpy broadcasting into a new tensor of dtype dt; not recorded.
Tensor launch_binary(const char* op, BinOp kind, const Tensor& a, const Tensor& b, DType dt) {
  const Shape so = broadcast_shapes(op, a.shape(), b.shape());
  Tensor out = Tensor::empty(so, dt, Device::cuda);
  if (out.numel() == 0) return out;
  kg::broadcast_binary(out.raw_data(), dt == DType::bf16, a.raw_data(), a.dtype() == DType::bf16,
                       b.raw_data(), b.dtype() == DType::bf16,
                       broadcast_geom(a.shape(), b.shape(), so), to_kernel_op(kind),
                       cuda_stream());
  return out;
}

Tensor binary_cuda(BinOp kind, const char* op, const Tensor& a, const Tensor& b) {
  check_cuda_float(op, a, "a");
  check_cuda_float(op, b, "b");
  const DType od =
      a.dtype() == DType::f32 || b.dtype() == DType::f32 ? DType::f32 : DType::bf16;
  Tensor out = launch_binary(op, kind, a, b, od);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape(), so = out.shape();
    const DType ta = a.dtype(), tb = b.dtype();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    // Products only where they are needed (div's db needs a; mul's da needs b, db needs a).
    Tensor ad = (kind == BinOp::mul && gb) || (kind == BinOp::div && gb) ? a.detach() : Tensor();
    Tensor bd = kind == BinOp::mul || kind == BinOp::div ? b.detach() : Tensor();
    record(out, op, {a, b}, [=](const Tensor& g) {
      // Each gradient is summed to its input's shape and cast to its dtype; a product that is
      // summed afterwards is formed in f32, one that is not in the input's dtype.
      auto work = [&](const Shape& s, DType t) { return s == so ? t : DType::f32; };
      auto fold = [&](const Tensor& t, const Shape& s, DType dt) {
        return in_dtype(sum_to(t, s), dt);
      };
      Tensor da, db;
      switch (kind) {
        case BinOp::add:
          if (ga) da = fold(g, sa, ta);
          if (gb) db = fold(g, sb, tb);
          break;
        case BinOp::sub:
          if (ga) da = fold(g, sa, ta);
          if (gb) db = in_dtype(scale(sum_to(g, sb), -1.0), tb);
          break;
        case BinOp::mul:
          if (ga) da = fold(launch_binary(op, BinOp::mul, g, bd, work(sa, ta)), sa, ta);
          if (gb) db = fold(launch_binary(op, BinOp::mul, g, ad, work(sb, tb)), sb, tb);
          break;
        case BinOp::div:
          if (ga) da = fold(launch_binary(op, BinOp::div, g, bd, work(sa, ta)), sa, ta);
          if (gb) {  // -(g a) / b^2
            Tensor ga_ = launch_binary(op, BinOp::mul, g, ad, DType::f32);
            Tensor bb = launch_binary(op, BinOp::mul, bd, bd, DType::f32);
            Tensor q = launch_binary(op, BinOp::div, ga_, bb, work(sb, tb));
            db = in_dtype(scale(sum_to(q, sb), -1.0), tb);
          }
          break;
      }
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

Tensor unary_cuda(const char* op, UnaryKind kind, const Tensor& x, double s) {
  check_cuda_float(op, x, "x");
  static const kg::UnaryOp ops[] = {kg::UnaryOp::scale, kg::UnaryOp::add_scalar,
                                    kg::UnaryOp::exp,   kg::UnaryOp::log,
                                    kg::UnaryOp::sqrt,  kg::UnaryOp::gelu};
  const kg::UnaryOp u = ops[int(kind)];
  const bool bf = x.dtype() == DType::bf16;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), Device::cuda);
  kg::unary_forward(out.raw_data(), x.raw_data(), bf, x.numel(), u, float(s), cuda_stream());
  if (needs_grad({x})) {
    // The derivative reads x, except for scale and add_scalar.
    const bool reads_x = kind != UnaryKind::scale && kind != UnaryKind::add_scalar;
    Tensor xd = reads_x ? x.detach() : Tensor();
    const DType dt = x.dtype();
    record(out, op, {x}, [=](const Tensor& g) {
      Tensor gd = in_dtype(g, dt);
      Tensor dx = Tensor::empty(gd.shape(), dt, Device::cuda);
      kg::unary_backward(dx.raw_data(), gd.raw_data(), reads_x ? xd.raw_data() : nullptr,
                         dt == DType::bf16, gd.numel(), u, float(s), cuda_stream());
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}
#else
Tensor binary_cuda(BinOp, const char* op, const Tensor& a, const Tensor&) {
  require_cpu(op, a);
  return a;
}
Tensor unary_cuda(const char* op, UnaryKind, const Tensor& x, double) {
  require_cpu(op, x);
  return x;
}
#endif

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinOp::add, "add", a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinOp::sub, "sub", a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinOp::mul, "mul", a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinOp::div, "div", a, b); }

Tensor scale(const Tensor& x, double s) {
  if (x.defined() && on_cuda(x)) return unary_cuda("scale", UnaryKind::scale, x, s);
  return unary("scale", x, [s](double v) { return s * v; }, [s](double, double) { return s; });
}

Tensor add_scalar(const Tensor& x, double s) {
  if (x.defined() && on_cuda(x)) return unary_cuda("add_scalar", UnaryKind::add_scalar, x, s);
  return unary("add_scalar", x, [s](double v) { return v + s; }, [](double, double) { return 1.0; });
}

Tensor exp(const Tensor& x) {
  if (x.defined() && on_cuda(x)) return unary_cuda("exp", UnaryKind::exp, x, 0.0);
  return unary("exp", x, [](double v) { return std::exp(v); }, [](double, double y) { return y; });
}

Tensor log(const Tensor& x) {
  if (x.defined() && on_cuda(x)) return unary_cuda("log", UnaryKind::log, x, 0.0);
  return unary("log", x, [](double v) { return std::log(v); }, [](double v, double) { return 1.0 / v; });
}

Tensor sqrt(const Tensor& x) {
  if (x.defined() && on_cuda(x)) return unary_cuda("sqrt", UnaryKind::sqrt, x, 0.0);
  return unary("sqrt", x, [](double v) { return std::sqrt(v); },
               [](double, double y) { return 0.5 / y; });
}

Tensor gelu(const Tensor& x) {
  check_defined("gelu", x, "x");
  if (on_cuda(x)) return unary_cuda("gelu", UnaryKind::gelu, x, 0.0);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float("gelu", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::gelu_forward(out.data<T>(), x.data<T>(), x.numel());
  });
  if (needs_grad({x})) {
    Tensor xd = x.detach();
    record(out, "gelu", {x}, [xd](const Tensor& g) {
      Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
      dispatch_float("gelu", g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kernels::cpu::gelu_backward(dx.data<T>(), g.data<T>(), xd.data<T>(), g.numel());
      });
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

}  // namespace dino
