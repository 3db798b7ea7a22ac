// Reductions: over all elements, or over the last dim. Sums accumulate in double in a fixed
// order, so results do not depend on thread count. On CUDA (kernels/cuda/reduce.cu) they
// accumulate in f32, also in a fixed order: sum and mean return an f32 scalar, the row
// reductions x's dtype.
#include <cmath>
#include <limits>

#include "core/ops_util.h"

namespace dino {

using namespace detail;

namespace {

Shape last_reduced_shape(const Tensor& x, bool keepdim) {
  Shape s = x.shape();
  if (s.empty()) return s;
  if (keepdim)
    s.back() = 1;
  else
    s.pop_back();
  return s;
}

// Broadcasts a per-row gradient g (R) back over (R, C), times `factor`.
Tensor expand_rows(const Tensor& g, const Shape& shape, double factor) {
  Tensor out = Tensor::empty(shape, g.dtype(), g.device());
  const int64_t C = shape.empty() ? 1 : shape.back();
  const int64_t R = shape_numel(shape) / std::max<int64_t>(C, 1);
  dispatch_float("sum_last", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pg = g.data<T>();
    T* po = out.data<T>();
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) po[r * C + c] = T(double(pg[r]) * factor);
  });
  return out;
}

#ifdef DINO_HAS_CUDA
namespace kg = kernels::cuda;

void check_cuda_float(const char* op, const Tensor& t) {
  DINO_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16, "[", op,
             "] expects f32 or bf16 on CUDA, got ", dtype_name(t.dtype()));
}

// dx (shape, dtype dt) = g[r] * factor over each row of `shape` (R rows of C); g (R).
Tensor expand_rows_cuda(const Tensor& g, const Shape& shape, DType dt, int64_t R, int64_t C,
                        double factor) {
  Tensor dx = Tensor::empty(shape, dt, Device::cuda);
  kg::expand_rows(dx.raw_data(), dt == DType::bf16, g.raw_data(), g.dtype() == DType::bf16, R, C,
                  float(factor), cuda_stream());
  return dx;
}

// sum, mean: an f32 scalar from f32 or bf16, f32 accumulation in a fixed order.
Tensor reduce_all_cuda(const char* op, const Tensor& x, bool average) {
  check_cuda_float(op, x);
  const int64_t n = x.numel();
  Tensor out = Tensor::empty({}, DType::f32, Device::cuda);
  const float divisor = average ? float(std::max<int64_t>(n, 1)) : 1.f;
  kg::sum_all(out.raw_data(), false, x.raw_data(), x.dtype() == DType::bf16, n, divisor,
              cuda_stream());
  if (needs_grad({x})) {
    const Shape shape = x.shape();
    const DType dt = x.dtype();
    const double f = average ? 1.0 / double(std::max<int64_t>(n, 1)) : 1.0;
    record(out, op, {x}, [shape, dt, n, f](const Tensor& g) {  // g stays on the device
      return std::vector<Tensor>{expand_rows_cuda(g, shape, dt, 1, n, f)};
    });
  }
  return out;
}

// sum_last, mean_last, max_last: the same dtype as x, f32 accumulation per row.
Tensor reduce_last_cuda(const char* op, const Tensor& x, bool keepdim, kg::RowReduce kind,
                        bool average) {
  check_cuda_float(op, x);
  DINO_CHECK(x.dim() >= 1, "[", op, "] needs at least one dim");
  const int64_t R = rows_of(x), C = cols_of(x);
  Tensor out = Tensor::empty(last_reduced_shape(x, keepdim), x.dtype(), Device::cuda);
  kg::reduce_rows(out.raw_data(), x.raw_data(), x.dtype() == DType::bf16, R, C, kind,
                  average ? float(C) : 1.f, cuda_stream());
  if (kind == kg::RowReduce::sum && needs_grad({x})) {
    const Shape shape = x.shape();
    const DType dt = x.dtype();
    const double f = average ? 1.0 / double(C) : 1.0;
    record(out, op, {x}, [shape, dt, R, C, f](const Tensor& g) {
      return std::vector<Tensor>{expand_rows_cuda(g, shape, dt, R, C, f)};
    });
  }
  return out;
}
#endif

Tensor reduce_all(const char* op, const Tensor& x, bool average) {
  check_defined(op, x, "x");
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return reduce_all_cuda(op, x, average);
#endif
  }
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  const int64_t n = x.numel();
  dispatch_float(op, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(p[i]);
    *out.data<T>() = T(average ? s / double(std::max<int64_t>(n, 1)) : s);
  });
  if (needs_grad({x})) {
    const Shape shape = x.shape();
    const double f = average ? 1.0 / double(std::max<int64_t>(n, 1)) : 1.0;
    record(out, op, {x}, [shape, f](const Tensor& g) {
      return std::vector<Tensor>{Tensor::full(shape, g.item() * f, g.dtype(), g.device())};
    });
  }
  return out;
}

Tensor reduce_last(const char* op, const Tensor& x, bool keepdim, bool average) {
  check_defined(op, x, "x");
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return reduce_last_cuda(op, x, keepdim, kg::RowReduce::sum, average);
#endif
  }
  DINO_CHECK(x.dim() >= 1, "[", op, "] needs at least one dim");
  const int64_t R = rows_of(x), C = cols_of(x);
  Tensor out = Tensor::empty(last_reduced_shape(x, keepdim), x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += double(p[r * C + c]);
      po[r] = T(average ? s / double(C) : s);
    }
  });
  if (needs_grad({x})) {
    const Shape shape = x.shape();
    const double f = average ? 1.0 / double(C) : 1.0;
    record(out, op, {x}, [shape, f](const Tensor& g) {
      return std::vector<Tensor>{expand_rows(g, shape, f)};
    });
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce_all("sum", x, false); }
Tensor mean(const Tensor& x) { return reduce_all("mean", x, true); }
Tensor sum_last(const Tensor& x, bool keepdim) { return reduce_last("sum_last", x, keepdim, false); }
Tensor mean_last(const Tensor& x, bool keepdim) { return reduce_last("mean_last", x, keepdim, true); }

Tensor max_last(const Tensor& x, bool keepdim) {
  check_defined("max_last", x, "x");
  if (on_cuda(x)) {
#ifdef DINO_HAS_CUDA
    return reduce_last_cuda("max_last", x, keepdim, kg::RowReduce::max, false);
#endif
  }
  DINO_CHECK(x.dim() >= 1, "[max_last] needs at least one dim");
  const int64_t R = rows_of(x), C = cols_of(x);
  Tensor out = Tensor::empty(last_reduced_shape(x, keepdim), x.dtype(), x.device());
  dispatch_float("max_last", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    T* po = out.data<T>();
    for (int64_t r = 0; r < R; ++r) {
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t c = 0; c < C; ++c) m = std::max(m, p[r * C + c]);
      po[r] = m;
    }
  });
  return out;
}

}  // namespace dino
