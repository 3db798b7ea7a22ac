// Scaled-dot-product attention through cuDNN 9's backend SDPA operations, on our packed qkv:
// the baseline that `dino bench attention` measures ours against, and a backend training can
// select (`set_attention_backend("cudnn")`, config `attention=cudnn`).
//
// What cuDNN offers here: since 9.13 the backend API has one operation for the fused
// (flash) attention forward, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, and since 9.17 one
// for its backward, CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR; Q, K, V, O are 4-D
// (b, h, s, d) tensors of any strides with d innermost, K given as K (not K^T), the scale a
// by-value float, Stats the fp32 (b, h, s, 1) natural log-sum-exp of the scaled scores.
// Before 9.13 SDPA existed only as a pattern of matmul/pointwise/reduction operations that
// cudnn-frontend assembles and the runtime-fusion engines recognise; this file does not
// build that pattern and reports older libraries as unsupported. One third-party report
// (not verified here) has the backward operation refusing to finalize (BAD_PARAM) before
// cuDNN 9.21 while the forward with Stats works: on such a library the backward throws with
// cuDNN's message, and compare_torch.py's torch-cudnn rows (cudnn-frontend's pattern graph)
// still give cuDNN's backward time on the same card.
//
// Layout: packed qkv (B, N, 3*H*Dh), q | k | v along the last dim, each (H, Dh) head-major,
// so element (b, h, n, d) of Q is at b*N*3HD + n*3HD + h*Dh + d: dims (B, H, N, Dh), strides
// (N*3HD, Dh, 3HD, 1), with K and V the same view offset by H*Dh and 2*H*Dh elements; out and
// dout (B, N, H*Dh) likewise with row stride H*Dh; lse (B, H, N) is Stats as it is. The
// gradient dqkv is written through the same strided views, so nothing is copied.
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "core/error.h"
#include "kernels/cuda/kernels.h"
#ifdef DINO_HAS_CUDNN
#include "kernels/cuda/graph_cudnn.h"
#endif

