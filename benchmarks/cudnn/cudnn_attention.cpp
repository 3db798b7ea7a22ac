// Scaled-dot-product attention through cuDNN 9's backend (graph) API, on our packed qkv: the
// baseline that `dino bench attention` measures ours against, and attention kernels training can
// select (register_cudnn_attention(), then config `model.attention=cudnn`). bf16 I/O, fp32 compute,
// no mask, no dropout, scale 1/sqrt(Dh), Stats the fp32 (B, H, N, 1) natural log-sum-exp of the
// scaled scores (our lse).
//
// cuDNN states attention two ways, and this file builds both as cudnn-frontend does (read in
// NVIDIA/cudnn-frontend, include/cudnn_frontend/node/scaled_dot_product_flash_attention.h,
// softmax.h, utils/attn_score_modifiers.h):
//  - "unified": one operation, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR (the frontend's
//    UnifiedSDPANode, which needs cuDNN >= 9.13.1) or _SDPA_BWD_DESCRIPTOR (its
//    UnifiedSDPABackwardNode, >= 9.17.0); K given as K, the scale a by-value float.
//  - "composite": a pattern of matmul / pointwise / reduction / reshape operations joined by
//    virtual tensors, which cuDNN's fused-attention engines recognise (the frontend's
//    CompositeSDPANode / CompositeSDPABackwardNode, built on every cuDNN 9 release). Its
//    backward is what Hopper runs: third-party reports (unverified here) say cuDNN's only
//    engines for the unified backward are Blackwell's and that it is refused (BAD_PARAM)
//    before 9.21, while the frontend's composite backward carries Hopper-specific handling.
// Selection, each plan cached per shape: forward = unified when the runtime is >= 9.13.1 and
// it yields a plan, else composite; backward = composite, else unified (runtime >= 9.17). When
// nothing builds, dino::Error names every graph tried with cuDNN's own message.
//
// The composite graphs, with S = (B, H, N, N) scores (fp32, virtual, packed) and rows =
// (B, H, N, 1) (fp32, packed):
//  forward:  S = Q K^T; S *= scale; M = rowmax S; E = exp(S - M); Z = rowsum E;
//            Stats = M + log Z; P = E / Z (bf16); O = P V.
//  backward: softmax_sum = rowsum(dO * O) * 1 (fp32 scratch: the frontend makes it a real
//            tensor); P = exp(scale Q K^T - Stats); dV = P^T dO; dS = P (dO V^T - softmax_sum)
//            * scale; dK = dS^T Q; dQ = identity(dQ_accum), dQ_accum = dS K (fp32 scratch).
// K^T and V^T are K and V with their last two dims and strides swapped (no copy); P^T and dS^T
// are reshape operations to bf16 views with swapped strides; K itself comes back from K^T by a
// reshape, as in the frontend. Frontend details mirrored: dQ_accum zeroed by the caller only
// before cuDNN 9.6.0; up to 9.15.0 a padding mask with every length N when N % 128 != 0 (the
// frontend's backward workaround; twice before 9.10, as it re-applies the mask there).
//
// Layout: packed qkv (B, N, 3*H*Dh), q | k | v along the last dim, each (H, Dh) head-major,
// so element (b, h, n, d) of Q is at b*N*3HD + n*3HD + h*Dh + d: dims (B, H, N, Dh), strides
// (N*3HD, Dh, 3HD, 1), with K and V the same view offset by H*Dh and 2*H*Dh elements; out and
// dout (B, N, H*Dh) likewise with row stride H*Dh; lse (B, H, N) is Stats as it is. The
// gradient dqkv is written through the same strided views, so nothing is copied.
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "benchmarks/cudnn/baselines.h"
#include "core/error.h"
#include "kernels/cuda/kernels.h"
#ifdef DINO_HAS_CUDNN
#include "benchmarks/cudnn/graph_cudnn.h"
#include "kernels/cuda/check.h"
#endif

