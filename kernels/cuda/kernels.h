#pragma once
// CUDA kernels' launchers, one op family per .cu file, named as their CPU references in
// kernels/cpu/kernels.h. Included only by .cu files and the CUDA tests (it needs the CUDA
// headers); the g++-compiled core sees kernels/cuda/runtime.h.
//
// Conventions (ARCHITECTURE §5): outputs first, then inputs, then sizes, then the stream; a shape
// comment on every pointer; all arrays contiguous, row-major; kernels overwrite their outputs
// (never +=), so NaN-poisoned outputs reveal unwritten elements. Launchers assert only launch
// preconditions (the op front ends, core/ops_<family>.cpp, validate shapes) and check every
// launch. Reductions run in a fixed order: the same inputs on the same device give
// bit-identical outputs.
// Scratch space, where a launcher needs it, is allocated stream-ordered from the pool.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/op_codes.h"

namespace dino::kernels::cuda {

using ::dino::BinaryOp;
using ::dino::RowReduce;
using ::dino::UnaryOp;

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
                        const float* x, const float* mean, const float* rstd, const float* weight,
                        int N, int C, cudaStream_t stream);

// ---- dino_loss.cu: the DINO loss and its gradient in one call (ARCHITECTURE §4) -----------------
// Rows view-major: student row v*B + b, teacher row g*B + b; student views 0..G-1 are the
// teacher's global crops. Needs G >= 1, V >= G, G*V - G > 0; any B, K.
// loss (1), dstudent (V*B, K), teacher_colsum (K) <- student (V*B, K), teacher (G*B, K), center (K)
// loss = L, dstudent = dL/dstudent (for an upstream gradient of 1), teacher_colsum = the
// column sums of the raw teacher logits (all-reduce it across ranks before the center update).
// tau_t (1) is on the DEVICE, read by the kernels: a captured step replays with the temperature
// the step wrote there (its schedule changes it every step of the warm-up).
void dino_loss_forward_backward(float* loss, float* dstudent, float* teacher_colsum,
                                const float* student, const float* teacher, const float* center,
                                int G, int V, int B, int K, float tau_s, const float* tau_t,
                                cudaStream_t stream);
// center (K) <- momentum * center + (1 - momentum) * teacher_colsum (K) / rows
// rows = the number of teacher rows summed into teacher_colsum (G*B times the ranks).
void dino_center_update(float* center, const float* teacher_colsum, int64_t rows, int K,
                        float momentum, cudaStream_t stream);

// ---- gemm.cu: cuBLASLt products (bf16 in, fp32 accumulate, bias epilogue) and bias gradient
enum class GemmEpilogue { none, bias, bias_grad };
// C (batch, M, N) = op(A) (M, K) @ op(B) (K, N), per batch entry; A is stored (M, K) or, when
// trans_a, (K, M); B is stored (K, N) or, when trans_b, (N, K); C is bf16 (c_bf16) or fp32.
// strides in elements between batch entries (ignored when batch == 1).
// epilogue bias:      bias (N), C's type, is added to every row of C.
// epilogue bias_grad: bias (M), C's type, is written with Σ_k op(A)[m, k]: with A = dy
//                     (rows, out) and trans_a, that is the Linear's bias gradient; batch 1
//                     and trans_a only (a column-sum kernel after the product, not cuBLASLt's
//                     BGRADB: see gemm.cu).
// beta is 0: C's old contents are never read (NaN-poisoned outputs are fine). Any sizes,
// pointers and strides with 2-byte alignment (the heuristic is told the real alignment).
// Linear: y = x W^T + b is gemm(y, x, W, trans_b); dx = dy W is gemm(dx, dy, W);
//         dW = dy^T x (and db) is gemm(dW, dy, x, trans_a, bias_grad).
void gemm(void* C, bool c_bf16, const __nv_bfloat16* A, const __nv_bfloat16* B, void* bias,
          GemmEpilogue epilogue, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
          int batch, int64_t stride_a, int64_t stride_b, int64_t stride_c, cudaStream_t stream);

// ---- attention.cu: flash-attention on packed qkv (layout as kernels/cpu/kernels.h) --------
// Head dims 32, 64, 128; any N. qkv, out, dout, dqkv 16-byte aligned.
// out (B, N, H*Dh), lse (B, H, N) (natural log-sum-exp of the scaled scores) <- qkv (B, N, 3*H*Dh)
void attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                       int H, int Dh, cudaStream_t stream);
// dqkv (B, N, 3*H*Dh) <- dout (B, N, H*Dh), qkv, out (B, N, H*Dh), lse (B, H, N)
void attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                        const __nv_bfloat16* out, const float* lse, int B, int N, int H, int Dh,
                        cudaStream_t stream);
