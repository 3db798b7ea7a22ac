#pragma once
// CUDA kernels' launchers, one op family per .cu file, named as their CPU references in
// kernels/cpu/kernels.h. Included only by .cu files and the CUDA tests (it needs the CUDA
// headers); the g++-compiled core sees kernels/cuda/runtime.h.
//
// Conventions (DESIGN §5): outputs first, then inputs, then sizes, then the stream; a shape
// comment on every pointer; all arrays contiguous, row-major; kernels overwrite their outputs
// (never +=), so NaN-poisoned outputs reveal unwritten elements. Launchers assert only
// launch preconditions (core/ops.cpp validates shapes) and check every launch. Reductions
// run in a fixed order: the same inputs on the same device give bit-identical outputs.
// Scratch space, where a launcher needs it, is allocated stream-ordered from the pool.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace dino::kernels::cuda {

// ---- layernorm.cu: fp32 residual stream in, bf16 out, fp32 statistics ---------------------
// out (N, C), mean (N), rstd (N) <- x (N, C), weight (C), bias (C)
void layernorm_forward(__nv_bfloat16* out, float* mean, float* rstd, const float* x,
                       const float* weight, const float* bias, int N, int C, float eps,
                       cudaStream_t stream);
// The pre-norm block's "x = x + branch; h = LN(x)" in one pass.
// x_out (N, C), out (N, C), mean (N), rstd (N) <- x (N, C), branch (N, C), weight (C), bias (C)
// x_out = x + branch (x_out may be x: in place), then out = LN(x_out).
void residual_layernorm_forward(float* x_out, __nv_bfloat16* out, float* mean, float* rstd,
                                const float* x, const __nv_bfloat16* branch, const float* weight,
                                const float* bias, int N, int C, float eps, cudaStream_t stream);
// dx (N, C), dweight (C), dbias (C) <- dout (N, C), x (N, C), mean (N), rstd (N), weight (C)
// All three written, not accumulated. dweight/dbias: per-block partial sums, then a second
// kernel sums them in block order (no atomics).
void layernorm_backward(float* dx, float* dweight, float* dbias, const __nv_bfloat16* dout,
                        const float* x, const float* mean, const float* rstd,
                        const float* weight, int N, int C, cudaStream_t stream);

// ---- dino_loss.cu: the DINO loss and its gradient in one call (DESIGN §4) -----------------
// Rows view-major: student row v*B + b, teacher row g*B + b; student views 0..G-1 are the
// teacher's global crops. Needs G >= 1, V >= G, G*V - G > 0; any B, K.
// loss (1), dstudent (V*B, K), teacher_colsum (K) <- student (V*B, K), teacher (G*B, K), center (K)
// loss = L, dstudent = dL/dstudent (for an upstream gradient of 1), teacher_colsum = the
// column sums of the raw teacher logits (all-reduce it across ranks before the center update).
void dino_loss_forward_backward(float* loss, float* dstudent, float* teacher_colsum,
                                const float* student, const float* teacher, const float* center,
                                int G, int V, int B, int K, float tau_s, float tau_t,
                                cudaStream_t stream);
// center (K) <- momentum * center + (1 - momentum) * teacher_colsum (K) / rows
// rows = the number of teacher rows summed into teacher_colsum (G*B times the ranks).
void dino_center_update(float* center, const float* teacher_colsum, int64_t rows, int K,
                        float momentum, cudaStream_t stream);

// ---- gemm.cu: cuBLASLt products (bf16 in, fp32 accumulate) and the MLP's bias + GELU ------
enum class GemmEpilogue { none, bias, bias_grad };
// C (batch, M, N) = op(A) (M, K) @ op(B) (K, N), per batch entry; A is stored (M, K) or, when
// trans_a, (K, M); B is stored (K, N) or, when trans_b, (N, K); C is bf16 (c_bf16) or fp32.
// strides in elements between batch entries (ignored when batch == 1).
// epilogue bias:      bias (N), C's type, is added to every row of C.
// epilogue bias_grad: bias (M), C's type, is written with Σ_k op(A)[m, k]: with A = dy
//                     (rows, out) and trans_a, that is the Linear's bias gradient.
// Linear: y = x W^T + b is gemm(y, x, W, trans_b); dx = dy W is gemm(dx, dy, W);
//         dW = dy^T x (and db) is gemm(dW, dy, x, trans_a, bias_grad).
void gemm(void* C, bool c_bf16, const __nv_bfloat16* A, const __nv_bfloat16* B, void* bias,
          GemmEpilogue epilogue, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
          int batch, int64_t stride_a, int64_t stride_b, int64_t stride_c, cudaStream_t stream);