namespace dino::bench {

void register_cudnn_attention() {
  kernels::cuda::register_attention_kernels(
      {"cudnn",
       [] { return cudnn_available() ? std::string() : str_cat("cuDNN ", cudnn_version()); },
       cudnn_attention_forward, cudnn_attention_backward});
}

CudnnPlanInfo cudnn_last_plan() {
#ifdef DINO_HAS_CUDNN
  return cudnn::noted_plan();
#else
  return {};
#endif
}

bool cudnn_available() {
#ifdef DINO_HAS_CUDNN
  return cudnn::runtime_version() > 0;
#else
  return false;
#endif
}

const char* cudnn_version() {
#ifdef DINO_HAS_CUDNN
  static const std::string v = cudnn::version_string(cudnn::runtime_version());
  return v.c_str();
#else
  return "none (this build has no cuDNN: CMake found no cuDNN library)";
#endif
}

#ifdef DINO_HAS_CUDNN

namespace {

using cudnn::Desc;
using cudnn::GraphBuilder;
using cudnn::TensorSpec;

constexpr cudnnDataType_t kF32 = CUDNN_DATA_FLOAT, kBF16 = CUDNN_DATA_BFLOAT16;
// The frontend's version gates (see the header comment).
constexpr int kUnifiedForwardVersion = 91301, kUnifiedBackwardVersion = 91700;
constexpr int kBackendZeroesDqAccum = 90600, kLastPaddingWorkaround = 91500;
constexpr int kNegInfMaskVersion = 91000, kSecondMaskUntil = 91000;

const char* const kUnified = "unified";
const char* const kComposite = "composite";

enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kStats,
  kScale,
  kDO,
  kDQ,
  kDK,
  kDV,
  kSoftmaxSum,
  kDqAccum,
  kOne,
  kNegInf,
  kSeqLenQ,
  kSeqLenKV  // the composite graphs' own
};

struct Shape {
  int64_t B, N, H, Dh;
  int64_t qkv_row() const { return 3 * H * Dh; }
  int64_t o_row() const { return H * Dh; }
  float scale() const { return float(1.0 / std::sqrt(double(Dh))); }
};

// (B, H, N, Dh) view of rows of `row` elements: element (b, h, n, d) at b*N*row + n*row + h*Dh + d.
TensorSpec heads(int64_t uid, const Shape& s, int64_t row) {
  return {uid, kBF16, {s.B, s.H, s.N, s.Dh}, {s.N * row, s.Dh, row, 1}};
}
// The same view as (B, H, Dh, N): the composite graphs' K^T and V^T.
TensorSpec heads_transposed(int64_t uid, const Shape& s, int64_t row) {
  return {uid, kBF16, {s.B, s.H, s.Dh, s.N}, {s.N * row, s.Dh, 1, row}};
}
TensorSpec rows(int64_t uid, const Shape& s) {
  return {uid, kF32, {s.B, s.H, s.N, 1}, {s.H * s.N, s.N, 1, 1}};
}
TensorSpec scalar(int64_t uid, cudnnDataType_t type = kF32) {
  return {uid, type, {1, 1, 1, 1}, {1, 1, 1, 1}, true};
}

// A virtual (B, H, N, N) score tensor: packed, or with the last two dims swapped (the reshape
// that the frontend uses for P^T and dS^T).
const Desc& scores(GraphBuilder& g, const Shape& s, cudnnDataType_t type = kF32,
                   bool transposed = false) {
  const int64_t nn = s.N * s.N;
  return g.virtual_tensor(type, {s.B, s.H, s.N, s.N},
                          transposed ? std::vector<int64_t>{s.H * nn, nn, 1, s.N}
                                     : std::vector<int64_t>{s.H * nn, nn, s.N, 1});
}
const Desc& virtual_rows(GraphBuilder& g, const Shape& s) {
  return g.virtual_tensor(kF32, {s.B, s.H, s.N, 1}, {s.H * s.N, s.N, 1, 1});
}

std::string describe(const Shape& s, bool backward) {
  return str_cat("cuDNN SDPA ", backward ? "backward" : "forward", " B=", s.B, " N=", s.N,
                 " H=", s.H, " Dh=", s.Dh);
}

std::unique_ptr<cudnn::Plan> unified_forward(const Shape& s, const std::string& what) {
  GraphBuilder g;
  Desc op(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, g.tensor(heads(kQ, s, s.qkv_row())), "SDPA Q");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, g.tensor(heads(kK, s, s.qkv_row())), "SDPA K");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, g.tensor(heads(kV, s, s.qkv_row())), "SDPA V");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, g.tensor(heads(kO, s, s.o_row())), "SDPA O");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, g.tensor(rows(kStats, s)), "SDPA Stats");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, g.tensor(scalar(kScale)), "SDPA scale");
  op.finalize(what.c_str());
  g.add(std::move(op));
  auto plan = g.build(what);
  plan->scalars = {{kScale, s.scale()}};
  return plan;
}

