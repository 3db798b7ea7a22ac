#pragma once
// The kernel table behind the op front ends: one Backend per device (ARCHITECTURE §2).
//
// An op (core/ops_<family>.cpp) validates its arguments, decides its dtypes (core/precision.h),
// allocates its outputs, calls its device's forward here and records ONE autograd node whose
// backward calls the same device's backward. A backend does not validate shapes (the front end
// has); it throws dino::Error naming the op only for what its device cannot do (a head dim the
// CUDA attention has no kernel for). Signatures put outputs first (written, never accumulated
// into), then inputs, then sizes; tensors are contiguous.
//
// The CPU backend (kernels/cpu/backend*.cpp) is always there. The CUDA backend
// (kernels/cuda/backend*.cpp) is linked into a build with CUDA, its emulated form into the
// emulator's build (tests/simt), and kernels/no_cuda.cpp into a build without: the core is
// compiled once and knows none of them.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/op_codes.h"
#include "core/tensor.h"

namespace dino {

// One parameter's AdamW update (torch.optim.AdamW): param, exp_avg, exp_avg_sq updated in place
// from grad; param_bf16 (undefined: none) is written with bf16(param) after the update.
struct AdamWUpdate {
  Tensor param, grad, exp_avg, exp_avg_sq, param_bf16;
  double lr = 0, weight_decay = 0;
  int64_t step = 0;  // this update's step count: 1 on the parameter's first update
};

class Backend {
 public:
  virtual ~Backend() = default;

  // ---- the device: memory, copies, conversions --------------------------------------------
  virtual Device device() const = 0;
  // A usable device; description() says which or why not ("no CUDA device (...)").
  virtual bool available() const = 0;
  virtual std::string description() const = 0;
  // alloc(0) returns a valid pointer of no bytes; free(nullptr) does nothing.
  virtual void* alloc(size_t bytes) const = 0;
  virtual void free(void* p, size_t bytes) const = 0;
  // Copies between this device and the host, or within this device (dst_device == src_device).
  // A copy to the host has finished when it returns; others may still run in stream order.
  virtual void copy(void* dst, Device dst_device, const void* src, Device src_device,
                    size_t bytes) const = 0;
  virtual void synchronize() const = 0;
  // dst <- src, same shape, of different dtypes, both on this device. Returns false when this
  // backend has no such conversion (the caller converts on the host).
  virtual bool convert(const Tensor& dst, const Tensor& src) const = 0;
  // t <- value everywhere (f32, f64 or bf16). Returns false when not handled here.
  virtual bool fill(const Tensor& t, double value) const = 0;

  // ---- elementwise (core/ops_elementwise.cpp) ---------------------------------------------
  // out <- a op b, a and b broadcast (numpy rules) to out's shape; math in the wider dtype.
  virtual void binary(const Tensor& out, BinaryOp op, const Tensor& a, const Tensor& b) const = 0;
  // out (n) <- f(x (n)), same dtype
  virtual void unary(const Tensor& out, UnaryOp op, const Tensor& x, double s) const = 0;
  // dx (n) <- dout (n) * f'(x), from x (n) or y = f(x) (n), whichever this backend reads
  virtual void unary_backward(const Tensor& dx, UnaryOp op, const Tensor& dout, const Tensor& x,
                              const Tensor& y, double s) const = 0;
  // out (a shape g broadcasts from) <- g summed over the broadcast dims, in a fixed order
  virtual void sum_to(const Tensor& out, const Tensor& g) const = 0;

  // ---- reductions (core/ops_reduce.cpp) ---------------------------------------------------
  // out (scalar) <- (sum of x) / divisor
  virtual void sum_all(const Tensor& out, const Tensor& x, double divisor) const = 0;
  // out (R) <- each row of x (R, C): its sum / divisor, or its max (divisor unused)
  virtual void reduce_rows(const Tensor& out, const Tensor& x, RowReduce op,
                           double divisor) const = 0;
  // out (R, C) <- g (R): out[r, c] = g[r] * factor
  virtual void expand_rows(const Tensor& out, const Tensor& g, double factor) const = 0;

  // ---- data movement (core/ops_shape.cpp) -------------------------------------------------
  // out (x's shape permuted by dims) <- x: out dim d is x's dim dims[d]
  virtual void permute(const Tensor& out, const Tensor& x,
                       const std::vector<int64_t>& dims) const = 0;
  // out (B, N+1, D) <- x (B, N, D), token (D): the token first in every sample
  virtual void prepend_token(const Tensor& out, const Tensor& x, const Tensor& token) const = 0;
  // dx (B, N, D), dtoken (D) <- dout (B, N+1, D); dtoken summed in batch order
  virtual void prepend_token_backward(const Tensor& dx, const Tensor& dtoken,
                                      const Tensor& dout) const = 0;
  // out (B, D) <- x (B, N, D): token i of every sample
  virtual void select_token(const Tensor& out, const Tensor& x, int64_t i) const = 0;
  // dx (B, N, D) <- dout (B, D): dout at token i, zero elsewhere
  virtual void select_token_backward(const Tensor& dx, const Tensor& dout, int64_t i) const = 0;

