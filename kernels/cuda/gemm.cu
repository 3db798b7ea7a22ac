// Matrix products through cuBLASLt and the bias gradient (the MLP's GELU is not fused: see
// below).
//
// GEMM: bf16 operands, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 or fp32 output,
// optionally the bias epilogue (forward), strided batched; the weight product's bias
// gradient (backward) comes from our column-sum kernels after the plain product. Our tensors
// are row-major and cuBLASLt's are column-major; a row-major (M, N) matrix is the column-major
// (N, M) one with the same bytes, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T:
// cuBLASLt's "A" is our B, its "B" is our A, m = N, n = M.
// The three products of a Linear layer (weight W (out, in), x (rows, in)):
//   forward   y (rows, out) = x W^T + b      gemm(y, x, W, trans_b = true, epilogue bias)
//   input     dx (rows, in) = dy W           gemm(dx, dy, W)
//   weight    dW (out, in)  = dy^T x, db = Σ_rows dy
//                                            gemm(dW, dy, x, trans_a = true, epilogue bias_grad)
// The bias epilogue (CUBLASLT_EPILOGUE_BIAS) adds a vector of length "rows of D" =
// cuBLASLt's m = our N, i.e. one value per column of our C, broadcast over our rows; its
// elements have D's type (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: the bias type is
// D's type except for int8/fp8 kernels), so a bf16 product takes a bf16 bias and an fp32
// product an fp32 one. FLOPs: 2·M·N·K per product; bound by math for ViT shapes.
// The bias gradient is not cuBLASLt's BGRADB epilogue: on an H200 (cuBLASLt of CUDA 13.0) the
// weight products with BGRADB took 1.3-1.8x the plain product's time for the ViT-S shapes
// (qkv 46 vs 26 µs, fc1 50 vs 32; benchmarks/results/2026-12-04-h200.md), while reading dy
// once more (2·rows·out bytes: 8 µs for qkv) costs less than that difference.
// A Linear followed by GELU (fc1, the DINO head's hidden layers) is the op linear_gelu, whose
// backward asks for no bias gradient here: its dy is what the GELU backward writes, and that
// pass sums it as it goes (kernels/cuda/linear_gelu.cu), which saves these two launches, their
// scratch and the re-read of dy. Likewise proj and fc2 under stochastic depth (training, the
// block's rate p > 0) are the op linear_drop_path: their dy is what drop path's backward writes,
// and that pass sums it (kernels/cuda/linear_drop_path.cu). The other Linears use the column
// sums here: qkv's dy comes from attention, and proj's and fc2's without drop path from the
// fused add_layer_norm backward, where fusing would need one node spanning the Linear, the
// residual add and the LayerNorm.
//
// Alignment: cuBLASLt's heuristic cannot see the data pointers, and by default it assumes
// 256-byte-aligned A, B, C, D; it is told each matrix's real alignment (the largest power of
// two, at most 256, dividing its pointer, its leading dimension and its batch stride in
// bytes: views and odd sizes such as in = 33 give 2), per matrix as PyTorch's cuBLASLt calls
// do. One value for all four would tell an fp32 D it may sit on a 2-byte boundary because a
// bf16 operand does, below its own element size, which can leave the heuristic no algorithm.
// The bias pointer is in the matmul descriptor, which the heuristic reads. The chosen
// algorithm is cached per (shape, transposes, output type, epilogue, batch shape, the
// matrices' and the bias's alignments) in the context; the bias type follows from the output
// type, so the key determines every input of the heuristic.
// Should the heuristic find no algorithm with the bias epilogue (not expected on sm_90, but
// this code has not met every cuBLASLt version), the product runs without it and a small
// kernel adds the bias (from an fp32 product, one rounding), with a note on stderr once per
// problem (tested on the emulator: tests/simt/test_gemm_unfused.cpp).
//
// The MLP's GELU is not fused here: cuBLASLt's GELU epilogue is the tanh form (ARCHITECTURE §3).
// fc1 runs with the bias epilogue and writes the bf16 pre-activation, which the exact-erf GELU
// (elementwise.cu) reads and linear_gelu's backward keeps: 2 + 2 + 2 bytes per element. A separate
// bias+GELU kernel after a bias-free GEMM would move 2 + 2 + 2 + 2 (it must also store the
// pre-activation for the backward), or recompute it and still read h, bias and dout then.

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace dino::kernels::cuda {

// kernels

// The unfused epilogues, used only where cuBLASLt has no algorithm with the fused one.
// C (n) <- tmp (n) + bias (i % N); f32 may run in place (C == tmp).
__global__ void add_bias_f32_kernel(float* C, const float* tmp, const float* bias, int64_t n,
                                    int64_t N) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    C[i] = tmp[i] + bias[i % N];
}
// C (n) <- bf16(tmp (n) f32 + bias (i % N)): one rounding, as the fused epilogue.
__global__ void add_bias_bf16_kernel(__nv_bfloat16* C, const float* tmp, const __nv_bfloat16* bias,
                                     int64_t n, int64_t N) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    C[i] = __float2bfloat16_rn(tmp[i] + __bfloat162float(bias[i % N]));
}
// The bias gradient db (M) = Σ_k A[k, m], A = dy stored (K, M) row-major, in two passes.
// Pass 1: a block of 8 warps owns 256 columns (8 per lane: one 16-byte load per row, element
// loads when M % 8 != 0 or A is not 16-byte aligned) and a chunk of rows; warp w adds rows w,
// w + 8, ... of the chunk, and the warps are added in order through shared memory into the
// chunk's row of partial (chunks, M). Pass 2 adds the chunks' rows (sum_partial_column).
constexpr int kColumnsPerLane = 8, kBiasGradWarps = 8;
static_assert(kBiasGradWarps == kColumnsPerLane, "write_column_partials: one column per thread");
constexpr int kColumnsPerBlock = 32 * kColumnsPerLane;
template <bool kVec>
__global__ void bias_grad_partial_kernel(float* partial, const __nv_bfloat16* A, int64_t K,
                                         int64_t M, int64_t rows_per_chunk) {
  __shared__ float warp_sums[kBiasGradWarps][kColumnsPerBlock];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  const int64_t c0 = int64_t(blockIdx.x) * kColumnsPerBlock + lane * kColumnsPerLane;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < K ? r0 + rows_per_chunk : K;
  float acc[kColumnsPerLane] = {};
#pragma unroll 4
  for (int64_t r = r0 + warp; r < r1; r += kBiasGradWarps) {
    const __nv_bfloat16* row = A + r * M + c0;
    if (kVec) {
      if (c0 < M) {
        const uint4 raw = *reinterpret_cast<const uint4*>(row);
        const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
          acc[2 * i] += f.x;
          acc[2 * i + 1] += f.y;
        }
      }
    } else {
#pragma unroll
      for (int e = 0; e < kColumnsPerLane; ++e)
        if (c0 + e < M) acc[e] += __bfloat162float(row[e]);
    }
  }
  write_column_partials(partial, acc, M, warp_sums);
}
// bias (M) <- Σ over chunks of partial (chunks, M), in C's type.
__global__ void bias_grad_reduce_kernel(void* bias, bool bias_bf16, const float* partial,
                                        int chunks, int64_t M) {
  __shared__ float tree[32][33];
  const float sum = sum_partial_column(partial, chunks, M, tree);
  const int64_t m = int64_t(blockIdx.x) * 32 + threadIdx.x;
  if (threadIdx.x < 32 && m < M) {
    if (bias_bf16)
      static_cast<__nv_bfloat16*>(bias)[m] = __float2bfloat16_rn(sum);
    else
      static_cast<float*>(bias)[m] = sum;
  }
}

