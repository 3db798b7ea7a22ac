// Emulated cuBLASLt (tests/simt/include/cublasLt.h) on the host. Descriptors are plain structs
// holding their attributes; the heuristic offers one algorithm for every problem the emulation
// can compute; cublasLtMatmul computes on the CPU before returning.
//
// Semantics are cuBLAS's, column-major: a layout (type, rows, cols, ld) holds element (r, c)
// of batch entry e at ptr[e * stride + r + c * ld]; D = alpha op(A) op(B) + beta C, then the
// epilogue, with op(A) m x k, op(B) k x n, C and D m x n. Elements are read as floats exactly;
// products of floats are exact in double and are summed in double, and each output is rounded
// once to its type. (The GPU sums in fp32; the difference is fp32 accumulation error, far
// below what bf16 outputs and the tests' tolerances resolve.)
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "core/dtype.h"

struct cublasLtContext {};
struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;  // elements between batch entries
};
struct cublasLtMatmulDescOpaque_t {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  int32_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  void* bias = nullptr;
  int32_t bias_type = -1;  // -1: D's type, cuBLASLt's default
};
struct cublasLtMatmulPreferenceOpaque_t {
  uint64_t max_workspace = 0;  // kept, not used: the emulated algorithm needs no workspace
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D; cuBLASLt assumes 256 unless told
};

