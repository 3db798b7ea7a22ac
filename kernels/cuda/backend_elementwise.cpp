// The CUDA backend's elementwise maps and reductions (core/ops_elementwise.cpp,
// core/ops_reduce.cpp) on kernels/cuda/elementwise.cu and reduce.cu: f32 or bf16 operands, f32
// math and accumulation, one rounding per result.
#include <array>

#include "kernels/cuda/backend.h"

namespace dino::kernels::cuda {

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

// The broadcast's output index space with size-1 dims dropped and adjacent dims merged where
// both operands stay contiguous across them (same shapes collapse to one dim).
BroadcastGeom broadcast_geom(const Shape& sa, const Shape& sb, const Shape& so) {
  const auto st_a = broadcast_strides(sa, so), st_b = broadcast_strides(sb, so);
  BroadcastGeom g;
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

}  // namespace

void CudaBackend::binary(const Tensor& out, BinaryOp op, const Tensor& a, const Tensor& b) const {
  broadcast_binary(out.raw_data(), is_bf16(out), a.raw_data(), is_bf16(a), b.raw_data(),
                   is_bf16(b), broadcast_geom(a.shape(), b.shape(), out.shape()), op,
                   op_stream());
}

void CudaBackend::unary(const Tensor& out, UnaryOp op, const Tensor& x, double s) const {
  unary_forward(out.raw_data(), x.raw_data(), is_bf16(x), x.numel(), op, float(s), op_stream());
}

void CudaBackend::unary_backward(const Tensor& dx, UnaryOp op, const Tensor& dout,
                                 const Tensor& x, const Tensor&, double s) const {
  // The derivative reads x (not y), except for scale and add_scalar, which read neither.
  cuda::unary_backward(dx.raw_data(), dout.raw_data(), x.raw_data(), is_bf16(dx), dout.numel(),
                       op, float(s), op_stream());
}

// g (contiguous) as kept dims x reduced dims: consecutive non-1 dims of the same kind merge.
void CudaBackend::sum_to(const Tensor& out, const Tensor& g) const {
  const Shape& so = g.shape();
  const Shape& shape = out.shape();
  const int nd = int(so.size());
  const size_t off = so.size() - shape.size();
  std::array<int64_t, kMaxDims> gstride{};
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; --d) {
    gstride[size_t(d)] = s;
    s *= so[size_t(d)];
  }
  SumToGeom geom;
  int prev = -1;  // kind of the last non-1 dim: 0 kept, 1 reduced
  for (int d = 0; d < nd; ++d) {
    const int64_t n = so[size_t(d)];
    const int64_t t = size_t(d) < off ? 1 : shape[size_t(d) - off];
    if (n == 1) continue;
    const int kind = t == 1 ? 1 : 0;
    StridedDims& sd = kind ? geom.red : geom.keep;
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
  if (geom.red.nd == 0) {  // only size-1 dims summed: the same elements
    copy_d2d(out.raw_data(), g.raw_data(), out.nbytes());
    return;
  }
  sum_to_shape(out.raw_data(), g.raw_data(), is_bf16(g), geom, op_stream());
}

void CudaBackend::sum_all(const Tensor& out, const Tensor& x, double divisor) const {
  cuda::sum_all(out.raw_data(), is_bf16(out), x.raw_data(), is_bf16(x), x.numel(),
                float(divisor), op_stream());
}

void CudaBackend::reduce_rows(const Tensor& out, const Tensor& x, RowReduce op,
                              double divisor) const {
  const int64_t C = x.dim() ? x.size(-1) : 1, R = C ? x.numel() / C : 0;
  cuda::reduce_rows(out.raw_data(), x.raw_data(), is_bf16(x), R, C, op, float(divisor),
                    op_stream());
}

void CudaBackend::expand_rows(const Tensor& out, const Tensor& g, double factor) const {
  const int64_t R = g.numel(), C = R ? out.numel() / R : 0;
  cuda::expand_rows(out.raw_data(), is_bf16(out), g.raw_data(), is_bf16(g), R, C, float(factor),
                    op_stream());
}

}  // namespace dino::kernels::cuda