std::unique_ptr<cudnn::Plan> unified_backward(const Shape& s, const std::string& what) {
  const int64_t qkv = s.qkv_row(), o_row = s.o_row();
  GraphBuilder g;
  Desc op(CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC, g.tensor(heads(kQ, s, qkv)), "SDPA Q");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC, g.tensor(heads(kK, s, qkv)), "SDPA K");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC, g.tensor(heads(kV, s, qkv)), "SDPA V");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC, g.tensor(heads(kO, s, o_row)), "SDPA O");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC, g.tensor(heads(kDO, s, o_row)), "SDPA dO");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC, g.tensor(rows(kStats, s)), "SDPA Stats");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC, g.tensor(scalar(kScale)), "SDPA scale");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC, g.tensor(heads(kDQ, s, qkv)), "SDPA dQ");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC, g.tensor(heads(kDK, s, qkv)), "SDPA dK");
  op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC, g.tensor(heads(kDV, s, qkv)), "SDPA dV");
  op.finalize(what.c_str());
  g.add(std::move(op));
  auto plan = g.build(what);
  plan->scalars = {{kScale, s.scale()}};
  return plan;
}

std::unique_ptr<cudnn::Plan> composite_forward(const Shape& s, const std::string& what) {
  const int64_t qkv = s.qkv_row();
  GraphBuilder g;
  const Desc& q = g.tensor(heads(kQ, s, qkv));
  const Desc& k_t = g.tensor(heads_transposed(kK, s, qkv));
  const Desc& v = g.tensor(heads(kV, s, qkv));
  const Desc& o = g.tensor(heads(kO, s, s.o_row()));
  const Desc& stats = g.tensor(rows(kStats, s));
  const Desc& scale = g.tensor(scalar(kScale));

  const Desc& qk = scores(g, s);
  g.matmul(q, k_t, qk);
  const Desc& logits = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_MUL, qk, &scale, logits);
  // The frontend's composite softmax with Stats.
  const Desc& row_max = virtual_rows(g, s);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, logits, row_max);
  const Desc& shifted = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_SUB, logits, &row_max, shifted);
  const Desc& e = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, e);
  const Desc& row_sum = virtual_rows(g, s);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, row_sum);
  const Desc& log_sum = virtual_rows(g, s);
  g.pointwise(CUDNN_POINTWISE_LOG, row_sum, nullptr, log_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, row_max, &log_sum, stats);
  // bf16: the frontend gives the second matmul's A the I/O type ("requirement by cudnn backend").
  const Desc& p = scores(g, s, kBF16);
  g.pointwise(CUDNN_POINTWISE_DIV, e, &row_sum, p);
  g.matmul(p, v, o);

  auto plan = g.build(what);
  plan->scalars = {{kScale, s.scale()}};
  return plan;
}