// launchers

namespace {

// Owners of the cuBLASLt descriptors, destroyed on every exit path.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~MatmulDesc() {
    if (d) cublasLtMatmulDescDestroy(d);
  }
};
struct Layout {
  cublasLtMatrixLayout_t d = nullptr;
  ~Layout() {
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};
struct Preference {
  cublasLtMatmulPreference_t d = nullptr;
  ~Preference() {
    if (d) cublasLtMatmulPreferenceDestroy(d);
  }
};

void make_layout(Layout& l, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int batch,
                 int64_t stride) {
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l.d, type, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l.d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                  sizeof(batch)));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l.d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                  &stride, sizeof(stride)));
  }
}

// The largest power of two (at most 256) dividing the pointer's address (if any) and every
// byte count (leading dimension, batch stride) in `bytes`.
uint32_t alignment_of(const void* p, std::initializer_list<int64_t> bytes) {
  uintptr_t bits = 256 | reinterpret_cast<uintptr_t>(p);
  for (const int64_t n : bytes) bits |= uintptr_t(n);
  return uint32_t(bits & (~bits + 1));
}

int grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  const int64_t cap = int64_t(context().sm_count) * 16;
  return int(blocks < cap ? blocks : cap);
}

// bias (M) <- Σ_k A[k, m] for A (K, M) row-major: about eight blocks per SM in all, split
// into 256-column strips and row chunks.
void bias_grad(void* bias, bool bias_bf16, const __nv_bfloat16* A, int64_t K, int64_t M,
               cudaStream_t stream) {
  const int64_t strips = (M + kColumnsPerBlock - 1) / kColumnsPerBlock;
  const int64_t want = std::max<int64_t>(1, 8 * int64_t(context().sm_count) / strips);
  const int64_t rows_per_chunk = std::max<int64_t>(kBiasGradWarps, (K + want - 1) / want);
  const int chunks = int((K + rows_per_chunk - 1) / rows_per_chunk);
  float* partial = static_cast<float*>(alloc(size_t(chunks) * size_t(M) * sizeof(float)));
  const dim3 grid(static_cast<unsigned>(strips), static_cast<unsigned>(chunks));
  const bool vec = M % kColumnsPerLane == 0 && reinterpret_cast<uintptr_t>(A) % 16 == 0;
  auto kernel = vec ? bias_grad_partial_kernel<true> : bias_grad_partial_kernel<false>;
  kernel<<<grid, 32 * kBiasGradWarps, 0, stream>>>(partial, A, K, M, rows_per_chunk);
  CUDA_CHECK(cudaGetLastError());
  bias_grad_reduce_kernel<<<int((M + 31) / 32), kPartialColumnThreads, 0, stream>>>(
      bias, bias_bf16, partial, chunks, M);
  CUDA_CHECK(cudaGetLastError());
  free(partial);  // stream-ordered: after the kernels that use it
}

