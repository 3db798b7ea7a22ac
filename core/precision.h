#pragma once
// The precision policy of ARCHITECTURE §3, in one place: which dtypes each op takes and makes
// on each device. The op front ends (core/ops_*.cpp) ask here before they allocate, so a
// backend's kernels get exactly the dtypes they are written for.
//
// CPU: one float dtype per op, in and out: f32 for training, f64 for gradient checks.
// CUDA, as PyTorch's bf16 autocast: f32 or bf16 operands (mixed), f32 master weights and the
// f32 residual stream, bf16 GEMM operands, f32 accumulation, each result rounded once.
// Everywhere: a gradient has its input's dtype (the tape casts one that arrives in another).
#include <initializer_list>
#include <utility>

#include "core/tensor.h"

namespace dino::precision {

using Named = std::pair<const Tensor*, const char*>;  // a tensor and its name in messages

// The inputs of an arithmetic op (undefined ones skipped): one device, and dtypes that device
// computes in: on the CPU f32 or f64, all one dtype; on CUDA f32 or bf16 each.
void check_float_operands(const char* op, std::initializer_list<Named> ts);
// The inputs of an op that moves elements without arithmetic: one device and one dtype; on
// CUDA elements of 2 or 4 bytes.
void check_movable_operands(const char* op, std::initializer_list<Named> ts);
// `t` must be f32 on CUDA (master weights, the DINO logits, the position grid): `what` says
// why in the message. Nothing on the CPU, where check_float_operands has the last word.
void require_f32_on_cuda(const char* op, const Tensor& t, const char* name, const char* what);

// An elementwise result: f32 when either operand is f32, else their common dtype.
DType promote(DType a, DType b);
// The dtype a product that is summed afterwards is formed in: bf16 widened to f32.
DType accumulation(DType t);
// LayerNorm's x and statistics (norm_input) and its output (norm_output): x's dtype on the
// CPU; on CUDA the f32 residual stream in (a bf16 x is widened, its gradient narrowed back)
// and bf16 out, for the GEMM that reads it.
DType norm_input(const Tensor& x);
DType norm_output(const Tensor& x);
// Whether the fused add + LayerNorm takes x and branch as they are: on CUDA the f32 stream
// and a bf16 branch (what a GEMM writes); other pairs add first, then normalise.
bool fuses_add_norm(const Tensor& x, const Tensor& branch);
// The products (matmul, linear, the patch embedding, DINO's last layer, attention): operands
// in gemm_operand (bf16 on CUDA, t's dtype on the CPU), and so is a result the next GEMM or a
// bf16 activation takes.
DType gemm_operand(const Tensor& t);
// What sums are kept in: f32 on CUDA, t's dtype on the CPU. Sums and means of all elements
// (an f32 scalar on CUDA), row statistics (softmax's lse, the rows' L2 norms), and the results
// of fp32-output GEMMs (logits, the residual stream's patch tokens, weight gradients).
DType accumulator(const Tensor& t);
// The DINO loss's teacher column sums (the center update's input, added over ranks): f32 on
// CUDA (the fused loss kernel's), f64 on the CPU.
DType column_sums(const Tensor& t);

}  // namespace dino::precision
