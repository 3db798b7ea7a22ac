// LayerNorm through cuDNN 9's backend norm operations (CUDNN_BACKEND_OPERATION_NORM_FORWARD /
// _BACKWARD_DESCRIPTOR, mode CUDNN_LAYER_NORM): the baseline `dino bench layernorm` measures
// ours against. Same signatures as layernorm.cu's launchers.
//
// Tensors as cudnn-frontend's layer-norm graphs give them: x, y, dy, dx (N, C, 1, 1) with
// strides (C, 1, C, C); weight (cuDNN's "scale"), bias, dweight, dbias (1, C, 1, 1); mean and
// inverse standard deviation (cuDNN's "inv_variance", 1/sqrt(var + eps), our rstd) (N, 1, 1, 1)
// fp32; epsilon a by-value fp32 scalar (forward only: since 8.9.6 the backward takes none).
// The statistics are cuDNN's own from the forward; the backward reads ours equally.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "benchmarks/cudnn/baselines.h"
#include "core/error.h"
#ifdef DINO_HAS_CUDNN
#include "benchmarks/cudnn/graph_cudnn.h"
#endif

namespace dino::bench {

#ifdef DINO_HAS_CUDNN

namespace {

enum Uid : int64_t { kX = 1, kScale, kBias, kEps, kY, kMean, kInvVar, kDY, kDScale, kDBias, kDX };

// device, backward, N, C, x type, y (or dy) type, dx type
using Key = std::tuple<int, bool, int, int, int, int, int>;

std::mutex g_mutex;
std::map<Key, std::unique_ptr<cudnn::Plan>> g_plans;

cudnnDataType_t dtype(CudnnIo t) {
  return t == CudnnIo::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}
const char* io_name(CudnnIo t) { return t == CudnnIo::bf16 ? "bf16" : "f32"; }

cudnn::TensorSpec rows(int64_t uid, CudnnIo t, int N, int C) {
  return {uid, dtype(t), {N, C, 1, 1}, {C, 1, C, C}};
}
cudnn::TensorSpec per_channel(int64_t uid, int C) {
  return {uid, CUDNN_DATA_FLOAT, {1, C, 1, 1}, {C, 1, C, C}};
}
cudnn::TensorSpec per_row(int64_t uid, int N) {
  return {uid, CUDNN_DATA_FLOAT, {N, 1, 1, 1}, {1, 1, 1, 1}};
}

const cudnn::Plan& plan_for(bool backward, int N, int C, CudnnIo x_t, CudnnIo y_t, CudnnIo dx_t) {
  DINO_CHECK(N > 0 && C > 0, "[layer_norm] cuDNN: empty shape N=", N, " C=", C);
  int device = 0;
  cudaGetDevice(&device);
  const Key key{device, backward, N, C, int(x_t), int(y_t), int(dx_t)};
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_plans.find(key);
  if (it != g_plans.end()) {
    cudnn::note_plan(*it->second, true);
    return *it->second;
  }
  const std::string what =
      backward
          ? str_cat("layer norm backward N=", N, " C=", C, " x ", io_name(x_t), " dy ",
                    io_name(y_t), " dx ", io_name(dx_t))
          : str_cat("layer norm forward N=", N, " C=", C, " x ", io_name(x_t), " y ", io_name(y_t));
  cudnn::Desc x = cudnn::make_tensor(rows(kX, x_t, N, C));
  cudnn::Desc scale = cudnn::make_tensor(per_channel(kScale, C));
  cudnn::Desc mean = cudnn::make_tensor(per_row(kMean, N));
  cudnn::Desc inv_var = cudnn::make_tensor(per_row(kInvVar, N));
  std::unique_ptr<cudnn::Plan> plan;
  if (!backward) {
    cudnn::Desc bias = cudnn::make_tensor(per_channel(kBias, C));
    cudnn::Desc eps =
        cudnn::make_tensor({kEps, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, true});
    cudnn::Desc y = cudnn::make_tensor(rows(kY, y_t, N, C));
    cudnn::Desc op(CUDNN_BACKEND_OPERATION_NORM_FORWARD_DESCRIPTOR);
    const cudnnBackendNormMode_t mode = CUDNN_LAYER_NORM;
    const cudnnBackendNormFwdPhase_t phase = CUDNN_NORM_FWD_TRAINING;
    op.set(CUDNN_ATTR_OPERATION_NORM_FWD_MODE, CUDNN_TYPE_NORM_MODE, 1, &mode, "norm mode");
    op.set(CUDNN_ATTR_OPERATION_NORM_FWD_PHASE, CUDNN_TYPE_NORM_FWD_PHASE, 1, &phase, "norm phase");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_FWD_XDESC, x, "norm x");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_FWD_MEAN_DESC, mean, "norm mean");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_FWD_INV_VARIANCE_DESC, inv_var, "norm inv_variance");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_FWD_SCALE_DESC, scale, "norm scale");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_FWD_BIAS_DESC, bias, "norm bias");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_FWD_EPSILON_DESC, eps, "norm epsilon");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_FWD_YDESC, y, "norm y");
    op.finalize(what.c_str());
    plan = cudnn::build_plan({&op}, what);
  } else {
    cudnn::Desc dy = cudnn::make_tensor(rows(kDY, y_t, N, C));
    cudnn::Desc dx = cudnn::make_tensor(rows(kDX, dx_t, N, C));
    cudnn::Desc dscale = cudnn::make_tensor(per_channel(kDScale, C));
    cudnn::Desc dbias = cudnn::make_tensor(per_channel(kDBias, C));
    cudnn::Desc op(CUDNN_BACKEND_OPERATION_NORM_BACKWARD_DESCRIPTOR);
    const cudnnBackendNormMode_t mode = CUDNN_LAYER_NORM;
    op.set(CUDNN_ATTR_OPERATION_NORM_BWD_MODE, CUDNN_TYPE_NORM_MODE, 1, &mode, "norm mode");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_XDESC, x, "norm x");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_MEAN_DESC, mean, "norm mean");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_INV_VARIANCE_DESC, inv_var, "norm inv_variance");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_DYDESC, dy, "norm dy");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_SCALE_DESC, scale, "norm scale");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_DSCALE_DESC, dscale, "norm dscale");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_DBIAS_DESC, dbias, "norm dbias");
    op.set_desc(CUDNN_ATTR_OPERATION_NORM_BWD_DXDESC, dx, "norm dx");
    op.finalize(what.c_str());
    plan = cudnn::build_plan({&op}, what);
  }
  cudnn::note_plan(*plan, false);
  return *(g_plans[key] = std::move(plan));
}

