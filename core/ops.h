#pragma once
// Differentiable operations. Each one: validate (throwing dino::Error "[op] ..."), allocate
// outputs, dispatch on the device to kernels::cpu or kernels::cuda, record one autograd node.
// CPU ops run in f32 (training) and f64 (gradient checks); inputs must share dtype/device.
#include <vector>

#include "core/tensor.h"

namespace dino {

class Rng;

// ---- elementwise with numpy-style broadcasting (ops_elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double s);       // s * x
Tensor add_scalar(const Tensor& x, double s);  // x + s
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact erf form

// ---- reductions (ops_reduce.cpp) ----
Tensor sum(const Tensor& x);                            // all elements -> scalar
Tensor mean(const Tensor& x);                           // all elements -> scalar
Tensor sum_last(const Tensor& x, bool keepdim = true);  // over the last dim
Tensor mean_last(const Tensor& x, bool keepdim = true);
Tensor max_last(const Tensor& x, bool keepdim = true);  // values only; not differentiable

// ---- shape (ops_shape.cpp) ----
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);  // copies
Tensor transpose_last2(const Tensor& x);                            // copies
Tensor concat(const std::vector<Tensor>& xs);                       // along dim 0
// x (B, N, D), token (1, 1, D) -> (B, N + 1, D): the token first in every sample.
Tensor prepend_token(const Tensor& x, const Tensor& token);
// x (B, N, D) -> (B, D): token i of every sample.
Tensor select_token(const Tensor& x, int64_t i);

// ---- linear algebra (ops_linear.cpp) ----
// a (..., M, K) @ b (..., K, N) with equal batch dims, or b 2-D (K, N) shared by the batch.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) @ weight (out, in)^T + bias (out); bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// gelu(linear(x, weight, bias)) as ONE node (the MLP's fc1, the DINO head's hidden layers):
// its backward forms the bias gradient in the GELU-backward pass instead of re-reading dy.
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias);
struct DropPathNoise;
// drop_path(linear(x, weight, bias), p, true, noise) as ONE node (proj and fc2 in training),
// taking noise's next call index as drop_path does, so the masks are drop_path's: its backward
// forms the bias gradient in the drop-path-backward pass instead of re-reading dy. x needs a
// batch dim and a feature dim. linear alone when p == 0 (no call index taken).
Tensor linear_drop_path(const Tensor& x, const Tensor& weight, const Tensor& bias, double p,
                        DropPathNoise& noise);
// weight (K, C) = g (K, 1) * v (K, C) / ||v row||  (torch weight_norm, dim 0)
Tensor weight_norm(const Tensor& v, const Tensor& g);
// x @ weight_norm(v, g)^T, no bias: DINO's last layer.
Tensor weight_norm_linear(const Tensor& x, const Tensor& v, const Tensor& g);
// img (B, C, H, W), weight (D, C, P, P), bias (D) -> (B, (H/P)*(W/P), D): the strided
// patch-embedding Conv2d as im2col + GEMM.
Tensor patchify(const Tensor& img, const Tensor& weight, const Tensor& bias);

// ---- LayerNorm (ops_layer_norm.cpp) ----
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
// The pre-norm residual step "x = x + branch; y = LN(x)" in one pass (x and branch of one
// shape). sum is the new residual stream (x's dtype), recorded as an add, so the gradients that
// reach it from the norm and from later blocks meet there as they would unfused.
struct AddNorm {
  Tensor sum, normed;
};
AddNorm add_layer_norm(const Tensor& x, const Tensor& branch, const Tensor& weight,
                       const Tensor& bias, double eps);

// ---- softmax, attention and the other fused nn ops (ops_nn.cpp) ----
Tensor softmax(const Tensor& x);                           // over the last dim
Tensor log_softmax(const Tensor& x);                       // over the last dim
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);  // rows of the last dim
// KoLeo's nearest neighbour on the device: z (B, D) f32 (or f64 on the CPU), B >= 2 ->
// z - z[nn], nn[i] = the row j != i with the largest z_i . z_j, summed in double (the first j
// on ties). index receives nn (B, i32) when given. The gradient reaches z through both terms.
Tensor nearest_row_diff(const Tensor& z, Tensor* index = nullptr);
// Fused multi-head attention on packed qkv (B, N, 3 * D) -> (B, N, D), D = heads * head_dim.
// When probs is given it receives the softmax probabilities (B, heads, N, N), detached.
Tensor attention(const Tensor& qkv, int64_t heads, Tensor* probs = nullptr);
// Stochastic depth's randomness for one training step (core/drop_path_mask.h): the step's
// nonce, (2) i32 on the model's device, and the index the step's next drop_path call takes
// (0, 1, 2, ... in the order the forward makes them).
struct DropPathNoise {
  Tensor nonce;
  uint64_t value = 0;  // what nonce holds
  uint32_t next_call = 0;
};
// A nonce tensor on `device` holding `nonce`, with no call taken yet.
DropPathNoise make_drop_path_noise(uint64_t nonce, Device device);
// The next step's nonce, written into the same tensor when it differs from the value there (in
// stream order on CUDA: a captured step that reads it sees the new value), and the call count
// reset.
void set_drop_path_nonce(DropPathNoise& noise, uint64_t nonce);
// Per-sample stochastic depth: out = x * keep(b) / (1 - p), keep(b) with probability 1 - p from
// noise's nonce, the call's index and the sample's place in the global batch
// (core/batch_shard.h). Identity when p == 0 or !training (no call index taken).
Tensor drop_path(const Tensor& x, double p, bool training, DropPathNoise& noise);
// grid (Hi, Wi, C) -> (Ho, Wo, C), bicubic (A = -0.75), align_corners = False, sampling
// with the given scale factors (see kernels/cpu/kernels.h).
Tensor resize_bicubic(const Tensor& grid, int64_t Ho, int64_t Wo, double scale_h, double scale_w);

// ---- the DINO loss (ops_dino.cpp) ----
// student (V*B, K) view-major, teacher (G*B, K) (no gradient flows into it), center (K) or (1, K).
// Returns the scalar loss of ARCHITECTURE §4.
Tensor dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center, int64_t G,
                 double tau_s, double tau_t);
// The teacher temperature as the backends read it: (1) on `device`, f64 on the CPU (the exact
// double), f32 on CUDA. A tensor rather than a number so that a step captured once (CUDA graphs,
// train/step_graph.h) reads each step's value from the device when it replays.
Tensor teacher_temperature(double tau_t, Device device);
// The same loss and, on request, what the one pass also gives: the teacher probabilities
// q = softmax((t - c) / tau_t) (G*B, K), for the collapse statistics, and the column sums of the
// raw teacher logits (K, precision::column_sums), the center update's input.
struct DinoLossRequest {
  bool q = false, teacher_colsum = false;
};
struct DinoLossResult {
  Tensor loss, q, teacher_colsum;  // q and teacher_colsum undefined unless requested
};
DinoLossResult dino_loss(const Tensor& student, const Tensor& teacher, const Tensor& center,
                         int64_t G, double tau_s, const Tensor& tau_t, DinoLossRequest request);

}  // namespace dino