// The frontend's padding mask (attn_score_modifiers.h padding_mask): scores whose row or column
// index is not below its sequence length become -inf.
const Desc& padding_mask(GraphBuilder& g, const Shape& s, const Desc& x, const Desc& seq_len_q,
                         const Desc& seq_len_kv, const Desc& neg_inf) {
  const int64_t nn = s.N * s.N;
  auto like_scores = [&](cudnnDataType_t type) -> const Desc& {
    return g.virtual_tensor(type, {s.B, s.H, s.N, s.N}, {s.H * nn, nn, s.N, 1});
  };
  const Desc& row = like_scores(CUDNN_DATA_INT32);
  g.gen_index(x, 2, row);
  const Desc& col = like_scores(CUDNN_DATA_INT32);
  g.gen_index(x, 3, col);
  const Desc& row_ok = like_scores(CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_CMP_LT, row, &seq_len_q, row_ok, CUDNN_DATA_BOOLEAN);
  const Desc& col_ok = like_scores(CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_CMP_LT, col, &seq_len_kv, col_ok, CUDNN_DATA_BOOLEAN);
  const Desc& keep = like_scores(CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_LOGICAL_AND, row_ok, &col_ok, keep, CUDNN_DATA_BOOLEAN);
  const Desc& masked = like_scores(kF32);
  g.select(x, neg_inf, keep, masked);
  return masked;
}

// How often the frontend's composite backward applies a padding mask with every length N: only
// as a workaround up to 9.15.0 when N % 128 != 0, and a second time before 9.10 (its "put the
// padding value again after the stats have been loaded").
int padding_mask_passes(int version, int64_t N) {
  if (version > kLastPaddingWorkaround || N % 128 == 0) return 0;
  return version < kSecondMaskUntil ? 2 : 1;
}