void* mut(const void* p) { return const_cast<void*>(p); }

}  // namespace

void cudnn_layernorm_forward_io(void* out, CudnnIo out_type, float* mean, float* rstd,
                                const void* x, CudnnIo x_type, const float* weight,
                                const float* bias, int N, int C, float eps, cudaStream_t stream) {
  const cudnn::Plan& plan = plan_for(false, N, C, x_type, out_type, out_type);
  cudnn::execute(plan, {kX, kScale, kBias, kEps, kY, kMean, kInvVar},
                 {mut(x), mut(weight), mut(bias), &eps, out, mean, rstd}, stream);
}

void cudnn_layernorm_backward_io(void* dx, CudnnIo dx_type, float* dweight, float* dbias,
                                 const void* dout, CudnnIo dout_type, const void* x, CudnnIo x_type,
                                 const float* mean, const float* rstd, const float* weight, int N,
                                 int C, cudaStream_t stream) {
  const cudnn::Plan& plan = plan_for(true, N, C, x_type, dout_type, dx_type);
  cudnn::execute(plan, {kX, kMean, kInvVar, kDY, kScale, kDScale, kDBias, kDX},
                 {mut(x), mut(mean), mut(rstd), mut(dout), mut(weight), dweight, dbias, dx},
                 stream);
}

#else  // no cuDNN in this build

void cudnn_layernorm_forward_io(void*, CudnnIo, float*, float*, const void*, CudnnIo, const float*,
                                const float*, int, int, float, cudaStream_t) {
  throw Error(str_cat("[layer_norm] cuDNN layer norm: ", cudnn_version()));
}

void cudnn_layernorm_backward_io(void*, CudnnIo, float*, float*, const void*, CudnnIo, const void*,
                                 CudnnIo, const float*, const float*, const float*, int, int,
                                 cudaStream_t) {
  throw Error(str_cat("[layer_norm] cuDNN layer norm: ", cudnn_version()));
}

#endif  // DINO_HAS_CUDNN

void cudnn_layernorm_forward(__nv_bfloat16* out, float* mean, float* rstd, const float* x,
                             const float* weight, const float* bias, int N, int C, float eps,
                             cudaStream_t stream) {
  cudnn_layernorm_forward_io(out, CudnnIo::bf16, mean, rstd, x, CudnnIo::f32, weight, bias, N, C,
                             eps, stream);
}

void cudnn_layernorm_backward(float* dx, float* dweight, float* dbias, const __nv_bfloat16* dout,
                              const float* x, const float* mean, const float* rstd,
                              const float* weight, int N, int C, cudaStream_t stream) {
  cudnn_layernorm_backward_io(dx, CudnnIo::f32, dweight, dbias, dout, CudnnIo::bf16, x,
                              CudnnIo::f32, mean, rstd, weight, N, C, stream);
}

}  // namespace dino::bench