namespace {

using Layout = const cublasLtMatrixLayoutOpaque_t*;

// Marks an algorithm the heuristic made ("dino-emu"); data[1..5] hold the alignments it was
// chosen for (A, B, C, D, bias).
constexpr uint64_t kAlgoTag = 0x64696e6f2d656d75;

template <class T>
cublasStatus_t set_field(T& field, const void* buf, size_t size) {
  if (!buf || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&field, buf, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

bool emulated_type(int32_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF; }
int64_t element_size(int32_t t) { return t == CUDA_R_32F ? 4 : 2; }
cudaDataType_t bias_type(const cublasLtMatmulDescOpaque_t* op, Layout d) {
  return op->bias_type == -1 ? d->type : cudaDataType_t(op->bias_type);
}

// The largest power of two, at most 256, dividing the address.
uint32_t alignment(const void* p) {
  const uint64_t bits = 256 | uint64_t(reinterpret_cast<uintptr_t>(p));
  return uint32_t(bits & (~bits + 1));
}

int64_t offset(Layout l, int64_t e, int64_t r, int64_t c) { return e * l->stride + r + c * l->ld; }

float load(cudaDataType_t type, const void* base, int64_t i) {
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[i];
  dino::bf16 h;
  std::memcpy(&h.bits, static_cast<const uint16_t*>(base) + i, sizeof(h.bits));
  return float(h);
}

// v rounded once to the type. For bf16, v is first narrowed to float rounding to odd
// (truncate, then set the last bit if anything was lost), which keeps the float -> bf16
// rounding to nearest even from seeing a tie that v is not on.
void store(cudaDataType_t type, void* base, int64_t i, double v) {
  float f = float(v);
  if (type == CUDA_R_32F) {
    static_cast<float*>(base)[i] = f;
    return;
  }
  if (double(f) != v && !std::isnan(v)) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    if (std::fabs(double(f)) > std::fabs(v)) --u;  // one step toward zero: the truncation
    u |= 1;
    std::memcpy(&f, &u, sizeof(f));
  }
  const uint16_t bits = dino::bf16(f).bits;
  std::memcpy(static_cast<uint16_t*>(base) + i, &bits, sizeof(bits));
}

// out (rows x cols, row-major) <- op(X) of batch entry e; op(X) is rows x cols.
void gather(std::vector<float>& out, const void* x, Layout l, int64_t e, bool trans, int64_t rows,
            int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[size_t(r * cols + c)] = load(l->type, x, trans ? offset(l, e, c, r) : offset(l, e, r, c));
}

struct Problem {
  int64_t m, n, k;
  bool trans_a, trans_b;
};

// The checks the descriptors of a matmul must pass: INVALID_VALUE for what cuBLASLt rejects,
// NOT_SUPPORTED for what the emulation does not compute. Fills the problem on success.
cublasStatus_t check(const cublasLtMatmulDescOpaque_t* op, Layout a, Layout b, Layout c, Layout d,
                     Problem* p) {
  if (!op || !a || !b || !c || !d) return CUBLAS_STATUS_INVALID_VALUE;
  for (const Layout l : {a, b, c, d})
    if (l->ld < 1 || uint64_t(l->ld) < l->rows || l->batch < 1 || l->batch != d->batch)
      return CUBLAS_STATUS_INVALID_VALUE;
  for (const int32_t t : {op->trans_a, op->trans_b})
    if (t != CUBLAS_OP_N && t != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
  p->trans_a = op->trans_a == CUBLAS_OP_T;
  p->trans_b = op->trans_b == CUBLAS_OP_T;
  const uint64_t m = p->trans_a ? a->cols : a->rows, k = p->trans_a ? a->rows : a->cols;
  const uint64_t kb = p->trans_b ? b->cols : b->rows, n = p->trans_b ? b->rows : b->cols;
  if (kb != k || c->rows != m || c->cols != n || d->rows != m || d->cols != n)
    return CUBLAS_STATUS_INVALID_VALUE;
  p->m = int64_t(m), p->n = int64_t(n), p->k = int64_t(k);

  // bf16 or fp32 operands and output, fp32 compute and scale; fp32 operands only with an
  // fp32 output (fp32 -> bf16 is not among cuBLASLt's type combinations).
  if (op->compute != CUBLAS_COMPUTE_32F || op->scale != CUDA_R_32F || !emulated_type(a->type) ||
      b->type != a->type || !emulated_type(d->type) || c->type != d->type ||
      (a->type == CUDA_R_32F && d->type == CUDA_R_16BF))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  switch (op->epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT: return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_EPILOGUE_BIAS:
      return emulated_type(bias_type(op, d)) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasLtContext the_context;
bool bias_epilogue_available = true;

}  // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle) {
  if (!lightHandle) return CUBLAS_STATUS_INVALID_VALUE;
  *lightHandle = &the_context;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasLtGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
  }
  return "unknown status";
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (!matLayout) return CUBLAS_STATUS_INVALID_VALUE;
  *matLayout = new (std::nothrow) cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
  return *matLayout ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(const cublasLtMatrixLayout_t matLayout) {
  delete matLayout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t sizeInBytes) {
  if (!matLayout) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return set_field(matLayout->batch, buf, sizeInBytes);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      return set_field(matLayout->stride, buf, sizeInBytes);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc,
                                        cublasComputeType_t computeType, cudaDataType_t scaleType) {
  if (!matmulDesc) return CUBLAS_STATUS_INVALID_VALUE;
  *matmulDesc = new (std::nothrow) cublasLtMatmulDescOpaque_t{computeType, scaleType};
  return *matmulDesc ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtMatmulDescDestroy(const cublasLtMatmulDesc_t matmulDesc) {
  delete matmulDesc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t sizeInBytes) {
  if (!matmulDesc) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return set_field(matmulDesc->trans_a, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_TRANSB: return set_field(matmulDesc->trans_b, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return set_field(matmulDesc->epilogue, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set_field(matmulDesc->bias, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
      return set_field(matmulDesc->bias_type, buf, sizeInBytes);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  *pref = new (std::nothrow) cublasLtMatmulPreferenceOpaque_t;
  return *pref ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(const cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t sizeInBytes) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      return set_field(pref->max_workspace, buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
      return set_field(pref->align[0], buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
      return set_field(pref->align[1], buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
      return set_field(pref->align[2], buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
      return set_field(pref->align[3], buf, sizeInBytes);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc, cublasLtMatrixLayout_t Adesc,
    cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
    cublasLtMatmulPreference_t preference, int requestedAlgoCount,
    cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount) {
  if (!lightHandle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!preference || requestedAlgoCount < 1 || !heuristicResultsArray || !returnAlgoCount)
    return CUBLAS_STATUS_INVALID_VALUE;
  *returnAlgoCount = 0;
  Problem p;
  const cublasStatus_t st = check(operationDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (operationDesc->epilogue == CUBLASLT_EPILOGUE_BIAS && !bias_epilogue_available)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  // No kernel reads a matrix in pieces smaller than its elements: a promised alignment below
  // the element size leaves no algorithm.
  const Layout layouts[4] = {Adesc, Bdesc, Cdesc, Ddesc};
  for (int i = 0; i < 4; ++i)
    if (preference->align[i] < element_size(layouts[i]->type)) return CUBLAS_STATUS_NOT_SUPPORTED;

  cublasLtMatmulHeuristicResult_t& r = heuristicResultsArray[0];
  r = {};
  r.algo.data[0] = kAlgoTag;
  for (int i = 0; i < 4; ++i) r.algo.data[1 + i] = preference->align[i];
  // The bias pointer is in the descriptor, so the heuristic may rely on its alignment too.
  r.algo.data[5] = alignment(operationDesc->bias);
  r.state = CUBLAS_STATUS_SUCCESS;
  r.wavesCount = 1.f;
  *returnAlgoCount = 1;
  return CUBLAS_STATUS_SUCCESS;
}

namespace {

// D = alpha op(A) op(B) (+ beta C) (+ bias), in double, for the validated problem p.
void product(const Problem& p, double al, double be, const cublasLtMatmulDescOpaque_t& op,
             const void* A, Layout Adesc, const void* B, Layout Bdesc, const void* C, Layout Cdesc,
             void* D, Layout Ddesc) {
  const uint32_t epilogue = op.epilogue;
  void* const bias = op.bias;
  const int64_t m = p.m, n = p.n, k = p.k;
  const cudaDataType_t bias_t = bias_type(&op, Ddesc);
  std::vector<float> a(size_t(m * k)), b(size_t(k * n));
  std::vector<double> acc(size_t(m * n));
  for (int64_t e = 0; e < Ddesc->batch; ++e) {
    // op(A) (m x k) and op(B) (k x n) as contiguous row-major floats, then acc = op(A) op(B)
    // in i-k-j order: the innermost loop runs along rows of both b and acc.
    gather(a, A, Adesc, e, p.trans_a, m, k);
    gather(b, B, Bdesc, e, p.trans_b, k, n);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t i = 0; i < m; ++i) {
      double* const acc_row = &acc[size_t(i * n)];
      for (int64_t q = 0; q < k; ++q) {
        const double aiq = a[size_t(i * k + q)];
        const float* const b_row = &b[size_t(q * n)];
        for (int64_t j = 0; j < n; ++j) acc_row[j] += aiq * double(b_row[j]);
      }
    }
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) {
        double v = al * acc[size_t(i * n + j)];
        if (be != 0) v += be * load(Cdesc->type, C, offset(Cdesc, e, i, j));
        if (epilogue == CUBLASLT_EPILOGUE_BIAS) v += load(bias_t, bias, i);
        store(Ddesc->type, D, offset(Ddesc, e, i, j), v);
      }
  }
}

}  // namespace

cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
                              const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
                              const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo,
                              void* /*workspace*/, size_t /*workspaceSizeInBytes*/,
                              cudaStream_t stream) {
  if (!lightHandle) return CUBLAS_STATUS_NOT_INITIALIZED;
  Problem p;
  const cublasStatus_t st = check(computeDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const uint32_t epilogue = computeDesc->epilogue;
  void* const bias = computeDesc->bias;
  // beta = 0: C is not read (it may be null, or hold NaN).
  if (!A || !B || !D || (be != 0 && !C) || (epilogue != CUBLASLT_EPILOGUE_DEFAULT && !bias))
    return CUBLAS_STATUS_INVALID_VALUE;
  // In place (C == D) only with one layout for both.
  if (C == D && (Cdesc->ld != Ddesc->ld || (Ddesc->batch > 1 && Cdesc->stride != Ddesc->stride)))
    return CUBLAS_STATUS_INVALID_VALUE;
  // An algorithm is chosen for the buffer alignments the preference allowed (leading
  // dimensions and strides it sees in the layouts) and may rely on all of them; the emulation
  // takes the strictest it could have picked and refuses less aligned buffers, as a GPU may:
  // e.g. an algorithm cached for one problem and reused for another.
  if (algo) {
    if (algo->data[0] != kAlgoTag) return CUBLAS_STATUS_INVALID_VALUE;
    const uint32_t have[5] = {alignment(A), alignment(B), alignment(C), alignment(D),
                              alignment(bias)};
    for (int i = 0; i < 5; ++i)
      if (have[i] < algo->data[1 + i]) return CUBLAS_STATUS_NOT_SUPPORTED;
  }

  // The product runs when the stream runs it: now, or at each launch of a graph capturing the
  // stream, from copies of the descriptors (the caller may destroy them once this returns).
  const cublasLtMatmulDescOpaque_t op = *computeDesc;
  const cublasLtMatrixLayoutOpaque_t ad = *Adesc, bd = *Bdesc, cd = *Cdesc, dd = *Ddesc;
  auto run = [=] {
    const dino::simt::TracedWork work(dino::simt::Activity::kernel, "cublasLt_gemm_emulated");
    if (!dino::simt::host_only()) product(p, al, be, op, A, &ad, B, &bd, C, &cd, D, &dd);
  };
  if (auto* graph = dino::simt::capture_of(stream))
    graph->push_back(run);
  else
    run();
  return CUBLAS_STATUS_SUCCESS;
}

void dino::simt::set_cublaslt_bias_epilogue(bool available) { bias_epilogue_available = available; }