// Problems for which cuBLASLt's heuristic found no algorithm, per device: asked once.
std::mutex unsupported_mutex;
std::set<std::pair<int, GemmKey>> unsupported;

// One cuBLASLt matmul; false (and nothing launched) when cuBLASLt has no algorithm for it.
bool try_gemm_lt(void* C, bool c_bf16, const __nv_bfloat16* A, const __nv_bfloat16* B, void* bias,
                 GemmEpilogue epilogue, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                 int batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                 cudaStream_t stream) {
  Context& ctx = context();
  const cudaDataType_t c_type = c_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const int64_t c_size = c_bf16 ? 2 : 4;
  const cublasOperation_t op_a_lt = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt A = our B
  const cublasOperation_t op_b_lt = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt B = our A
  const cublasLtEpilogue_t ep =
      epilogue == GemmEpilogue::bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  // Leading dimensions (elements) of the row-major operands: A (M, K) or (K, M), B (K, N) or
  // (N, K), C (M, N).
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N, ldc = N;

  MatmulDesc op;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&op.d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_a_lt, sizeof(op_a_lt)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_b_lt, sizeof(op_b_lt)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
  if (epilogue != GemmEpilogue::none) {
    // The bias (or its gradient) has D's type (see the top of this file); stated explicitly.
    const int32_t bias_type = int32_t(c_type);
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                &bias_type, sizeof(bias_type)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)));
  }

  Layout a_lt, b_lt, c_lt;
  // cuBLASLt's A is our B: stored row-major (K, N) = column-major (N, K) with ld N, op N; or,
  // when trans_b, stored (N, K) = column-major (K, N) with ld K, op T. Either way op(A_lt) is
  // (m, k) = (N, K).
  make_layout(a_lt, CUDA_R_16BF, trans_b ? K : N, trans_b ? N : K, ldb, batch, stride_b);
  // cuBLASLt's B is our A: stored (M, K) = column-major (K, M) with ld K, op N; or, when
  // trans_a, stored (K, M) = column-major (M, K) with ld M, op T: op(B_lt) is (k, n) = (K, M).
  make_layout(b_lt, CUDA_R_16BF, trans_a ? M : K, trans_a ? K : M, lda, batch, stride_a);
  // D = C: our row-major (M, N) is column-major (N, M) with ld N: (m, n) = (N, M).
  make_layout(c_lt, c_type, N, M, ldc, batch, stride_c);

  // Per cuBLASLt matrix: its A is our B, its B our A, C = D ours.
  const uint32_t align_a_lt = alignment_of(B, {2 * ldb, 2 * stride_b});
  const uint32_t align_b_lt = alignment_of(A, {2 * lda, 2 * stride_a});
  const uint32_t align_c = alignment_of(C, {c_size * ldc, c_size * stride_c});
  // Each is at most 256 (9 bits); the bias pointer's alignment also steers the heuristic.
  const int64_t aligns = int64_t(align_a_lt) | int64_t(align_b_lt) << 9 | int64_t(align_c) << 18 |
                         int64_t(alignment_of(bias, {})) << 27;
  const GemmKey key = {M,     N,        K,        trans_a,  trans_b, c_bf16, int64_t(epilogue),
                       batch, stride_a, stride_b, stride_c, aligns};
  cublasLtMatmulAlgo_t algo;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(unsupported_mutex);
    if (unsupported.count({ctx.device, key})) return false;
  }
  {
    std::lock_guard<std::mutex> lock(ctx.gemm_mutex);
    const auto it = ctx.gemm_algos.find(key);
    if (it != ctx.gemm_algos.end()) algo = it->second, cached = true;
  }
  if (!cached) {
    Preference pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.d));
    const size_t ws = Context::kLtWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> prefs[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a_lt},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b_lt},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}};
    for (const auto& [attr, value] : prefs)
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.d, attr, &value, sizeof(value)));
    cublasLtMatmulHeuristicResult_t result = {};
    int found = 0;
    // No algorithm for the problem comes back as CUBLAS_STATUS_NOT_SUPPORTED: say which.
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx.lt(), op.d, a_lt.d, b_lt.d, c_lt.d,
                                                             c_lt.d, pref.d, 1, &result, &found);
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) CUBLAS_CHECK(st);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      std::lock_guard<std::mutex> lock(unsupported_mutex);
      unsupported.insert({ctx.device, key});
      return false;
    }
    algo = result.algo;
    std::lock_guard<std::mutex> lock(ctx.gemm_mutex);
    ctx.gemm_algos.emplace(key, algo);
  }

  // beta = 0: C is not read (it may hold NaN), D = C is written in full.
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(ctx.lt(), op.d, &alpha, B, a_lt.d, A, b_lt.d, &beta, C, c_lt.d, C,
                              c_lt.d, &algo, ctx.lt_workspace(), Context::kLtWorkspaceBytes,
                              stream));
  return true;
}

}  // namespace

