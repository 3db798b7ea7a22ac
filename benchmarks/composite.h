#pragma once
// The composite baselines' kernels (ARCHITECTURE §7: "a plain composite implementation, cuBLAS +
// unfused kernels"), the benchmarks' device fills and their output comparison. They live here,
// not in kernels/: each does one step the way an unfused framework would, one launch per op,
// intermediates through device memory. Plain C++ header; composite.cu holds the kernels.
// All launchers run on `stream`, check the launch, and never synchronise.
#include <cuda_runtime.h>

#include <cstdint>

namespace dino::bench::composite {

// ---- fills and comparison --------------------------------------------------------------
void fill_uniform_f32(float* p, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t stream);
void fill_uniform_bf16(void* p, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t stream);
// partial (3 * blocks) doubles <- per block: sum (a-b)^2, sum b^2, count of non-finite a.
// Returns the number of blocks written (<= max_blocks).
int diff_partials(double* partial, int max_blocks, const void* a, bool a_bf16, const void* b,
                  bool b_bf16, int64_t n, cudaStream_t stream);

// ---- attention: split heads, softmax, merge heads (the GEMMs are cuBLASLt) ---------------
// dst (B, H, N, Dh) <- src rows b*N + n of `src_row_stride` elements, head h at columns
// [h*Dh, h*Dh + Dh) (src already offset to q, k or v). bf16; Dh, the stride and both
// pointers multiples of 8 elements.
void tokens_to_heads(void* dst, const void* src, int64_t src_row_stride, int B, int N, int H,
                     int Dh, cudaStream_t stream);
// dst rows (B*N) of `dst_row_stride`, head h at columns [h*Dh, ...) <- src (B, H, N, Dh).
void heads_to_tokens(void* dst, int64_t dst_row_stride, const void* src, int B, int N, int H,
                     int Dh, cudaStream_t stream);
// p (rows, L) bf16, in place: p = softmax(p) per row (the scale is the QK^T GEMM's alpha).
void softmax_rows(void* p, int64_t rows, int L, cudaStream_t stream);
// ds (rows, L) bf16: in dP, out scale * P * (dP - rowsum(P * dP)) <- p (rows, L) bf16.
void softmax_rows_backward(void* ds, const void* p, int64_t rows, int L, float scale,
                           cudaStream_t stream);

// ---- layer norm: statistics, normalise; backward row sums, dx, parameter gradients -------
// mean (N), rstd (N) <- x (N, C) f32 (two passes over the row)
void ln_stats(float* mean, float* rstd, const float* x, int N, int C, float eps,
              cudaStream_t stream);
// y (N, C) bf16 <- x (N, C), mean, rstd, w (C), b (C)
void ln_normalize(void* y, const float* x, const float* mean, const float* rstd, const float* w,
                  const float* b, int N, int C, cudaStream_t stream);
// sums (N, 2) <- dy (N, C) bf16, x, mean, rstd, w: (sum g, sum g * xhat), g = dy * w
void ln_backward_rowsums(float* sums, const void* dy, const float* x, const float* mean,
                         const float* rstd, const float* w, int N, int C, cudaStream_t stream);
// dx (N, C) f32 <- rstd * (g - sums0 / C - xhat * sums1 / C)
void ln_backward_dx(float* dx, const void* dy, const float* x, const float* mean, const float* rstd,
                    const float* w, const float* sums, int N, int C, cudaStream_t stream);
// dw (C), db (C) <- dy, x, mean, rstd; partial: scratch of ln_params_partial_floats(N, C)
int64_t ln_params_partial_floats(int N, int C);
void ln_backward_params(float* dw, float* db, float* partial, const void* dy, const float* x,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t stream);

// ---- DINO loss, as eager autograd would run it -------------------------------------------
// q (rows, K) <- softmax((t - center) / tau_t) per row
void dl_teacher_softmax(float* q, const float* t, const float* center, int rows, int K, float tau_t,
                        cudaStream_t stream);
// colsum (K) <- column sums of t (rows, K)
void dl_colsum(float* colsum, const float* t, int rows, int K, cudaStream_t stream);
// logp (rows, K) <- log_softmax(s / tau_s) per row
void dl_log_softmax(float* logp, const float* s, int rows, int K, float tau_s, cudaStream_t stream);
// partial (pairs * B) <- dot(q[g*B + b], logp[v*B + b]) for every pair g < G, v < V, v != g
// (pairs in (g, v) order)
void dl_pair_dots(float* partial, const float* q, const float* logp, int G, int V, int B, int K,
                  cudaStream_t stream);
// loss (1) <- -coef * sum(partial[0..n))
void dl_loss(float* loss, const float* partial, int n, float coef, cudaStream_t stream);
// dlogp (V*B, K) <- -coef * sum over g < G, g != v of q[g*B + b]
void dl_grad_logp(float* dlogp, const float* q, int G, int V, int B, int K, float coef,
                  cudaStream_t stream);
// ds (rows, K) <- (dlogp - exp(logp) * rowsum(dlogp)) / tau_s
void dl_log_softmax_backward(float* ds, const float* dlogp, const float* logp, int rows, int K,
                             float tau_s, cudaStream_t stream);
// center (K) <- momentum * center + (1 - momentum) * colsum / rows
void dl_center_update(float* center, const float* colsum, int rows, int K, float momentum,
                      cudaStream_t stream);

}  // namespace dino::bench::composite
