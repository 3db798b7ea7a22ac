#pragma once
// A thin C++ layer over cuDNN 9's graph (backend) API, shared by the cuDNN baselines
// (cudnn_attention.cpp, cudnn_layernorm.cpp); implemented in cudnn_graph.cpp. Only included
// where DINO_HAS_CUDNN is defined. (Not named cudnn_*.h: cuDNN ships a cudnn_graph.h, and
// tools/gpu-check.sh's dry run checks that every cudnn*.h a build reads is the staged one.)
//
// The backend API in five steps, as these helpers take them:
//  1. tensor descriptors: dims, strides (in elements), data type, a unique id (uid) that the
//     variant pack later binds to a pointer; scalars such as the attention scale are "by
//     value" (the variant pack points to a host value);
//  2. one operation descriptor (SDPA forward/backward, norm forward/backward) naming them;
//  3. an operation graph of the operations;
//  4. engine configurations from the heuristics (mode A, then FALLBACK), tried in order
//     until one finalises as an execution plan: some engines compile their kernel at this
//     point (NVRTC), so a plan is built once per shape and cached by the caller;
//  5. execution: a variant pack (uids -> pointers, workspace) run on the handle's stream.
// Every call is checked; failures throw dino::Error with cuDNN's own last-error text.
#include <cudnn.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/kernels.h"

namespace dino::kernels::cuda::cudnn {

// cudnnGetVersion() of the library loaded at run time (e.g. 91900 for 9.19.0).
int runtime_version();
std::string version_string(int version);  // "9.19.0"

// The handle of the current device, created on first use; its stream is set per call.
cudnnHandle_t handle();

// Throws dino::Error naming `what`, the status and cuDNN's last error message.
[[noreturn]] void fail(const std::string& what, cudnnStatus_t status);

// One owned backend descriptor.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type);
  ~Desc();
  Desc(Desc&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  Desc& operator=(Desc&& o) noexcept;
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }
  // Each throws naming the attribute on failure.
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
           const void* values, const char* what);
  void set_desc(cudnnBackendAttributeName_t name, const Desc& d, const char* what);
  void set_i64(cudnnBackendAttributeName_t name, int64_t v, const char* what);
  void finalize(const char* what);
  // Finalize that reports instead of throwing (for trying engine configurations).
  cudnnStatus_t try_finalize();

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

struct TensorSpec {
  int64_t uid;
  cudnnDataType_t type;
  std::vector<int64_t> dims, strides;  // elements; same length (cuDNN wants >= 3, we use 4)
  bool by_value = false;               // a host scalar bound through the variant pack
};
Desc make_tensor(const TensorSpec& spec);

// A finalised execution plan with what it needs at run time.
struct Plan {
  Desc plan{CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR};
  int64_t workspace_bytes = 0;
  int64_t engine = -1;       // the engine's global index, for reports
  double build_seconds = 0;  // heuristics + plan finalisation (kernel compilation included)
};

// Builds an operation graph of `ops`, then returns the first engine configuration (heuristics
// mode A, then FALLBACK) whose plan finalises. Throws naming `what` and every refusal if none.
std::unique_ptr<Plan> build_plan(const std::vector<const Desc*>& ops, const std::string& what);

// Runs `plan` on `stream` with uids[i] bound to ptrs[i]; allocates the workspace stream-ordered
// from the device pool and frees it after the launch (also stream-ordered).
// Records the plan the calling thread's latest cuDNN call ran (cudnn_last_plan() returns it);
// from_cache: it was built earlier, so no build time is charged to this call.
void note_plan(const Plan& plan, bool from_cache);
CudnnPlanInfo noted_plan();

void execute(const Plan& plan, const std::vector<int64_t>& uids, const std::vector<void*>& ptrs,
             cudaStream_t stream);

}  // namespace dino::kernels::cuda::cudnn
