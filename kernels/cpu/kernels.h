#pragma once
// CPU reference kernels: plain loops and Eigen, the source of truth every CUDA kernel is
// compared with. One op family per file (gemm.cpp, layernorm.cpp, ...). Every function is a
// template over T in {float, double} (float for training, double for gradient checks and
// references) and is explicitly instantiated for both in its .cpp file.
//
// Conventions (ARCHITECTURE §5): outputs first, then inputs, then sizes; all arrays contiguous,
// row-major; kernels overwrite their outputs (never +=) unless the name says accumulate.
// Kernels do not validate: the op front ends (core/ops_*.cpp) have checked shapes. Loops over rows
// may be parallelised with OpenMP (static schedule only, so every reduction has a fixed order).
#include <cstdint>

namespace dino::kernels::cpu {

// ---- gemm.cpp ---------------------------------------------------------------------------
// C (M, N) = alpha * op(A) @ op(B) + beta * C, where op(A) is (M, K) and op(B) is (K, N).
// A is stored (M, K) or, when trans_a, (K, M); B is stored (K, N) or, when trans_b, (N, K).
// beta == 0 must ignore C's old contents (it may hold NaN).
template <class T>
void gemm(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
          T alpha, T beta);
// y (R, O) = x (R, I) @ w (O, I)^T + bias (O): a Linear layer; bias may be nullptr.
template <class T>
void linear_forward(T* y, const T* x, const T* w, const T* bias, int64_t R, int64_t I, int64_t O);

// ---- gelu.cpp: exact erf GELU, y = x * 0.5 * (1 + erf(x / sqrt(2))) ----------------------
// out (n) <- x (n)
template <class T>
void gelu_forward(T* out, const T* x, int64_t n);
// dx (n) <- dout (n), x (n)
template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n);

// ---- layernorm.cpp -----------------------------------------------------------------------
// out (N, C), mean (N), rstd (N) <- x (N, C), weight (C), bias (C)
template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                       int64_t N, int64_t C, double eps);
// The pre-norm block's "x = x + branch; h = LN(x)" in one pass over the rows.
// x_out (N, C), out (N, C), mean (N), rstd (N) <- x (N, C), branch (N, C), weight (C), bias (C)
template <class T>
void residual_layernorm_forward(T* x_out, T* out, T* mean, T* rstd, const T* x, const T* branch,
                                const T* weight, const T* bias, int64_t N, int64_t C, double eps);
// dx (N, C), dweight (C), dbias (C) <- dout (N, C), x (N, C), mean (N), rstd (N), weight (C)
template <class T>
void layernorm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* mean,
                        const T* rstd, const T* weight, int64_t N, int64_t C);

// ---- attention.cpp: multi-head softmax attention on packed qkv ---------------------------
// qkv (B, N, 3*H*Dh) holds q, k, v in that order along the last dim, each (H, Dh) head-major
// (timm's layout: qkv.reshape(B, N, 3, H, Dh)). scale = 1/sqrt(Dh).
// out (B, N, H*Dh), lse (B, H, N) (log-sum-exp of the scaled scores of each query row),
// probs (B, H, N, N) or nullptr <- qkv
template <class T>
void attention_forward(T* out, T* lse, T* probs, const T* qkv, int64_t B, int64_t N, int64_t H,
                       int64_t Dh);
// dqkv (B, N, 3*H*Dh) <- dout (B, N, H*Dh), qkv, out (B, N, H*Dh), lse (B, H, N)
// Recomputes the probabilities from qkv and lse (flash-attention style backward).
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int64_t B,
                        int64_t N, int64_t H, int64_t Dh);

// ---- dino_loss.cpp: the DINO loss in its fused form (ARCHITECTURE §4) --------------------------
// Rows are view-major: student row v*B + b is view v of sample b; teacher row g*B + b is
// global view g of sample b, and student views 0..G-1 are the same global crops.
// q (G*B, K) <- teacher (G*B, K), center (K): q = softmax((t - center) / tau_t)
// returns L = 1/(n*B) sum_b sum_v [ m_v * lse(s_vb/tau_s) - (1/tau_s) (Q_b - [v<G] q_vb) . s_vb ]
// with n = G*V - G, m_v = G - 1 for v < G else G, Q_b = sum_g q_gb. Requires G >= 2 or V > G.
template <class T>
T dino_loss_forward(T* q, const T* student, const T* teacher, const T* center, int64_t G, int64_t V,
                    int64_t B, int64_t K, double tau_s, double tau_t);
// dstudent (V*B, K) <- student (V*B, K), q (G*B, K);
// dstudent = dloss / (n*B*tau_s) * (m_v * softmax(s_vb/tau_s) - (Q_b - [v<G] q_vb))
template <class T>
void dino_loss_backward(T* dstudent, const T* student, const T* q, int64_t G, int64_t V, int64_t B,
                        int64_t K, double tau_s, double dloss);
// colsum (K) <- the column sums of teacher (R, K), rows added in order in double
template <class T>
void dino_teacher_colsum(double* colsum, const T* teacher, int64_t R, int64_t K);
// center (K) <- momentum * center + (1 - momentum) * colsum (K) / rows
template <class T>
void dino_center_update(T* center, const double* colsum, int64_t rows, int64_t K, double momentum);
// stats (3) <- {loss, mean over rows of H(q_r), H(mean over rows of q)} from q (R, K), in
// double (natural log; 0 log 0 = 0)
void dino_teacher_stats(double* stats, double loss, const double* q, int64_t R, int64_t K);

// ---- drop_path.cpp ----------------------------------------------------------------------------
// out (B, S) <- x (B, S): out[b, :] = x[b, :] * (keep ? scale : 0), forward and backward alike,
// keep = drop_path_keep(nonce, call, b * sample_stride + sample_offset, threshold)
template <class T>
void drop_path_apply(T* out, const T* x, uint64_t nonce, uint32_t call, int64_t sample_offset,
                     int64_t sample_stride, uint32_t threshold, T scale, int64_t B, int64_t S);

}  // namespace dino::kernels::cpu
