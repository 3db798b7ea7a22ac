// Matrix products through cuBLASLt, and the fused bias + exact-GELU of the MLP.
//
// GEMM: bf16 operands, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 or fp32 output,
// optionally the bias epilogue (forward) or the bias-gradient epilogue (backward), strided
// batched. Our tensors are row-major and cuBLASLt's are column-major; a row-major (M, N)
// matrix is the column-major (N, M) one with the same bytes, so C = op(A) op(B) is computed
// as C^T = op(B)^T op(A)^T: cuBLASLt's "A" is our B, its "B" is our A, m = N, n = M.
// The three products of a Linear layer (weight W (out, in), x (rows, in)):
//   forward   y (rows, out) = x W^T + b      gemm(y, x, W, trans_b = true, epilogue bias)
//   input     dx (rows, in) = dy W           gemm(dx, dy, W)
//   weight    dW (out, in)  = dy^T x, db = Σ_rows dy
//                                            gemm(dW, dy, x, trans_a = true, epilogue bias_grad)
// The bias epilogue (CUBLASLT_EPILOGUE_BIAS) adds a vector of length "rows of D" =
// cuBLASLt's m = our N, i.e. one value per column of our C, broadcast over our rows; its
// elements have D's type (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: the bias type is
// D's type except for int8/fp8 kernels), so a bf16 product takes a bf16 bias and an fp32
// product an fp32 one. BGRADB writes, per column n of cuBLASLt's D, Σ_k opB_lt[k, n]; its
// columns are our rows (m), and cuBLASLt's B is our A, so that is Σ_k op(A)[m, k] -- for the
// weight product, op(A) = dy^T, so it is db (length M = out), in D's type (fp32 for dW). This
// is the layout Apex/TransformerEngine use for their wgrad + bgrad GEMM (cuBLASLt "NT":
// A = x op N, B = dy op T). FLOPs: 2·M·N·K per product; bound by math for ViT shapes.
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
// Should the heuristic find no algorithm with a fused epilogue (not expected on sm_90, but
// this code has not met every cuBLASLt version), the product runs without it and a small
// kernel applies the bias (from an fp32 product, one rounding) or sums the bias gradient
// (double accumulation, in order), with a note on stderr once per problem.
//
// The MLP's GELU is not fused here: cuBLASLt's GELU epilogue is the tanh form (DESIGN §3).
// fc1 runs with the bias epilogue and writes the bf16 pre-activation, which the exact-erf GELU
// (elementwise.cu) reads and its backward keeps: 2 + 2 + 2 bytes per element. A separate
// bias+GELU kernel after a bias-free GEMM would move 2 + 2 + 2 + 2 (it must also store the
// pre-activation for the backward), or recompute it and still read h, bias and dout then.

#include <cuda_bf16.h>

#include <cstdio>
#include <set>
#include <utility>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
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
__global__ void add_bias_bf16_kernel(__nv_bfloat16* C, const float* tmp,
                                     const __nv_bfloat16* bias, int64_t n, int64_t N) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    C[i] = __float2bfloat16_rn(tmp[i] + __bfloat162float(bias[i % N]));
}
// bias (M) <- Σ_k op(A)[m, k], A stored (K, M) when trans_a else (M, K). One thread per m,
// k in order, double accumulation: deterministic; slow for long k, but only a fallback.
__global__ void bias_grad_kernel(void* bias, bool bias_bf16, const __nv_bfloat16* A, int64_t M,
                                 int64_t K, bool trans_a) {
  const int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (m >= M) return;
  double acc = 0;
  for (int64_t k = 0; k < K; ++k) acc += double(__bfloat162float(A[trans_a ? k * M + m : m * K + k]));
  if (bias_bf16)
    static_cast<__nv_bfloat16*>(bias)[m] = __float2bfloat16_rn(float(acc));
  else
    static_cast<float*>(bias)[m] = float(acc);
}

// launchers

namespace {

// Owners of the cuBLASLt descriptors, destroyed on every exit path.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~MatmulDesc() { if (d) cublasLtMatmulDescDestroy(d); }
};
struct Layout {
  cublasLtMatrixLayout_t d = nullptr;
  ~Layout() { if (d) cublasLtMatrixLayoutDestroy(d); }
};
struct Preference {
  cublasLtMatmulPreference_t d = nullptr;
  ~Preference() { if (d) cublasLtMatmulPreferenceDestroy(d); }
};

void make_layout(Layout& l, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                 int batch, int64_t stride) {
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l.d, type, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l.d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                  &batch, sizeof(batch)));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        l.d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
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

// Problems for which cuBLASLt's heuristic found no algorithm, per device: asked once.
std::mutex unsupported_mutex;
std::set<std::pair<int, GemmKey>> unsupported;

