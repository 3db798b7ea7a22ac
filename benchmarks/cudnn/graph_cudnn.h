#pragma once
// A thin C++ layer over cuDNN 9's graph (backend) API, shared by the cuDNN baselines
// (cudnn_attention.cpp, cudnn_layernorm.cpp); implemented in cudnn_graph.cpp. Only included
// where DINO_HAS_CUDNN is defined. (Not named cudnn_*.h: cuDNN ships a cudnn_graph.h, and
// tools/gpu-check.sh's dry run checks that every cudnn*.h a build reads is the staged one.)
//
// The backend API in five steps, as these helpers take them:
//  1. tensor descriptors: dims, strides (in elements), data type, a unique id (uid) that the
//     variant pack later binds to a pointer; scalars such as the attention scale are "by
//     value" (the variant pack points to a host value); "virtual" tensors are intermediates
//     that only join two operations of a graph and never reach memory;
//  2. operation descriptors naming them: one fused operation (SDPA forward/backward, norm
//     forward/backward), or a pattern of matmul / pointwise / reduction / reshape operations
//     joined by virtual tensors that cuDNN's fusion engines recognise (GraphBuilder);
//  3. an operation graph of the operations;
//  4. engine configurations from the heuristics (mode A, then FALLBACK), tried in order
//     until one finalises as an execution plan: some engines compile their kernel at this
//     point (NVRTC), so a plan is built once per shape and cached by the caller;
//  5. execution: a variant pack (uids -> pointers, workspace) run on the handle's stream.
// Every call is checked; failures throw dino::Error with cuDNN's own last-error text.
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/cudnn/baselines.h"

namespace dino::bench::cudnn {

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
  bool is_virtual = false;             // an intermediate of the graph: no memory, never bound
};
Desc make_tensor(const TensorSpec& spec);

// A tensor the graph names that the caller does not pass: execute() carves it from the run's
// workspace allocation (zeroed first when asked).
struct Scratch {
  int64_t uid, bytes;
  bool zeroed;
};

// A finalised execution plan with what it needs at run time.
struct Plan {
  Desc plan{CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR};
  int64_t workspace_bytes = 0;  // cuDNN's own workspace
  int64_t engine = -1;          // the engine's global index, for reports
  double build_seconds = 0;     // heuristics + plan finalisation (kernel compilation included)
  const char* path = "";        // which graph the caller built, for reports
  // Bound by execute() on every run besides the caller's tensors:
  std::vector<Scratch> scratch;
  std::vector<std::pair<int64_t, float>> scalars;        // by-value fp32 constants
  std::vector<std::pair<int64_t, void*>> device_consts;  // device copies owned by the plan

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan();
  // Copies `bytes` of `host` to device memory the plan owns, bound to `uid` on every run.
  void add_device_const(int64_t uid, const void* host, size_t bytes);
  int64_t scratch_bytes() const;  // the scratch tensors together, each 256-byte aligned
};

// Builds an operation graph of `ops`, then returns the first engine configuration (heuristics
// mode A, then FALLBACK) whose plan finalises. Throws naming `what` and every refusal if none.
std::unique_ptr<Plan> build_plan(const std::vector<const Desc*>& ops, const std::string& what);

// Assembles a graph of backend operations, owning every descriptor until the plan is built.
// Operations are added in data-flow order; compute precision is fp32 unless named.
class GraphBuilder {
 public:
  const Desc& tensor(const TensorSpec& spec);
  // An intermediate with a fresh uid (from 1000 up: callers keep their own uids below).
  const Desc& virtual_tensor(cudnnDataType_t type, std::vector<int64_t> dims,
                             std::vector<int64_t> strides);
  void matmul(const Desc& a, const Desc& b, const Desc& c);  // c = a b over the last two dims
  // y = mode(x) or mode(x, b); b may be a broadcast (size-1 dims) or by-value tensor.
  void pointwise(cudnnPointwiseMode_t mode, const Desc& x, const Desc* b, const Desc& y,
                 cudnnDataType_t math = CUDNN_DATA_FLOAT);
  void gen_index(const Desc& x, int64_t axis, const Desc& y);  // y = index of x along axis
  void select(const Desc& x, const Desc& b, const Desc& mask, const Desc& y);  // mask ? x : b
  // y = x reduced over the dims where y has size 1.
  void reduction(cudnnReduceTensorOp_t op, const Desc& x, const Desc& y);
  void reshape(const Desc& x, const Desc& y);  // same elements, y's dims and strides
  void add(Desc op);                           // a finalised operation built by the caller
  std::unique_ptr<Plan> build(const std::string& what) const { return build_plan(ops_, what); }

 private:
  Desc& keep(Desc d);
  Desc& operation(cudnnBackendDescriptorType_t type);
  // The pointwise operation of a finalised pointwise descriptor; b and mask may be null.
  void pointwise_op(const Desc& desc, const Desc& x, const Desc* b, const Desc* mask, const Desc& y,
                    const std::string& what);

  std::deque<Desc> keep_;  // a deque: references stay valid as it grows
  std::vector<const Desc*> ops_;
  int64_t next_virtual_uid_ = 1000;
};

// Records the plan the calling thread's latest cuDNN call ran (cudnn_last_plan() returns it);
// from_cache: it was built earlier, so no build time is charged to this call.
void note_plan(const Plan& plan, bool from_cache);
CudnnPlanInfo noted_plan();

// Runs `plan` on `stream` with uids[i] bound to ptrs[i] (and the plan's own scratch, scalars and
// constants); allocates workspace and scratch stream-ordered from the device pool and frees
// them after the launch (also stream-ordered).
void execute(const Plan& plan, const std::vector<int64_t>& uids, const std::vector<void*>& ptrs,
             cudaStream_t stream);

}  // namespace dino::bench::cudnn