// The kernels behind both: the portable ones on mma.sync (any sm_80 or later device, every
// head dim) and Hopper's on wgmma (kernels/cuda/attention_sm90.cu: an sm_90 device, a build
// whose toolkit compiles sm_90a, head dim 64). attention_forward and attention_backward run
// attention_kernel_for(N, Dh); the _with forms name the kernel (tests, benchmarks).
enum class AttentionKernel { mma, wgmma };
const char* attention_kernel_name(AttentionKernel kernel);
// Empty if `kernel` runs here for head dim Dh, else why not.
std::string attention_kernel_unavailable(AttentionKernel kernel, int Dh);
// wgmma where it runs and N > 64, else mma.
AttentionKernel attention_kernel_for(int N, int Dh);
void attention_forward_with(AttentionKernel kernel, __nv_bfloat16* out, float* lse,
                            const __nv_bfloat16* qkv, int B, int N, int H, int Dh,
                            cudaStream_t stream);
void attention_backward_with(AttentionKernel kernel, __nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                             const __nv_bfloat16* qkv, const __nv_bfloat16* out, const float* lse,
                             int B, int N, int H, int Dh, cudaStream_t stream);

// ---- optimizer.cu: AdamW, the teacher's EMA and gradient norms over ALL parameters ---------
// Each takes a DEVICE array of n per-tensor descriptors and runs as one launch. Tensors are
// contiguous fp32 of any size; pointers need no alignment (16-byte aligned ones take the
// vector path). A descriptor array may be reused across steps when only the pointers matter;
// the caller rewrites it (lr, step, skip) when they change.

// One parameter's AdamW update (torch.optim.AdamW, core/optim.cpp's arithmetic).
struct AdamWTensor {
  float* param;               // (numel) fp32 master weights, updated in place
  const float* grad;          // (numel)
  float* exp_avg;             // (numel) updated in place
  float* exp_avg_sq;          // (numel) updated in place
  __nv_bfloat16* param_bf16;  // (numel) written with bf16(param) after the update; nullptr: none
  int64_t numel;
  double lr, weight_decay;  // this step's, of the parameter's group
  int64_t step;             // this update's step count: 1 on the parameter's first update
  int32_t skip;             // 1: no gradient this step (the frozen last layer): nothing is
                            // read or written; the caller does not advance its step either
};
// Every tensor not skipped: param *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// param -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps); param_bf16 = bf16(param).
void adamw_step(const AdamWTensor* tensors, int n, double beta1, double beta2, double eps,
                cudaStream_t stream);

