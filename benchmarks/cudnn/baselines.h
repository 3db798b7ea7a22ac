#pragma once
// The cuDNN 9 graph-API baselines (cudnn_attention.cpp, cudnn_layernorm.cpp): our launchers'
// signatures run through cuDNN's backend operations (graph_cudnn.h): SDPA as cudnn-frontend
// builds it (the composite matmul/pointwise/reduction graph, or the unified SDPA operation
// where the library has it; cudnn_attention.cpp says which when) and the layer-norm
// forward/backward operations. Plans are built once per shape and device (kernel compilation
// included) and cached. Always declared; in a build without cuDNN (no DINO_HAS_CUDNN) each
// throws saying so. Packed qkv is given to cuDNN as strided (B, H, N, Dh) views: no copies.
// `dino bench` measures ours against them; `model.attention=cudnn` trains with cuDNN's SDPA
// once register_cudnn_attention() has run.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace dino::bench {

bool cudnn_available();       // built with cuDNN and the library answers cudnnGetVersion
const char* cudnn_version();  // "9.19.0", or "none (...)"
// Registers cuDNN's SDPA with the CUDA backend as the attention kernels named "cudnn"
// (kernels/cuda/kernels.h: set_attention_backend).
void register_cudnn_attention();
// As attention_forward / attention_backward (head dims 32, 64, 128; lse is cuDNN's softmax
// statistics, the natural log-sum-exp of the scaled scores, interchangeable with ours).
void cudnn_attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv, int B, int N,
                             int H, int Dh, cudaStream_t stream);
void cudnn_attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                              const __nv_bfloat16* qkv, const __nv_bfloat16* out, const float* lse,
                              int B, int N, int H, int Dh, cudaStream_t stream);
// As layernorm_forward / layernorm_backward (x f32, out and dout bf16, dx f32).
void cudnn_layernorm_forward(__nv_bfloat16* out, float* mean, float* rstd, const float* x,
                             const float* weight, const float* bias, int N, int C, float eps,
                             cudaStream_t stream);
void cudnn_layernorm_backward(float* dx, float* dweight, float* dbias, const __nv_bfloat16* dout,
                              const float* x, const float* mean, const float* rstd,
                              const float* weight, int N, int C, cudaStream_t stream);
// The same with the activations' types chosen (the benchmark falls back to all-bf16 or all-f32
// activations if cuDNN has no engine for the mixed f32-in / bf16-out form).
enum class CudnnIo { f32, bf16 };
void cudnn_layernorm_forward_io(void* out, CudnnIo out_type, float* mean, float* rstd,
                                const void* x, CudnnIo x_type, const float* weight,
                                const float* bias, int N, int C, float eps, cudaStream_t stream);
void cudnn_layernorm_backward_io(void* dx, CudnnIo dx_type, float* dweight, float* dbias,
                                 const void* dout, CudnnIo dout_type, const void* x, CudnnIo x_type,
                                 const float* mean, const float* rstd, const float* weight, int N,
                                 int C, cudaStream_t stream);
// The plan the latest cudnn_* call on this thread ran: engine index, device scratch (cuDNN's
// workspace plus the graph's own scratch tensors), build time (0 when it came from the cache)
// and which graph it is (e.g. "composite" or "unified" SDPA; see cudnn_attention.cpp), for the
// benchmark's report and the tests.
struct CudnnPlanInfo {
  long long engine = -1, workspace_bytes = 0;
  double build_seconds = 0;
  const char* path = "";
};
CudnnPlanInfo cudnn_last_plan();

}  // namespace dino::bench