void gemm(void* C, bool c_bf16, const __nv_bfloat16* A, const __nv_bfloat16* B, void* bias,
          GemmEpilogue epilogue, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
          int batch, int64_t stride_a, int64_t stride_b, int64_t stride_c, cudaStream_t stream) {
  DINO_CHECK(M > 0 && N > 0 && K > 0 && batch >= 1, "[gemm] bad sizes M=", M, " N=", N, " K=", K,
             " batch=", batch);
  DINO_CHECK(epilogue == GemmEpilogue::none || bias, "[gemm] the epilogue needs a bias pointer");
  if (epilogue == GemmEpilogue::bias_grad) {
    DINO_CHECK(batch == 1 && trans_a,
               "[gemm] the bias gradient is for dW = dy^T x: one matrix "
               "(not a batch of ",
               batch, ") with trans_a (got ", trans_a, ")");
    gemm(C, c_bf16, A, B, nullptr, GemmEpilogue::none, M, N, K, trans_a, trans_b, 1, 0, 0, 0,
         stream);
    bias_grad(bias, c_bf16, A, K, M, stream);
    return;
  }
  if (batch == 1) stride_a = stride_b = stride_c = 0;  // unused: keep them out of the cache key
  if (try_gemm_lt(C, c_bf16, A, B, bias, epilogue, M, N, K, trans_a, trans_b, batch, stride_a,
                  stride_b, stride_c, stream))
    return;
  DINO_CHECK(epilogue != GemmEpilogue::none, "[gemm] cuBLASLt has no algorithm for M=", M, " N=", N,
             " K=", K, " trans_a=", trans_a, " trans_b=", trans_b, " out=", c_bf16 ? "bf16" : "f32",
             " batch=", batch);
  // No algorithm with the fused bias epilogue: the plain product, then the bias as a kernel.
  // (The heuristic's answer is cached, so this note prints once per problem.)
  DINO_CHECK(batch == 1 || stride_c == M * N,
             "[gemm] the unfused bias epilogue needs a packed "
             "batch of C (stride ",
             stride_c, ", M*N = ", M * N, ")");
  static std::mutex note_mutex;
  static std::set<GemmKey> noted;
  {
    std::lock_guard<std::mutex> lock(note_mutex);
    const GemmKey k = {M, N, K, trans_a, trans_b, c_bf16, int64_t(epilogue), batch, 0, 0, 0, 0};
    if (noted.insert(k).second)
      std::fprintf(stderr,
                   "[gemm] note: cuBLASLt has no algorithm with the bias epilogue for "
                   "M=%lld N=%lld K=%lld (%s out); running it unfused\n",
                   (long long)M, (long long)N, (long long)K, c_bf16 ? "bf16" : "f32");
  }
  const int64_t n = M * N * batch;
  float* tmp =
      c_bf16 ? static_cast<float*>(alloc(size_t(n) * sizeof(float))) : static_cast<float*>(C);
  try {
    gemm(tmp, false, A, B, nullptr, GemmEpilogue::none, M, N, K, trans_a, trans_b, batch, stride_a,
         stride_b, batch == 1 ? 0 : M * N, stream);
    if (c_bf16)
      add_bias_bf16_kernel<<<grid_for(n), 256, 0, stream>>>(
          static_cast<__nv_bfloat16*>(C), tmp, static_cast<const __nv_bfloat16*>(bias), n, N);
    else
      add_bias_f32_kernel<<<grid_for(n), 256, 0, stream>>>(static_cast<float*>(C), tmp,
                                                           static_cast<const float*>(bias), n, N);
    CUDA_CHECK(cudaGetLastError());
  } catch (...) {
    if (c_bf16) free(tmp);
    throw;
  }
  if (c_bf16) free(tmp);  // stream-ordered: after the kernel that reads it
}

