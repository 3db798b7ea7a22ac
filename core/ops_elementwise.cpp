// Elementwise ops with numpy broadcasting, and the unary maps (exp, log, sqrt, gelu).
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

// out[i] = f(a[ia], b[ib]) over the broadcast index space, innermost dim contiguous.
template <class T, class F>
void broadcast_binary(T* out, const T* a, const T* b, const Shape& sa, const Shape& sb,
                      const Shape& so, F f) {
  const int64_t n = shape_numel(so);
  if (sa == so && sb == so) {
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
    return;
  }
  const auto st_a = broadcast_strides(sa, so), st_b = broadcast_strides(sb, so);
  const int nd = int(so.size());
  const int64_t inner = nd ? so[nd - 1] : 1;
  const int64_t ia_step = nd ? st_a[nd - 1] : 0, ib_step = nd ? st_b[nd - 1] : 0;
  std::array<int64_t, kMaxDims> idx{};
  for (int64_t base = 0; base < n; base += inner) {
    int64_t ia = 0, ib = 0;
    for (int d = 0; d < nd - 1; ++d) {
      ia += idx[d] * st_a[d];
      ib += idx[d] * st_b[d];
    }
    for (int64_t j = 0; j < inner; ++j) out[base + j] = f(a[ia + j * ia_step], b[ib + j * ib_step]);
    for (int d = nd - 2; d >= 0; --d) {  // advance the outer index like an odometer
      if (++idx[d] < so[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  Tensor out = Tensor::zeros(shape, g.dtype(), g.device());
  require_cpu("sum_to", g);
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

}  // namespace detail

using namespace detail;

namespace {

enum class BinOp { add, sub, mul, div };

Tensor binary(BinOp kind, const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a, "a");
  check_defined(op, b, "b");
  check_same(op, {&a, &b});
  require_cpu(op, a);
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
  require_cpu(op, x);
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

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinOp::add, "add", a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinOp::sub, "sub", a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinOp::mul, "mul", a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinOp::div, "div", a, b); }

Tensor scale(const Tensor& x, double s) {
  return unary("scale", x, [s](double v) { return s * v; }, [s](double, double) { return s; });
}

Tensor add_scalar(const Tensor& x, double s) {
  return unary("add_scalar", x, [s](double v) { return v + s; }, [](double, double) { return 1.0; });
}

Tensor exp(const Tensor& x) {
  return unary("exp", x, [](double v) { return std::exp(v); }, [](double, double y) { return y; });
}

Tensor log(const Tensor& x) {
  return unary("log", x, [](double v) { return std::log(v); }, [](double v, double) { return 1.0 / v; });
}

Tensor sqrt(const Tensor& x) {
  return unary("sqrt", x, [](double v) { return std::sqrt(v); },
               [](double, double y) { return 0.5 / y; });
}

Tensor gelu(const Tensor& x) {
  check_defined("gelu", x, "x");
  require_cpu("gelu", x);
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
