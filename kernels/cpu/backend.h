#pragma once
// The CPU backend (core/backend.h): the reference kernels of kernels/cpu/kernels.h behind the
// kernel table, templated on the op's one dtype, f32 (training) or f64 (gradient checks).
// Methods are defined next to their op family: backend.cpp (memory), backend_elementwise.cpp,
// backend_shape.cpp, backend_layer_norm.cpp, backend_linear.cpp, backend_attention.cpp,
// backend_rows.cpp.
#include <algorithm>

#include "core/backend.h"

namespace dino::kernels::cpu {

// Calls f(T{}) with T = float or double for the dtype; the front ends admit no other.
template <class F>
void dispatch_float(const char* op, DType t, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  throw Error(str_cat("[", op, "] expects f32 or f64 tensors on the cpu, got ", dtype_name(t)));
}

// Rows and columns of a tensor seen as (numel / last, last).
inline int64_t rows_of(const Tensor& t) { return t.dim() ? t.numel() / t.size(-1) : 1; }
inline int64_t cols_of(const Tensor& t) { return t.dim() ? t.size(-1) : 1; }

// out (C) = the column sums of g (R, C): each column's rows added in order into an Acc, and
// threads (when `parallel`) share out blocks of columns, so the result does not depend on the
// thread count.
template <class Acc, class T>
void column_sums(T* out, const T* g, int64_t R, int64_t C, bool parallel) {
  constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t n = std::min(kBlock, C - c0);
    Acc acc[kBlock] = {};
    for (int64_t r = 0; r < R; ++r) {
      const T* row = g + r * C + c0;
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) acc[c] += Acc(row[c]);
    }
    for (int64_t c = 0; c < n; ++c) out[c0 + c] = T(acc[c]);
  }
}

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  bool available() const override { return true; }
  std::string description() const override { return "cpu"; }
  void* alloc(size_t bytes) const override;
  void free(void* p, size_t bytes) const override;
  void copy(void* dst, Device dst_device, const void* src, Device src_device,
            size_t bytes) const override;
  void synchronize() const override {}
  bool convert(const Tensor&, const Tensor&) const override { return false; }
  bool fill(const Tensor&, double) const override { return false; }

  void binary(const Tensor& out, BinaryOp op, const Tensor& a, const Tensor& b) const override;
  void unary(const Tensor& out, UnaryOp op, const Tensor& x, double s) const override;
  void unary_backward(const Tensor& dx, UnaryOp op, const Tensor& dout, const Tensor& x,
                      const Tensor& y, double s) const override;
  void sum_to(const Tensor& out, const Tensor& g) const override;
  void sum_all(const Tensor& out, const Tensor& x, double divisor) const override;
  void reduce_rows(const Tensor& out, const Tensor& x, RowReduce op,
                   double divisor) const override;
  void expand_rows(const Tensor& out, const Tensor& g, double factor) const override;

  void permute(const Tensor& out, const Tensor& x,
               const std::vector<int64_t>& dims) const override;
  void prepend_token(const Tensor& out, const Tensor& x, const Tensor& token) const override;
  void prepend_token_backward(const Tensor& dx, const Tensor& dtoken,
                              const Tensor& dout) const override;
  void select_token(const Tensor& out, const Tensor& x, int64_t i) const override;
  void select_token_backward(const Tensor& dx, const Tensor& dout, int64_t i) const override;

  void layer_norm(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                  const Tensor& weight, const Tensor& bias, double eps) const override;
  void add_layer_norm(const Tensor& sum, const Tensor& out, const Tensor& mean,
                      const Tensor& rstd, const Tensor& x, const Tensor& branch,
                      const Tensor& weight, const Tensor& bias, double eps) const override;
  void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                           const Tensor& dout, const Tensor& x, const Tensor& mean,
                           const Tensor& rstd, const Tensor& weight) const override;
  void matmul(const Tensor& out, const Tensor& a, const Tensor& b) const override;
  void matmul_backward(const Tensor& da, const Tensor& db, const Tensor& dout, const Tensor& a,
                       const Tensor& b) const override;
  void linear(const Tensor& out, const Tensor& x, const Tensor& weight,
              const Tensor& bias) const override;
  void linear_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& dout, const Tensor& x, const Tensor& weight) const override;
  void weight_norm(const Tensor& w, const Tensor& vnorm, const Tensor& v,
                   const Tensor& g) const override;
  void weight_norm_backward(const Tensor& dv, const Tensor& dg, const Tensor& dw, const Tensor& v,
                            const Tensor& g, const Tensor& vnorm) const override;
  void im2col_patches(const Tensor& cols, const Tensor& img, int64_t P) const override;
  void col2im_patches(const Tensor& dimg, const Tensor& dcols, int64_t P) const override;

  void attention(const Tensor& out, const Tensor& lse, const Tensor& probs, const Tensor& qkv,
                 int64_t heads) const override;
  void attention_backward(const Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                          const Tensor& out, const Tensor& lse, int64_t heads) const override;
  void softmax(const Tensor& out, const Tensor& lse, const Tensor& x,
               bool log_space) const override;
  void softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor& x, const Tensor& out,
                        const Tensor& lse, bool log_space) const override;
  void l2_normalize(const Tensor& out, const Tensor& norm, const Tensor& x,
                    double eps) const override;
  void l2_normalize_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                             const Tensor& norm, double eps) const override;
  void resize_bicubic(const Tensor& out, const Tensor& grid, double scale_h,
                      double scale_w) const override;
  void resize_bicubic_backward(const Tensor& dgrid, const Tensor& dout, double scale_h,
                               double scale_w) const override;
};

}  // namespace dino::kernels::cpu