// out (M, N), pre (M, N) <- h (M, N), bias (N): pre = bf16(h + bias), out = gelu(pre), exact erf
void bias_gelu_forward(__nv_bfloat16* out, __nv_bfloat16* pre, const __nv_bfloat16* h,
                       const float* bias, int64_t M, int N, cudaStream_t stream);
// dpre (n) <- dout (n), pre (n): dpre = dout * gelu'(pre)
void gelu_backward(__nv_bfloat16* dpre, const __nv_bfloat16* dout, const __nv_bfloat16* pre,
                   int64_t n, cudaStream_t stream);

// ---- attention.cu: flash-attention on packed qkv (layout as kernels/cpu/kernels.h) --------
// Head dims 32, 64, 128; any N. qkv, out, dout, dqkv 16-byte aligned.
// out (B, N, H*Dh), lse (B, H, N) (natural log-sum-exp of the scaled scores) <- qkv (B, N, 3*H*Dh)
void attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                       int H, int Dh, cudaStream_t stream);
// dqkv (B, N, 3*H*Dh) <- dout (B, N, H*Dh), qkv, out (B, N, H*Dh), lse (B, H, N)
void attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                        const __nv_bfloat16* out, const float* lse, int B, int N, int H, int Dh,
                        cudaStream_t stream);

// ---- optimizer.cu: AdamW, the teacher's EMA and gradient norms over ALL parameters ---------
// Each takes a DEVICE array of n per-tensor descriptors and runs as one launch. Tensors are
// contiguous fp32 of any size; pointers need no alignment (16-byte aligned ones take the
// vector path). A descriptor array may be reused across steps when only the pointers matter;
// the caller rewrites it (lr, step, skip) when they change.

// One parameter's AdamW update (torch.optim.AdamW, core/optim.cpp's arithmetic).
struct AdamWTensor {
  float* param;                // (numel) fp32 master weights, updated in place
  const float* grad;           // (numel)
  float* exp_avg;              // (numel) updated in place
  float* exp_avg_sq;           // (numel) updated in place
  __nv_bfloat16* param_bf16;   // (numel) written with bf16(param) after the update; nullptr: none
  int64_t numel;
  double lr, weight_decay;     // this step's, of the parameter's group
  int64_t step;                // this update's step count: 1 on the parameter's first update
  int32_t skip;                // 1: no gradient this step (the frozen last layer): nothing is
                               // read or written; the caller does not advance its step either
};
// Every tensor not skipped: param *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// param -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps); param_bf16 = bf16(param).
void adamw_step(const AdamWTensor* tensors, int n, double beta1, double beta2, double eps,
                cudaStream_t stream);

// One teacher parameter and the student parameter it follows.
struct EmaTensor {
  float* teacher;                // (numel) updated in place
  const float* student;          // (numel)
  __nv_bfloat16* teacher_bf16;   // (numel) written with bf16(teacher); nullptr: none
  int64_t numel;
};
// teacher = m * teacher + (1 - m) * student (float, as models/multicrop.cpp's ema_update).
void ema_update(const EmaTensor* tensors, int n, double momentum, cudaStream_t stream);

struct TensorSpan {
  const float* data;  // (numel)
  int64_t numel;
};
// norms (n) <- the L2 norm of each tensor. Deterministic: block partials added in block order.
void grad_norms(float* norms, const TensorSpan* tensors, int n, cudaStream_t stream);

}  // namespace dino::kernels::cuda
