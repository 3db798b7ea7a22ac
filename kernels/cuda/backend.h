#pragma once
// The CUDA backend (core/backend.h): the launchers of kernels/cuda/kernels.h behind the kernel
// table, on the context's stream. Front ends hand it the dtypes core/precision.h chose; it
// checks what only the device limits (int extents, head dims) and names the op when it refuses.
// Methods are defined next to their op family: backend.cpp (memory, copies, conversions),
// backend_elementwise.cpp, backend_shape.cpp, backend_layer_norm.cpp, backend_linear.cpp,
// backend_attention.cpp, backend_rows.cpp.
#include <climits>

#include "core/backend.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

// The one stream every op runs on (kernels/cuda/context.h).
inline cudaStream_t op_stream() { return static_cast<cudaStream_t>(stream()); }
// Typed device pointers for the launchers.
inline float* f32_ptr(const Tensor& t) { return t.data<float>(); }
inline __nv_bfloat16* bf16_ptr(const Tensor& t) {
  return reinterpret_cast<__nv_bfloat16*>(t.data<bf16>());
}
inline bool is_bf16(const Tensor& t) { return t.dtype() == DType::bf16; }

// The kernels index with int; a larger extent is a clear error, not an overflow.
inline int as_int(const char* op, int64_t v, const char* what) {
  DINO_CHECK(v <= INT_MAX, "[", op, "] ", what, " = ", v, " is too large for the CUDA kernels");
  return int(v);
}

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::cuda; }
  bool available() const override { return cuda::available(); }
  std::string description() const override { return device_description(); }
  void* alloc(size_t bytes) const override;
  void free(void* p, size_t bytes) const override;
  void copy(void* dst, Device dst_device, const void* src, Device src_device,
            size_t bytes) const override;
  void synchronize() const override { cuda::synchronize(); }
  bool convert(const Tensor& dst, const Tensor& src) const override;
  bool fill(const Tensor& t, double value) const override;

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

}  // namespace dino::kernels::cuda