// One teacher parameter and the student parameter it follows.
struct EmaTensor {
  float* teacher;               // (numel) updated in place
  const float* student;         // (numel)
  __nv_bfloat16* teacher_bf16;  // (numel) written with bf16(teacher); nullptr: none
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
// Gradient clipping after grad_norms, on the device (no norm goes to the host). The tensors'
// data (numel each) are scaled IN PLACE (the spans' memory must be writable), in double as
// core/optim.cpp: per tensor (global false: DINO's clip_gradients) by
// coef = max_norm / (norms[t] + 1e-6), or, global true (clip_grad_norm_), every tensor by
// coef = max_norm / (sqrt(sum_t norms[t]^2) + 1e-6); only where coef < 1 (others untouched).
// data (numel) <- data * coef; norms (n) as grad_norms wrote them
void scale_by_norms(const TensorSpan* tensors, const float* norms, int n, double max_norm,
                    bool global, cudaStream_t stream);

// ---- patchify.cu, weight_norm.cu: the patch embedding's im2col and DINO's last layer ------
// cols (B*Gh*Gw, C*P*P) <- img (B, C, H, W), Gh = H/P, Gw = W/P; rounds to bf16. Row
// (b*Gh + gy)*Gw + gx holds patch (gy, gx) of image b in (c, py, px) order (the Conv2d
// weight's (D, C, P, P) layout); pixels beyond the whole patches are not read.
void im2col_patches(__nv_bfloat16* cols, const float* img, int64_t B, int C, int H, int W, int P,
                    cudaStream_t stream);
// w (K, C) or nullptr, w_bf16 (K, C) or nullptr, vnorm (K) <- v (K, C), g (K)
// w = g * v / ||v row|| in f32; w_bf16 = bf16(w) (the GEMM operand); vnorm for the backward.
void weight_norm_forward(float* w, __nv_bfloat16* w_bf16, float* vnorm, const float* v,
                         const float* g, int64_t K, int C, cudaStream_t stream);
// dv (K, C) or nullptr, dg (K) or nullptr <- dw (K, C), v (K, C), g (K), vnorm (K)
// dg = dot(dw, v) / ||v||, dv = g / ||v|| * (dw - dot(dw, v) / ||v||^2 * v), per row.
void weight_norm_backward(float* dv, float* dg, const float* dw, const float* v, const float* g,
                          const float* vnorm, int64_t K, int C, cudaStream_t stream);

// ---- elementwise.cu, reduce.cu, shape.cu: the core ops' maps, reductions, data movement ---
// Operands that may be f32 or bf16 travel as void* with a bf16 flag (false: f32); all math
// and every accumulation is f32, each result rounded once to its output's dtype.

// Up to 5 dims, row-major over `size`, with an element stride per dim (0: broadcast).
struct StridedDims {
  int nd = 0;
  int64_t size[5] = {};
  int64_t stride[5] = {};
};

// The output index space of a broadcast binary op (1..5 dims, collapsed on the host) and each
// operand's element strides along it (0 along the dims it is broadcast over).
struct BroadcastGeom {
  int nd = 1;
  int64_t size[5] = {};
  int64_t stride_a[5] = {};
  int64_t stride_b[5] = {};
};
// out (geom.size) <- a, b (read through geom's strides): out = a op b
void broadcast_binary(void* out, bool out_bf16, const void* a, bool a_bf16, const void* b,
                      bool b_bf16, const BroadcastGeom& geom, BinaryOp op, cudaStream_t stream);

// out (n) <- x (n), both f32 or both bf16
void unary_forward(void* out, const void* x, bool bf16, int64_t n, UnaryOp op, float s,
                   cudaStream_t stream);
// dx (n) <- dout (n), x (n): dx = dout * f'(x) (x unread for scale and add_scalar)
void unary_backward(void* dx, const void* dout, const void* x, bool bf16, int64_t n, UnaryOp op,
                    float s, cudaStream_t stream);
// dst (n) <- value (rounded to bf16 once)
void fill_bf16(__nv_bfloat16* dst, float value, int64_t n, cudaStream_t stream);

// out (1) <- x (n): out = (sum of x) / divisor. Deterministic: per-block partials, then one
// block adds them in block order (stream-ordered scratch of a few KB).
void sum_all(void* out, bool out_bf16, const void* x, bool x_bf16, int64_t n, float divisor,
             cudaStream_t stream);
// out (R) <- x (R, C), same dtype: each row's sum / divisor, or its max (divisor unused)
void reduce_rows(void* out, const void* x, bool bf16, int64_t R, int64_t C, RowReduce op,
                 float divisor, cudaStream_t stream);
// out (R, C) <- g (R): out[r, c] = g[r] * factor (R = 1: a scalar broadcast over C)
void expand_rows(void* out, bool out_bf16, const void* g, bool g_bf16, int64_t R, int64_t C,
                 float factor, cudaStream_t stream);
// sum_to: a contiguous g seen as kept dims x reduced dims (strides in g's elements; the kept
// dims row-major are the output's layout).
struct SumToGeom {
  StridedDims keep, red;
};
// out (prod keep.size) <- g: out[m] = sum over the reduced index space, same dtype as g
void sum_to_shape(void* out, const void* g, bool bf16, const SumToGeom& geom, cudaStream_t stream);

// Data movement of 2- or 4-byte elements (elem_size), any dtype of that size.
// out (shape permuted by dims) <- x (shape): out dim d is x's dim dims[d]; nd <= 5
void permute_elements(void* out, const void* x, int elem_size, const int64_t* shape,
                      const int64_t* dims, int nd, cudaStream_t stream);
// out (B, N+1, D) <- x (B, N, D), token (D): the token first in every sample
void prepend_token_forward(void* out, const void* x, const void* token, int elem_size, int64_t B,
                           int64_t N, int64_t D, cudaStream_t stream);
// dx (B, N, D), dtoken (D) <- dout (B, N+1, D); f32 or bf16; dtoken summed in batch order
void prepend_token_backward(void* dx, void* dtoken, const void* dout, bool bf16, int64_t B,
                            int64_t N, int64_t D, cudaStream_t stream);
// out (B, D) <- x (B, N, D): token i of every sample
void select_token_forward(void* out, const void* x, int elem_size, int64_t B, int64_t N, int64_t D,
                          int64_t i, cudaStream_t stream);
// dx (B, N, D) <- dout (B, D): dout at token i, zero elsewhere
void select_token_backward(void* dx, const void* dout, int elem_size, int64_t B, int64_t N,
                           int64_t D, int64_t i, cudaStream_t stream);

// ---- backend_attention.cpp: which attention kernels the CUDA backend runs ---------------
// Ours (attention.cu) unless another implementation with the same signatures was registered
// and selected by name (model.attention): the cuDNN baseline (benchmarks/cudnn/baselines.h)
// registers itself as "cudnn" in the programs that link dino_bench (the dino CLI).
struct AttentionKernels {
  const char* name;
  // Empty when it can run here, else why not (e.g. "this build has no cuDNN").
  std::string (*unavailable)();
  void (*forward)(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N, int H,
                  int Dh, cudaStream_t stream);
  void (*backward)(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                   const __nv_bfloat16* out, const float* lse, int B, int N, int H, int Dh,
                   cudaStream_t stream);
};
void register_attention_kernels(const AttentionKernels& kernels);
// name "ours" or a registered one; throws dino::Error for another name, or for one that
// cannot run here (saying why).
void set_attention_backend(const char* name);
const char* attention_backend_name();

// ---- softmax.cu, drop_path.cu, resize.cu, dino_loss.cu extras --------------------------
// Rows of the last dim, f32 or bf16 data (the same type in and out), fp32 math; row statistics
// fp32. N rows of C; every launcher has an f32 and a bf16 form.
// out (N, C), lse (N) <- x (N, C): out = softmax(x), lse = log-sum-exp of each row
void softmax_forward(float* out, float* lse, const float* x, int64_t N, int C, cudaStream_t stream);
void softmax_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* x, int64_t N, int C,
                     cudaStream_t stream);