namespace {

const __nv_bfloat16* operand(const char* op, const Tensor& t, const char* name) {
  DINO_CHECK(is_bf16(t), "[", op, "] ", name, " must be a bf16 GEMM operand on CUDA, got ",
             dtype_name(t.dtype()));
  return bf16_ptr(t);
}

void* data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

}  // namespace

void CudaBackend::matmul(const Tensor& out, const Tensor& a, const Tensor& b) const {
  check_not_empty("matmul", a, b);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const __nv_bfloat16 *pa = operand("matmul", a, "a"), *pb = operand("matmul", b, "b");
  if (b.dim() == 2)  // a shared b folds the batch into the rows: one GEMM
    gemm(out.raw_data(), is_bf16(out), pa, pb, nullptr, GemmEpilogue::none, nb * M, N, K, false,
         false, 1, 0, 0, 0, op_stream());
  else
    gemm(out.raw_data(), is_bf16(out), pa, pb, nullptr, GemmEpilogue::none, M, N, K, false, false,
         as_int("matmul", nb, "batch"), M * K, K * N, M * N, op_stream());
}

void CudaBackend::matmul_backward(const Tensor& da, const Tensor& db, const Tensor& dout,
                                  const Tensor& a, const Tensor& b) const {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nb = a.numel() / (M * K);
  const bool shared_b = b.dim() == 2;
  const int batch = as_int("matmul", nb, "batch");
  const __nv_bfloat16* g = operand("matmul", dout, "dout");
  if (da.defined()) {  // da = g @ b^T
    const __nv_bfloat16* pb = operand("matmul", b, "b");
    if (shared_b)
      gemm(da.raw_data(), is_bf16(da), g, pb, nullptr, GemmEpilogue::none, nb * M, K, N, false,
           true, 1, 0, 0, 0, op_stream());
    else
      gemm(da.raw_data(), is_bf16(da), g, pb, nullptr, GemmEpilogue::none, M, K, N, false, true,
           batch, M * N, K * N, M * K, op_stream());
  }
  if (db.defined()) {  // db = a^T @ g; a shared b sums over every row of the batch
    const __nv_bfloat16* pa = operand("matmul", a, "a");
    if (shared_b)
      gemm(db.raw_data(), is_bf16(db), pa, g, nullptr, GemmEpilogue::none, K, N, nb * M, true,
           false, 1, 0, 0, 0, op_stream());
    else
      gemm(db.raw_data(), is_bf16(db), pa, g, nullptr, GemmEpilogue::none, K, N, M, true, false,
           batch, M * K, M * N, K * N, op_stream());
  }
}