// One cuBLASLt matmul; false (and nothing launched) when cuBLASLt has no algorithm for it.
bool try_gemm_lt(void* C, bool c_bf16, const __nv_bfloat16* A, const __nv_bfloat16* B,
                 void* bias, GemmEpilogue epilogue, int64_t M, int64_t N, int64_t K, bool trans_a,
                 bool trans_b, int batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                 cudaStream_t stream) {
  Context& ctx = context();
  const cudaDataType_t c_type = c_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const int64_t c_size = c_bf16 ? 2 : 4;
  const cublasOperation_t op_a_lt = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt A = our B
  const cublasOperation_t op_b_lt = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt B = our A
  const cublasLtEpilogue_t ep = epilogue == GemmEpilogue::bias      ? CUBLASLT_EPILOGUE_BIAS
                                : epilogue == GemmEpilogue::bias_grad ? CUBLASLT_EPILOGUE_BGRADB
                                                                      : CUBLASLT_EPILOGUE_DEFAULT;
  // Leading dimensions (elements) of the row-major operands: A (M, K) or (K, M), B (K, N) or
  // (N, K), C (M, N).
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N, ldc = N;

  MatmulDesc op;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&op.d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_a_lt,
                                              sizeof(op_a_lt)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_b_lt,
                                              sizeof(op_b_lt)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
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
  const int64_t aligns = int64_t(align_a_lt) | int64_t(align_b_lt) << 9 |
                         int64_t(align_c) << 18 | int64_t(alignment_of(bias, {})) << 27;
  const GemmKey key = {M, N, K, trans_a, trans_b, c_bf16, int64_t(epilogue), batch,
                       stride_a, stride_b, stride_c, aligns};
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
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
        ctx.lt(), op.d, a_lt.d, b_lt.d, c_lt.d, c_lt.d, pref.d, 1, &result, &found);
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
  DINO_CHECK(epilogue != GemmEpilogue::bias_grad || batch == 1,
             "[gemm] the bias-gradient epilogue takes one matrix, not a batch of ", batch);
  if (batch == 1) stride_a = stride_b = stride_c = 0;  // unused: keep them out of the cache key
  if (try_gemm_lt(C, c_bf16, A, B, bias, epilogue, M, N, K, trans_a, trans_b, batch, stride_a,
                  stride_b, stride_c, stream))
    return;
  DINO_CHECK(epilogue != GemmEpilogue::none, "[gemm] cuBLASLt has no algorithm for M=", M, " N=",
             N, " K=", K, " trans_a=", trans_a, " trans_b=", trans_b, " out=",
             c_bf16 ? "bf16" : "f32", " batch=", batch);
  // No algorithm with the fused epilogue: the plain product, then the epilogue as a kernel.
  // (The heuristic's answer is cached, so this note prints once per problem.)
  DINO_CHECK(batch == 1 || stride_c == M * N, "[gemm] the unfused bias epilogue needs a packed "
             "batch of C (stride ", stride_c, ", M*N = ", M * N, ")");
  static std::mutex note_mutex;
  static std::set<GemmKey> noted;
  {
    std::lock_guard<std::mutex> lock(note_mutex);
    const GemmKey k = {M, N, K, trans_a, trans_b, c_bf16, int64_t(epilogue), batch, 0, 0, 0, 0};
    if (noted.insert(k).second)
      std::fprintf(stderr, "[gemm] note: cuBLASLt has no algorithm with the %s epilogue for M=%lld "
                   "N=%lld K=%lld (%s out); running it unfused\n",
                   epilogue == GemmEpilogue::bias ? "bias" : "bias-gradient", (long long)M,
                   (long long)N, (long long)K, c_bf16 ? "bf16" : "f32");
  }
  const int64_t n = M * N * batch;
  if (epilogue == GemmEpilogue::bias) {
    float* tmp = c_bf16 ? static_cast<float*>(alloc(size_t(n) * sizeof(float)))
                        : static_cast<float*>(C);
    try {
      gemm(tmp, false, A, B, nullptr, GemmEpilogue::none, M, N, K, trans_a, trans_b, batch,
           stride_a, stride_b, batch == 1 ? 0 : M * N, stream);
      if (c_bf16)
        add_bias_bf16_kernel<<<grid_for(n), 256, 0, stream>>>(
            static_cast<__nv_bfloat16*>(C), tmp, static_cast<const __nv_bfloat16*>(bias), n, N);
      else
        add_bias_f32_kernel<<<grid_for(n), 256, 0, stream>>>(
            static_cast<float*>(C), tmp, static_cast<const float*>(bias), n, N);
      CUDA_CHECK(cudaGetLastError());
    } catch (...) {
      if (c_bf16) free(tmp);
      throw;
    }
    if (c_bf16) free(tmp);  // stream-ordered: after the kernel that reads it
  } else {
    gemm(C, c_bf16, A, B, nullptr, GemmEpilogue::none, M, N, K, trans_a, trans_b, 1, 0, 0, 0,
         stream);
    bias_grad_kernel<<<int((M + 255) / 256), 256, 0, stream>>>(bias, c_bf16, A, M, K, trans_a);
    CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace dino::kernels::cuda
