// The CPU backend's elementwise maps and reductions (core/ops_elementwise.cpp,
// core/ops_reduce.cpp). Sums accumulate in a fixed order, so results do not depend on the
// thread count: rows of a broadcast are independent, column sums go column block by column
// block, full sums run on one thread in double.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "kernels/broadcast.h"
#include "kernels/cpu/backend.h"
#include "kernels/cpu/kernels.h"

namespace dino::kernels::cpu {

namespace {

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

// When only leading dims are summed (a broadcast bias or position table), g is (R, C) and the
// result is its column sums. Threads share out blocks of columns; each column adds its rows
// in order, as the general loop in sum_to does, so the result is the same. Returns false,
// with out untouched, when a dim after a kept one is summed.
bool sum_leading_dims(const Tensor& out, const Tensor& g) {
  const Shape& so = g.shape();
  const Shape& shape = out.shape();
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

// The value and derivative of each unary map in double (gelu has its own kernels).
double unary_value(UnaryOp op, double v, double s) {
  switch (op) {
    case UnaryOp::scale: return s * v;
    case UnaryOp::add_scalar: return v + s;
    case UnaryOp::exp: return std::exp(v);
    case UnaryOp::log: return std::log(v);
    case UnaryOp::sqrt: return std::sqrt(v);
    case UnaryOp::gelu: break;
  }
  return 0;
}

// f'(x) from x or y = f(x).
double unary_derivative(UnaryOp op, double x, double y, double s) {
  switch (op) {
    case UnaryOp::scale: return s;
    case UnaryOp::add_scalar: return 1.0;
    case UnaryOp::exp: return y;
    case UnaryOp::log: return 1.0 / x;
    case UnaryOp::sqrt: return 0.5 / y;
    case UnaryOp::gelu: break;
  }
  return 0;
}

}  // namespace

void CpuBackend::binary(const Tensor& out, BinaryOp op, const Tensor& a, const Tensor& b) const {
  dispatch_float(op_name(op), out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *pa = a.data<T>(), *pb = b.data<T>();
    T* po = out.data<T>();
    const Shape &sa = a.shape(), &sb = b.shape(), &so = out.shape();
    switch (op) {
      case BinaryOp::add:
        broadcast_binary(po, pa, pb, sa, sb, so, [](T x, T y) { return x + y; });
        break;
      case BinaryOp::sub:
        broadcast_binary(po, pa, pb, sa, sb, so, [](T x, T y) { return x - y; });
        break;
      case BinaryOp::mul:
        broadcast_binary(po, pa, pb, sa, sb, so, [](T x, T y) { return x * y; });
        break;
      case BinaryOp::div:
        broadcast_binary(po, pa, pb, sa, sb, so, [](T x, T y) { return x / y; });
        break;
    }
  });
}

void CpuBackend::unary(const Tensor& out, UnaryOp op, const Tensor& x, double s) const {
  dispatch_float(op_name(op), x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    const int64_t n = x.numel();
    if (op == UnaryOp::gelu) return gelu_forward(po, px, n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = T(unary_value(op, double(px[i]), s));
  });
}

void CpuBackend::unary_backward(const Tensor& dx, UnaryOp op, const Tensor& dout, const Tensor& x,
                                const Tensor& y, double s) const {
  dispatch_float(op_name(op), dout.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *pg = dout.data<T>(), *px = x.data<T>(), *py = y.data<T>();
    T* pd = dx.data<T>();
    const int64_t n = dout.numel();
    if (op == UnaryOp::gelu) return gelu_backward(pd, pg, px, n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
      pd[i] = T(double(pg[i]) * unary_derivative(op, double(px[i]), double(py[i]), s));
  });
}

void CpuBackend::sum_to(const Tensor& out, const Tensor& g) const {
  if (sum_leading_dims(out, g)) return;
  const auto st = broadcast_strides(out.shape(), g.shape());
  const Shape& so = g.shape();
  const int nd = int(so.size());
  dispatch_float("sum_to", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pg = g.data<T>();
    T* po = out.data<T>();
    std::fill(po, po + out.numel(), T(0));
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
}

void CpuBackend::sum_all(const Tensor& out, const Tensor& x, double divisor) const {
  dispatch_float("sum", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    double s = 0;
    for (int64_t i = 0, n = x.numel(); i < n; ++i) s += double(p[i]);
    *out.data<T>() = T(s / divisor);
  });
}

void CpuBackend::reduce_rows(const Tensor& out, const Tensor& x, RowReduce op,
                             double divisor) const {
  const int64_t R = rows_of(x), C = cols_of(x);
  dispatch_float("reduce_rows", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    T* po = out.data<T>();
    if (op == RowReduce::max) {
      for (int64_t r = 0; r < R; ++r) {
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t c = 0; c < C; ++c) m = std::max(m, p[r * C + c]);
        po[r] = m;
      }
      return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += double(p[r * C + c]);
      po[r] = T(s / divisor);
    }
  });
}

void CpuBackend::expand_rows(const Tensor& out, const Tensor& g, double factor) const {
  const int64_t R = g.numel(), C = R ? out.numel() / R : 0;
  dispatch_float("expand_rows", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pg = g.data<T>();
    T* po = out.data<T>();
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) po[r * C + c] = T(double(pg[r]) * factor);
  });
}

}  // namespace dino::kernels::cpu