// out (N, C), lse (N) <- x (N, C): out = x - lse
void log_softmax_forward(float* out, float* lse, const float* x, int64_t N, int C,
                         cudaStream_t stream);
void log_softmax_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* x, int64_t N, int C,
                         cudaStream_t stream);
// dx (N, C) <- dout (N, C), x (N, C), lse (N): y = exp(x - lse) recomputed in fp32,
// dx = y * (dout - Σ dout·y)
void softmax_backward(float* dx, const float* dout, const float* x, const float* lse, int64_t N,
                      int C, cudaStream_t stream);
void softmax_backward(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* x,
                      const float* lse, int64_t N, int C, cudaStream_t stream);
// dx (N, C) <- dout (N, C), x (N, C), lse (N): dx = dout - exp(x - lse) * Σ dout
void log_softmax_backward(float* dx, const float* dout, const float* x, const float* lse, int64_t N,
                          int C, cudaStream_t stream);
void log_softmax_backward(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* x,
                          const float* lse, int64_t N, int C, cudaStream_t stream);

// Drop path, forward and backward alike: out[b, :] = x[b, :] * (keep ? scale : 0) with
// keep = drop_path_keep(nonce, call, b * sample_stride + sample_offset, threshold)
// (core/drop_path_mask.h). out (B, S) <- x (B, S); nonce (2) int32 on the DEVICE, read by the
// kernel, so a captured launch replays with whatever nonce the step wrote there.
struct DropPathMask {
  const int32_t* nonce;
  uint32_t call, threshold;
  int64_t sample_offset, sample_stride;
};
void drop_path_apply(float* out, const float* x, const DropPathMask& mask, float scale, int64_t B,
                     int64_t S, cudaStream_t stream);
void drop_path_apply(__nv_bfloat16* out, const __nv_bfloat16* x, const DropPathMask& mask,
                     float scale, int64_t B, int64_t S, cudaStream_t stream);

// Bicubic resize of a channels-last grid, kernels/cpu/kernels.h's arithmetic (A = -0.75,
// align_corners = False, clamped taps, src = (dst + 0.5) / scale - 0.5). Deterministic.
// out (Ho, Wo, C) <- in (Hi, Wi, C)
void bicubic_resize_forward(float* out, const float* in, int Hi, int Wi, int Ho, int Wo, int C,
                            double scale_h, double scale_w, cudaStream_t stream);
// din (Hi, Wi, C) <- dout (Ho, Wo, C), with the same taps (the exact adjoint)
void bicubic_resize_backward(float* din, const float* dout, int Hi, int Wi, int Ho, int Wo, int C,
                             double scale_h, double scale_w, cudaStream_t stream);

// dino_loss_forward_backward that also writes q (G*B, K) = softmax((teacher - center) / tau_t),
// the teacher probabilities the loss used (for the collapse statistics).
void dino_loss_forward_backward_q(float* loss, float* dstudent, float* teacher_colsum, float* q,
                                  const float* student, const float* teacher, const float* center,
                                  int G, int V, int B, int K, float tau_s, const float* tau_t,
                                  cudaStream_t stream);
// out (n) <- dstudent (n) * dloss (1, device): the saved gradient times the upstream gradient.
void dino_loss_scale_grad(float* out, const float* dstudent, const float* dloss, int64_t n,
                          cudaStream_t stream);
// stats (3) <- loss (1), q (R, K): stats = {loss, mean over rows of H(q_r), H(mean over rows of
// q)} (natural log; 0 log 0 = 0), reduced on the device in a fixed order.
void dino_teacher_stats(float* stats, const float* loss, const float* q, int R, int K,
                        cudaStream_t stream);

}  // namespace dino::kernels::cuda