std::unique_ptr<cudnn::Plan> composite_backward(const Shape& s, const std::string& what) {
  const int version = cudnn::runtime_version();
  const int mask_passes = padding_mask_passes(version, s.N);
  const int64_t qkv = s.qkv_row(), o_row = s.o_row();
  GraphBuilder g;
  const Desc& q = g.tensor(heads(kQ, s, qkv));
  const Desc& k_t = g.tensor(heads_transposed(kK, s, qkv));
  const Desc& v_t = g.tensor(heads_transposed(kV, s, qkv));
  const Desc& o = g.tensor(heads(kO, s, o_row));
  const Desc& dout = g.tensor(heads(kDO, s, o_row));
  const Desc& stats = g.tensor(rows(kStats, s));
  const Desc& scale = g.tensor(scalar(kScale));
  const Desc& one = g.tensor(scalar(kOne));
  const Desc& dq = g.tensor(heads(kDQ, s, qkv));
  const Desc& dk = g.tensor(heads(kDK, s, qkv));
  const Desc& dv = g.tensor(heads(kDV, s, qkv));

  // softmax_sum = rowsum(dO * O), times the frontend's dropout-scale slot (1 without dropout).
  // (The frontend's strides for this intermediate: row stride H*Dh within a packed batch.)
  const Desc& do_o =
      g.virtual_tensor(kF32, {s.B, s.H, s.N, s.Dh}, {s.H * s.N * s.Dh, s.N * s.Dh, o_row, 1});
  g.pointwise(CUDNN_POINTWISE_MUL, dout, &o, do_o);
  const Desc& do_o_sum = virtual_rows(g, s);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, do_o, do_o_sum);
  const Desc& softmax_sum = g.tensor(rows(kSoftmaxSum, s));
  g.pointwise(CUDNN_POINTWISE_MUL, do_o_sum, &one, softmax_sum);

  // P = exp(scale Q K^T - Stats), the forward's probabilities recomputed.
  const Desc& qk = scores(g, s);
  g.matmul(q, k_t, qk);
  const Desc& qk_scaled = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_MUL, qk, &scale, qk_scaled);
  const Desc* logits = &scores(g, s);
  g.pointwise(CUDNN_POINTWISE_SUB, qk_scaled, &stats, *logits);
  if (mask_passes > 0) {
    const TensorSpec lens_q{kSeqLenQ, CUDNN_DATA_INT32, {s.B, 1, 1, 1}, {1, 1, 1, 1}};
    const TensorSpec lens_kv{kSeqLenKV, CUDNN_DATA_INT32, {s.B, 1, 1, 1}, {1, 1, 1, 1}};
    const Desc& seq_len_q = g.tensor(lens_q);
    const Desc& seq_len_kv = g.tensor(lens_kv);
    const Desc& neg_inf = g.tensor(scalar(kNegInf));
    for (int pass = 0; pass < mask_passes; ++pass)
      logits = &padding_mask(g, s, *logits, seq_len_q, seq_len_kv, neg_inf);
  }
  const Desc& p = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_EXP, *logits, nullptr, p);

  // dV = P^T dO.
  const Desc& p_t = scores(g, s, kBF16, true);
  g.reshape(p, p_t);
  g.matmul(p_t, dout, dv);

  // dS = P (dO V^T - softmax_sum) scale.
  const Desc& dp = scores(g, s);
  g.matmul(dout, v_t, dp);
  const Desc& dp_centered = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_SUB, dp, &softmax_sum, dp_centered);
  const Desc& ds_unscaled = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_MUL, dp_centered, &p, ds_unscaled);
  const Desc& ds = scores(g, s);
  g.pointwise(CUDNN_POINTWISE_MUL, ds_unscaled, &scale, ds);

  // dK = dS^T Q.
  const Desc& ds_t = scores(g, s, kBF16, true);
  g.reshape(ds, ds_t);
  g.matmul(ds_t, q, dk);

  // dQ = dS K, accumulated in fp32 scratch, then converted to bf16.
  const Desc& k = g.virtual_tensor(kF32, {s.B, s.H, s.N, s.Dh}, {s.N * qkv, s.Dh, qkv, 1});
  g.reshape(k_t, k);
  const Desc& dq_accum =
      g.tensor({kDqAccum, kF32, {s.B, s.H, s.N, s.Dh}, {s.H * s.N * s.Dh, s.N * s.Dh, s.Dh, 1}});
  g.matmul(ds, k, dq_accum);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_accum, nullptr, dq);

  auto plan = g.build(what);
  const int64_t rows_bytes = s.B * s.H * s.N * int64_t(sizeof(float));
  plan->scratch = {{kSoftmaxSum, rows_bytes, false},
                   {kDqAccum, rows_bytes * s.Dh, version < kBackendZeroesDqAccum}};
  plan->scalars = {{kScale, s.scale()}, {kOne, 1.0f}};
  if (mask_passes > 0) {
    // Older libraries took the lowest float for "masked" (the frontend's get_negative_inf_value).
    plan->scalars.emplace_back(kNegInf, version < kNegInfMaskVersion
                                            ? std::numeric_limits<float>::lowest()
                                            : -std::numeric_limits<float>::infinity());
    const std::vector<int32_t> lengths(size_t(s.B), int32_t(s.N));
    plan->add_device_const(kSeqLenQ, lengths.data(), lengths.size() * sizeof(int32_t));
    plan->add_device_const(kSeqLenKV, lengths.data(), lengths.size() * sizeof(int32_t));
  }
  return plan;
}

struct Candidate {
  const char* path;
  std::unique_ptr<cudnn::Plan> (*build)(const Shape&, const std::string&);
  int min_version;
};

