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
// The bias epilogue adds a vector along cuBLASLt's rows = our columns (N); BGRADB reduces
// cuBLASLt's B = our A over k, giving Σ_k op(A)[m, k] for each of our rows m: for the weight
// product, op(A) = dy^T, so that is db. FLOPs: 2·M·N·K per product; bound by math for ViT
// shapes. The heuristic's algorithm is cached per (shape, transposes, output type, epilogue,
// batch shape, pointer alignment) in the context.
//
// bias_gelu: the MLP's fc1 output h (bf16, from a GEMM without bias) plus the fp32 bias,
// stored as the bf16 pre-activation (what the backward needs), and GELU of that stored value
// in bf16. Exact erf GELU (DESIGN §3: cuBLASLt's GELU epilogue is the tanh form, so it is not
// used). Bytes per element: read h (2), write pre (2) and out (2); backward reads dout, pre
// (4), writes dpre (2). Memory-bound.
#include <cuda_bf16.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda {

// kernels

__global__ void bias_gelu_forward_kernel(__nv_bfloat16* out, __nv_bfloat16* pre,
                                         const __nv_bfloat16* h, const float* bias, int64_t n,
                                         int N) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const __nv_bfloat16 p = __float2bfloat16_rn(__bfloat162float(h[i]) + bias[i % N]);
    const float x = __bfloat162float(p);
    pre[i] = p;
    out[i] = __float2bfloat16_rn(0.5f * x * (1.f + erff(x * 0.70710678118654752f)));
  }
}

__global__ void gelu_backward_kernel(__nv_bfloat16* dpre, const __nv_bfloat16* dout,
                                     const __nv_bfloat16* pre, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x = __bfloat162float(pre[i]);
    const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    const float pdf = __expf(-0.5f * x * x) * 0.39894228040143267794f;
    dpre[i] = __float2bfloat16_rn(__bfloat162float(dout[i]) * (cdf + x * pdf));
  }
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

// The largest power of two (at most 256) dividing every pointer's address.
uint32_t common_alignment(std::initializer_list<const void*> ptrs) {
  uintptr_t bits = 256;
  for (const void* p : ptrs)
    if (p) bits |= reinterpret_cast<uintptr_t>(p);
  return uint32_t(bits & (~bits + 1));
}

int grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  const int64_t cap = int64_t(context().sm_count) * 16;
  return int(blocks < cap ? blocks : cap);
}

}  // namespace

void gemm(void* C, bool c_bf16, const __nv_bfloat16* A, const __nv_bfloat16* B, void* bias,
          GemmEpilogue epilogue, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
          int batch, int64_t stride_a, int64_t stride_b, int64_t stride_c, cudaStream_t stream) {
  DINO_CHECK(M > 0 && N > 0 && K > 0 && batch >= 1, "[gemm] bad sizes M=", M, " N=", N, " K=", K,
             " batch=", batch);
  DINO_CHECK(epilogue == GemmEpilogue::none || bias, "[gemm] the epilogue needs a bias pointer");
  Context& ctx = context();
  const cudaDataType_t c_type = c_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasOperation_t op_a_lt = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt A = our B
  const cublasOperation_t op_b_lt = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt B = our A
  const cublasLtEpilogue_t ep = epilogue == GemmEpilogue::bias      ? CUBLASLT_EPILOGUE_BIAS
                                : epilogue == GemmEpilogue::bias_grad ? CUBLASLT_EPILOGUE_BGRADB
                                                                      : CUBLASLT_EPILOGUE_DEFAULT;

  MatmulDesc op;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&op.d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_a_lt,
                                              sizeof(op_a_lt)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_b_lt,
                                              sizeof(op_b_lt)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
  if (epilogue != GemmEpilogue::none) {
    // The bias (or its gradient) has C's type.
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &c_type,
                                                sizeof(c_type)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)));
  }

  Layout a_lt, b_lt, c_lt;
  // Our B: stored (K, N) = column-major (N, K), or when trans_b stored (N, K) = col-major (K, N).
  make_layout(a_lt, CUDA_R_16BF, trans_b ? K : N, trans_b ? N : K, trans_b ? K : N, batch, stride_b);
  // Our A: stored (M, K) = column-major (K, M), or when trans_a stored (K, M) = col-major (M, K).
  make_layout(b_lt, CUDA_R_16BF, trans_a ? M : K, trans_a ? K : M, trans_a ? M : K, batch, stride_a);
  make_layout(c_lt, c_type, N, M, N, batch, stride_c);

  const uint32_t align = common_alignment({A, B, C, bias});
  const GemmKey key = {M, N, K, trans_a, trans_b, c_bf16, int64_t(epilogue), batch,
                       stride_a, stride_b, stride_c, int64_t(align)};
  cublasLtMatmulAlgo_t algo;
  bool cached = false;
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
    for (const auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.d, attr, &align, sizeof(align)));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt(), op.d, a_lt.d, b_lt.d, c_lt.d, c_lt.d,
                                                pref.d, 1, &result, &found));
    DINO_CHECK(found > 0, "[gemm] cuBLASLt has no algorithm for M=", M, " N=", N, " K=", K,
               " trans_a=", trans_a, " trans_b=", trans_b, " out=", c_bf16 ? "bf16" : "f32",
               " epilogue=", int(epilogue), " batch=", batch, " alignment=", align);
    algo = result.algo;
    std::lock_guard<std::mutex> lock(ctx.gemm_mutex);
    ctx.gemm_algos.emplace(key, algo);
  }

  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(ctx.lt(), op.d, &alpha, B, a_lt.d, A, b_lt.d, &beta, C, c_lt.d, C,
                              c_lt.d, &algo, ctx.lt_workspace(), Context::kLtWorkspaceBytes,
                              stream));
}

void bias_gelu_forward(__nv_bfloat16* out, __nv_bfloat16* pre, const __nv_bfloat16* h,
                       const float* bias, int64_t M, int N, cudaStream_t stream) {
  const int64_t n = M * N;
  if (n <= 0) return;
  bias_gelu_forward_kernel<<<grid_for(n), 256, 0, stream>>>(out, pre, h, bias, n, N);
  CUDA_CHECK(cudaGetLastError());
}

void gelu_backward(__nv_bfloat16* dpre, const __nv_bfloat16* dout, const __nv_bfloat16* pre,
                   int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_backward_kernel<<<grid_for(n), 256, 0, stream>>>(dpre, dout, pre, n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace dino::kernels::cuda