void CudaBackend::linear(const Tensor& out, const Tensor& x, const Tensor& weight,
                         const Tensor& bias) const {
  check_not_empty("linear", x, weight);
  const int64_t R = x.numel() / x.size(-1), I = x.size(-1), O = out.size(-1);
  // cuBLASLt's bias has the output's type (autocast casts the bias too).
  gemm(out.raw_data(), is_bf16(out), operand("linear", x, "x"), operand("linear", weight, "weight"),
       data_or_null(bias), bias.defined() ? GemmEpilogue::bias : GemmEpilogue::none, R, O, I, false,
       true, 1, 0, 0, 0, op_stream());
}

void CudaBackend::linear_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                  const Tensor& dout, const Tensor& x, const Tensor& weight) const {
  const int64_t R = x.numel() / x.size(-1), I = x.size(-1), O = dout.size(-1);
  const __nv_bfloat16* g = operand("linear", dout, "dout");
  if (dx.defined())  // dx = dout W
    gemm(dx.raw_data(), is_bf16(dx), g, operand("linear", weight, "weight"), nullptr,
         GemmEpilogue::none, R, I, O, false, false, 1, 0, 0, 0, op_stream());
  if (!dweight.defined() && !dbias.defined()) return;
  // dW = dout^T x with db from the epilogue. Without a weight gradient the product still runs
  // for its db (a bias trained under a frozen weight: rare, so no separate column sum).
  const Tensor dw =
      dweight.defined() ? dweight : Tensor::empty({O, I}, dbias.dtype(), Device::cuda);
  gemm(dw.raw_data(), is_bf16(dw), g, operand("linear", x, "x"), data_or_null(dbias),
       dbias.defined() ? GemmEpilogue::bias_grad : GemmEpilogue::none, O, I, R, true, false, 1, 0,
       0, 0, op_stream());
}

}  // namespace dino::kernels::cuda