  // ---- layer norm (core/ops_layer_norm.cpp) -----------------------------------------------
  // out (N, C), mean (N), rstd (N) <- x (N, C), weight (C), bias (C); statistics in x's dtype
  virtual void layer_norm(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          double eps) const = 0;
  // sum (N, C) <- x + branch, then out, mean, rstd as layer_norm of sum, in one pass
  virtual void add_layer_norm(const Tensor& sum, const Tensor& out, const Tensor& mean,
                              const Tensor& rstd, const Tensor& x, const Tensor& branch,
                              const Tensor& weight, const Tensor& bias, double eps) const = 0;
  // dx (N, C), dweight (C), dbias (C) <- dout (N, C), x (N, C), mean (N), rstd (N), weight (C)
  virtual void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                   const Tensor& dout, const Tensor& x, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& weight) const = 0;

  // ---- products (core/ops_linear.cpp) -----------------------------------------------------
  // Operands in the dtype precision::gemm_operand chose; each output's dtype says what the
  // product is rounded to. A gradient left undefined is not wanted.
  // out (nb, M, N) <- a (nb, M, K) @ b: b (K, N) shared by every batch entry, or b (nb, K, N)
  virtual void matmul(const Tensor& out, const Tensor& a, const Tensor& b) const = 0;
  // da (a's shape), db (b's shape) <- dout (nb, M, N), a, b; a shared b's sums the batch
  virtual void matmul_backward(const Tensor& da, const Tensor& db, const Tensor& dout,
                               const Tensor& a, const Tensor& b) const = 0;
  // out (R, O) <- x (R, I) @ weight (O, I)^T + bias (O; undefined: none, else out's dtype)
  virtual void linear(const Tensor& out, const Tensor& x, const Tensor& weight,
                      const Tensor& bias) const = 0;
  // dx (R, I), dweight (O, I), dbias (O; dweight's dtype) <- dout (R, O), x (R, I), weight
  virtual void linear_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                               const Tensor& dout, const Tensor& x,
                               const Tensor& weight) const = 0;
  // w (K, C), vnorm (K) <- v (K, C), g (K): w = g * v / ||v row|| (w may be a GEMM operand)
  virtual void weight_norm(const Tensor& w, const Tensor& vnorm, const Tensor& v,
                           const Tensor& g) const = 0;
  // dv (K, C), dg (K) <- dw (K, C), v (K, C), g (K), vnorm (K)
  virtual void weight_norm_backward(const Tensor& dv, const Tensor& dg, const Tensor& dw,
                                    const Tensor& v, const Tensor& g,
                                    const Tensor& vnorm) const = 0;
  // cols (B*Gh*Gw, C*P*P) <- img (B, C, H, W): kernels/cpu/kernels.h's patch layout
  virtual void im2col_patches(const Tensor& cols, const Tensor& img, int64_t P) const = 0;
  // dimg (B, C, H, W) <- dcols (B*Gh*Gw, C*P*P); pixels outside whole patches get zero
  virtual void col2im_patches(const Tensor& dimg, const Tensor& dcols, int64_t P) const = 0;

  // ---- attention (core/ops_nn.cpp) --------------------------------------------------------
  // out (B, N, H*Dh), lse (B, H, N), probs (B, H, N, N; undefined: not wanted)
  //   <- qkv (B, N, 3*H*Dh), q, k, v head-major (kernels/cpu/kernels.h)
  virtual void attention(const Tensor& out, const Tensor& lse, const Tensor& probs,
                         const Tensor& qkv, int64_t heads) const = 0;
  // dqkv (B, N, 3*H*Dh) <- dout (B, N, H*Dh), qkv, out, lse
  virtual void attention_backward(const Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                                  const Tensor& out, const Tensor& lse, int64_t heads) const = 0;

  // ---- row-wise and grid ops (core/ops_nn.cpp) --------------------------------------------
  // out (N, C), lse (N) <- x (N, C): softmax of each row, or log_softmax with `log_space`;
  // lse (its log-sum-exp) for a backward that reads it (CUDA's; the CPU's leaves it unwritten)
  virtual void softmax(const Tensor& out, const Tensor& lse, const Tensor& x,
                       bool log_space) const = 0;
  // dx (N, C) <- dout (N, C) and x with lse, or out, whichever this backend reads
  virtual void softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                const Tensor& out, const Tensor& lse, bool log_space) const = 0;
  // out (N, C), norm (N) <- x (N, C): each row divided by max(||row||, eps) (F.normalize)
  virtual void l2_normalize(const Tensor& out, const Tensor& norm, const Tensor& x,
                            double eps) const = 0;
  // dx (N, C) <- dout (N, C), x (N, C), norm (N)
  virtual void l2_normalize_backward(const Tensor& dx, const Tensor& dout, const Tensor& x,
                                     const Tensor& norm, double eps) const = 0;
  // out (Ho, Wo, C) <- grid (Hi, Wi, C): bicubic, PyTorch's align_corners=False with scales
  virtual void resize_bicubic(const Tensor& out, const Tensor& grid, double scale_h,
                              double scale_w) const = 0;
  // dgrid (Hi, Wi, C) <- dout (Ho, Wo, C)
  virtual void resize_bicubic_backward(const Tensor& dgrid, const Tensor& dout, double scale_h,
                                       double scale_w) const = 0;
};

// The CPU backend (kernels/cpu/backend.cpp).
const Backend& cpu_backend();
// The backend of a device. Throws dino::Error naming `op` when this build has none for it
// ("this build has no CUDA support") or, with `need_device`, when it has no usable device.
const Backend& backend(Device device, const char* op = "backend", bool need_device = true);
// The CUDA backend this build links, or nullptr (kernels/no_cuda.cpp). Its device may still be
// absent: check available().
const Backend* cuda_backend();

}  // namespace dino