namespace dino::kernels::cuda {

namespace {

AttentionBackend g_attention_backend = AttentionBackend::ours;

}  // namespace

void set_attention_backend(const char* name) {
  const std::string n = name ? name : "";
  if (n == "ours") {
    g_attention_backend = AttentionBackend::ours;
  } else if (n == "cudnn") {
    DINO_CHECK(cudnn_available(), "[attention] attention=cudnn needs cuDNN: ", cudnn_version());
    g_attention_backend = AttentionBackend::cudnn;
  } else {
    throw Error(str_cat("[attention] unknown attention backend '", n, "' (ours or cudnn)"));
  }
}

AttentionBackend attention_backend() { return g_attention_backend; }

const char* attention_backend_name() {
  return g_attention_backend == AttentionBackend::cudnn ? "cudnn" : "ours";
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

constexpr int kSdpaForwardVersion = 91300, kSdpaBackwardVersion = 91700;

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kScale, kDO, kDQ, kDK, kDV };

using Key = std::tuple<int, bool, int, int, int, int>;  // device, backward, B, N, H, Dh

std::mutex g_mutex;
std::map<Key, std::unique_ptr<cudnn::Plan>> g_plans;

cudnn::TensorSpec heads_view(int64_t uid, int B, int N, int H, int Dh, int64_t row_stride) {
  return {uid, CUDNN_DATA_BFLOAT16, {B, H, N, Dh}, {int64_t(N) * row_stride, Dh, row_stride, 1}};
}

void check_shape(const char* what, int B, int N, int H, int Dh, int needed) {
  DINO_CHECK(B > 0 && N > 0 && H > 0, "[attention] ", what, ": empty shape B=", B, " N=", N, " H=", H);
  DINO_CHECK(Dh == 32 || Dh == 64 || Dh == 128, "[attention] ", what, ": head dim ", Dh,
             " (32, 64 or 128)");
  const int v = cudnn::runtime_version();
  DINO_CHECK(v >= needed, "[attention] ", what, " needs cuDNN >= ", cudnn::version_string(needed),
             " (the backend SDPA operation); this process loaded cuDNN ", cudnn::version_string(v));
}

// The cached plan for this shape, built on first use.
const cudnn::Plan& plan_for(bool backward, int B, int N, int H, int Dh) {
  int device = 0;
  cudaGetDevice(&device);
  const Key key{device, backward, B, N, H, Dh};
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_plans.find(key);
  if (it != g_plans.end()) {
    cudnn::note_plan(*it->second, true);
    return *it->second;
  }
  const int64_t qkv_row = int64_t(3) * H * Dh, o_row = int64_t(H) * Dh;
  cudnn::Desc q = cudnn::make_tensor(heads_view(kQ, B, N, H, Dh, qkv_row));
  cudnn::Desc k = cudnn::make_tensor(heads_view(kK, B, N, H, Dh, qkv_row));
  cudnn::Desc v = cudnn::make_tensor(heads_view(kV, B, N, H, Dh, qkv_row));
  cudnn::Desc o = cudnn::make_tensor(heads_view(kO, B, N, H, Dh, o_row));
  cudnn::Desc stats = cudnn::make_tensor(
      {kStats, CUDNN_DATA_FLOAT, {B, H, N, 1}, {int64_t(H) * N, N, 1, 1}});
  cudnn::Desc scale = cudnn::make_tensor({kScale, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, true});
  std::string what = str_cat("SDPA ", backward ? "backward" : "forward", " B=", B, " N=", N,
                             " H=", H, " Dh=", Dh);
  std::unique_ptr<cudnn::Plan> plan;
  if (!backward) {
    cudnn::Desc op(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, q, "SDPA Q");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, k, "SDPA K");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, v, "SDPA V");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, o, "SDPA O");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, stats, "SDPA Stats");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, scale, "SDPA scale");
    op.finalize(what.c_str());
    plan = cudnn::build_plan({&op}, what);
  } else {
    cudnn::Desc dout = cudnn::make_tensor(heads_view(kDO, B, N, H, Dh, o_row));
    cudnn::Desc dq = cudnn::make_tensor(heads_view(kDQ, B, N, H, Dh, qkv_row));
    cudnn::Desc dk = cudnn::make_tensor(heads_view(kDK, B, N, H, Dh, qkv_row));
    cudnn::Desc dv = cudnn::make_tensor(heads_view(kDV, B, N, H, Dh, qkv_row));
    cudnn::Desc op(CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC, q, "SDPA Q");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC, k, "SDPA K");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC, v, "SDPA V");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC, o, "SDPA O");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC, dout, "SDPA dO");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC, stats, "SDPA Stats");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC, scale, "SDPA scale");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC, dq, "SDPA dQ");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC, dk, "SDPA dK");
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC, dv, "SDPA dV");
    op.finalize(what.c_str());
    plan = cudnn::build_plan({&op}, what);
  }
  cudnn::note_plan(*plan, false);
  return *(g_plans[key] = std::move(plan));
}

void* offset(const __nv_bfloat16* p, int64_t elements) {
  return const_cast<__nv_bfloat16*>(p + elements);
}

}  // namespace

void cudnn_attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B,
                             int N, int H, int Dh, cudaStream_t stream) {
  check_shape("cuDNN forward", B, N, H, Dh, kSdpaForwardVersion);
  const cudnn::Plan& plan = plan_for(false, B, N, H, Dh);
  float scale = float(1.0 / std::sqrt(double(Dh)));
  const int64_t hd = int64_t(H) * Dh;
  cudnn::execute(plan, {kQ, kK, kV, kO, kStats, kScale},
                 {offset(qkv, 0), offset(qkv, hd), offset(qkv, 2 * hd), out, lse, &scale}, stream);
}

void cudnn_attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                              const __nv_bfloat16* qkv, const __nv_bfloat16* out,
                              const float* lse, int B, int N, int H, int Dh, cudaStream_t stream) {
  check_shape("cuDNN backward", B, N, H, Dh, kSdpaBackwardVersion);
  const cudnn::Plan& plan = plan_for(true, B, N, H, Dh);
  float scale = float(1.0 / std::sqrt(double(Dh)));
  const int64_t hd = int64_t(H) * Dh;
  cudnn::execute(plan, {kQ, kK, kV, kO, kDO, kStats, kScale, kDQ, kDK, kDV},
                 {offset(qkv, 0), offset(qkv, hd), offset(qkv, 2 * hd), offset(out, 0),
                  offset(dout, 0), const_cast<float*>(lse), &scale, dqkv, dqkv + hd,
                  dqkv + 2 * hd},
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

}  // namespace dino::kernels::cuda
