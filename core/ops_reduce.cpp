// Reductions: over all elements, or over the last dim. Every backend sums in a fixed order, so
// results do not depend on the thread count: the CPU in double, CUDA in f32. sum and mean
// return a scalar (f32 on CUDA, core/precision.h), the row reductions x's dtype.
#include <algorithm>

#include "core/backend.h"
#include "core/ops_util.h"
#include "core/precision.h"

namespace dino {

using namespace detail;

namespace {

Shape last_reduced_shape(const Tensor& x, bool keepdim) {
  Shape s = x.shape();
  if (keepdim)
    s.back() = 1;
  else
    s.pop_back();
  return s;
}

// The node of a sum (factor 1) or mean over rows of C: each input element's gradient is its
// row's upstream gradient times `factor`.
void record_expand(Tensor& out, const char* op, const Tensor& x, double factor) {
  if (!needs_grad({x})) return;
  const Shape shape = x.shape();
  const DType dt = x.dtype();
  const Device dev = x.device();
  record(out, op, {x}, [=](const Tensor& g) {
    Tensor dx = Tensor::empty(shape, dt, dev);
    backend(dev).expand_rows(dx, g, factor);
    return std::vector<Tensor>{dx};
  });
}

Tensor reduce_all(const char* op, const Tensor& x, bool average) {
  check_defined(op, x, "x");
  precision::check_float_operands(op, {{&x, "x"}});
  const int64_t n = x.numel();
  const double divisor = average ? double(std::max<int64_t>(n, 1)) : 1.0;
  Tensor out = Tensor::empty({}, precision::accumulator(x), x.device());
  backend(x.device()).sum_all(out, x, divisor);
  record_expand(out, op, x, 1.0 / divisor);
  return out;
}

Tensor reduce_last(const char* op, const Tensor& x, bool keepdim, RowReduce kind, bool average) {
  check_defined(op, x, "x");
  precision::check_float_operands(op, {{&x, "x"}});
  DINO_CHECK(x.dim() >= 1, "[", op, "] needs at least one dim");
  const double divisor = average ? double(cols_of(x)) : 1.0;
  Tensor out = Tensor::empty(last_reduced_shape(x, keepdim), x.dtype(), x.device());
  backend(x.device()).reduce_rows(out, x, kind, divisor);
  if (kind == RowReduce::sum) record_expand(out, op, x, 1.0 / divisor);
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce_all("sum", x, false); }
Tensor mean(const Tensor& x) { return reduce_all("mean", x, true); }
Tensor sum_last(const Tensor& x, bool keepdim) {
  return reduce_last("sum_last", x, keepdim, RowReduce::sum, false);
}
Tensor mean_last(const Tensor& x, bool keepdim) {
  return reduce_last("mean_last", x, keepdim, RowReduce::sum, true);
}
// Values only: not differentiable.
Tensor max_last(const Tensor& x, bool keepdim) {
  return reduce_last("max_last", x, keepdim, RowReduce::max, false);
}

}  // namespace dino