// The first candidate that yields a plan, in the order the header comment gives.
std::unique_ptr<cudnn::Plan> build_attention(const Shape& s, bool backward) {
  static const std::array<Candidate, 2> forward_order = {
      {{kUnified, unified_forward, kUnifiedForwardVersion}, {kComposite, composite_forward, 0}}};
  static const std::array<Candidate, 2> backward_order = {
      {{kComposite, composite_backward, 0}, {kUnified, unified_backward, kUnifiedBackwardVersion}}};
  const std::string what = describe(s, backward);
  const int version = cudnn::runtime_version();
  std::string tried;
  for (const Candidate& c : backward ? backward_order : forward_order) {
    if (version < c.min_version) {
      tried +=
          str_cat("; ", c.path, " graph: needs cuDNN >= ", cudnn::version_string(c.min_version));
      continue;
    }
    try {
      auto plan = c.build(s, str_cat(what, " (", c.path, " graph)"));
      plan->path = c.path;
      return plan;
    } catch (const Error& e) {
      tried += str_cat("; ", c.path, " graph: ", e.what());
    }
  }
  throw Error(str_cat("[attention] ", what, ": no graph of cuDNN ", cudnn::version_string(version),
                      " builds", tried));
}

using Key = std::tuple<int, bool, int, int, int, int>;  // device, backward, B, N, H, Dh

std::mutex g_mutex;
std::map<Key, std::unique_ptr<cudnn::Plan>> g_plans;

void check_shape(const char* what, int B, int N, int H, int Dh) {
  DINO_CHECK(B > 0 && N > 0 && H > 0, "[attention] ", what, ": empty shape B=", B, " N=", N,
             " H=", H);
  DINO_CHECK(Dh == 32 || Dh == 64 || Dh == 128, "[attention] ", what, ": head dim ", Dh,
             " (32, 64 or 128)");
}

// The cached plan for this shape, built on first use.
const cudnn::Plan& plan_for(bool backward, int B, int N, int H, int Dh) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const Key key{device, backward, B, N, H, Dh};
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_plans.find(key);
  if (it != g_plans.end()) {
    cudnn::note_plan(*it->second, true);
    return *it->second;
  }
  std::unique_ptr<cudnn::Plan> plan = build_attention(Shape{B, N, H, Dh}, backward);
  cudnn::note_plan(*plan, false);
  return *(g_plans[key] = std::move(plan));
}

void* offset(const __nv_bfloat16* p, int64_t elements) {
  return const_cast<__nv_bfloat16*>(p + elements);
}

}  // namespace

void cudnn_attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                             int H, int Dh, cudaStream_t stream) {
  check_shape("cuDNN forward", B, N, H, Dh);
  const cudnn::Plan& plan = plan_for(false, B, N, H, Dh);
  const int64_t hd = int64_t(H) * Dh;
  cudnn::execute(plan, {kQ, kK, kV, kO, kStats},
                 {offset(qkv, 0), offset(qkv, hd), offset(qkv, 2 * hd), out, lse}, stream);
}

void cudnn_attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                              const __nv_bfloat16* qkv, const __nv_bfloat16* out, const float* lse,
                              int B, int N, int H, int Dh, cudaStream_t stream) {
  check_shape("cuDNN backward", B, N, H, Dh);
  const cudnn::Plan& plan = plan_for(true, B, N, H, Dh);
  const int64_t hd = int64_t(H) * Dh;
  cudnn::execute(plan, {kQ, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV},
                 {offset(qkv, 0), offset(qkv, hd), offset(qkv, 2 * hd), offset(out, 0),
                  offset(dout, 0), const_cast<float*>(lse), dqkv, dqkv + hd, dqkv + 2 * hd},
                 stream);
}

#else  // no cuDNN in this build

void cudnn_attention_forward(__nv_bfloat16*, float*, const __nv_bfloat16*, int, int, int, int,
                             cudaStream_t) {
  throw Error(str_cat("[attention] cuDNN attention: ", cudnn_version()));
}

void cudnn_attention_backward(__nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
                              const __nv_bfloat16*, const float*, int, int, int, int,
                              cudaStream_t) {
  throw Error(str_cat("[attention] cuDNN attention: ", cudnn_version()));
}

#endif  // DINO_HAS_CUDNN

}  // namespace dino::bench
