// cuDNN 9 graph-API helpers (see graph_cudnn.h). Compiled to nothing without cuDNN.
#ifdef DINO_HAS_CUDNN

#include <chrono>
#include <mutex>

#include "benchmarks/cudnn/graph_cudnn.h"
#include "core/error.h"
#include "kernels/cuda/check.h"

namespace dino::bench::cudnn {

int runtime_version() { return int(cudnnGetVersion()); }

std::string version_string(int v) {
  return str_cat(v / 10000, ".", (v % 10000) / 100, ".", v % 100);
}

void fail(const std::string& what, cudnnStatus_t status) {
  char detail[1024] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  throw Error(str_cat("[cudnn] ", what, ": ", cudnnGetErrorString(status),
                      detail[0] ? str_cat(" (", detail, ")") : std::string(), " [cuDNN ",
                      version_string(runtime_version()), "]"));
}

cudnnHandle_t handle() {
  static std::mutex mutex;
  static std::vector<cudnnHandle_t> handles;  // one per device, kept for the process
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  if (handles.size() <= size_t(device)) handles.resize(size_t(device) + 1, nullptr);
  if (!handles[size_t(device)]) {
    cudnnHandle_t h = nullptr;
    const cudnnStatus_t st = cudnnCreate(&h);
    if (st != CUDNN_STATUS_SUCCESS) fail("cudnnCreate", st);
    handles[size_t(device)] = h;
  }
  return handles[size_t(device)];
}

Desc::Desc(cudnnBackendDescriptorType_t type) {
  const cudnnStatus_t st = cudnnBackendCreateDescriptor(type, &d_);
  if (st != CUDNN_STATUS_SUCCESS)
    fail(str_cat("cudnnBackendCreateDescriptor(type ", int(type), ")"), st);
}

Desc::~Desc() {
  if (d_) cudnnBackendDestroyDescriptor(d_);
}

Desc& Desc::operator=(Desc&& o) noexcept {
  if (this != &o) {
    if (d_) cudnnBackendDestroyDescriptor(d_);
    d_ = o.d_;
    o.d_ = nullptr;
  }
  return *this;
}

void Desc::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
               const void* values, const char* what) {
  const cudnnStatus_t st = cudnnBackendSetAttribute(d_, name, type, count, values);
  if (st != CUDNN_STATUS_SUCCESS)
    fail(str_cat("setting ", what, " (attribute ", int(name), ")"), st);
}

void Desc::set_desc(cudnnBackendAttributeName_t name, const Desc& d, const char* what) {
  cudnnBackendDescriptor_t raw = d.get();
  set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw, what);
}

void Desc::set_i64(cudnnBackendAttributeName_t name, int64_t v, const char* what) {
  set(name, CUDNN_TYPE_INT64, 1, &v, what);
}

void Desc::finalize(const char* what) {
  const cudnnStatus_t st = cudnnBackendFinalize(d_);
  if (st != CUDNN_STATUS_SUCCESS) fail(str_cat("finalizing ", what), st);
}

cudnnStatus_t Desc::try_finalize() { return cudnnBackendFinalize(d_); }

Desc make_tensor(const TensorSpec& s) {
  DINO_CHECK(s.dims.size() == s.strides.size() && !s.dims.empty(), "[cudnn] tensor ", s.uid, ": ",
             s.dims.size(), " dims but ", s.strides.size(), " strides");
  Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t n = int64_t(s.dims.size()), alignment = 16;
  const bool by_value = s.by_value, is_virtual = s.is_virtual;
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &s.type, "tensor data type");
  t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, n, s.dims.data(), "tensor dims");
  t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, n, s.strides.data(), "tensor strides");
  t.set_i64(CUDNN_ATTR_TENSOR_UNIQUE_ID, s.uid, "tensor uid");
  t.set_i64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, alignment, "tensor alignment");
  if (by_value)
    t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value, "tensor by value");
  if (is_virtual)
    t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual, "tensor virtual");
  t.finalize(str_cat("tensor ", s.uid).c_str());
  return t;
}

namespace {

// A scratch tensor's span in the run's allocation: 256-byte aligned, as cudaMalloc's are.
int64_t scratch_span(int64_t bytes) { return (bytes + 255) / 256 * 256; }

// A pointwise descriptor, not yet finalised (a mode may need more attributes).
Desc pointwise_desc(cudnnPointwiseMode_t mode, cudnnDataType_t math) {
  Desc d(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  d.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
  d.set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math, "pointwise precision");
  return d;
}

}  // namespace

Plan::~Plan() {
  // Plans are cached for the process: at exit the CUDA context may already be gone, so a
  // failure here means nothing is left to free.
  for (const auto& c : device_consts) cudaFree(c.second);
}

void Plan::add_device_const(int64_t uid, const void* host, size_t bytes) {
  void* device = nullptr;
  CUDA_CHECK(cudaMalloc(&device, bytes));
  device_consts.emplace_back(uid, device);
  CUDA_CHECK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
}

int64_t Plan::scratch_bytes() const {
  int64_t total = 0;
  for (const Scratch& s : scratch) total += scratch_span(s.bytes);
  return total;
}

Desc& GraphBuilder::keep(Desc d) {
  keep_.push_back(std::move(d));
  return keep_.back();
}

Desc& GraphBuilder::operation(cudnnBackendDescriptorType_t type) {
  Desc& op = keep(Desc(type));
  ops_.push_back(&op);
  return op;
}

const Desc& GraphBuilder::tensor(const TensorSpec& spec) { return keep(make_tensor(spec)); }

const Desc& GraphBuilder::virtual_tensor(cudnnDataType_t type, std::vector<int64_t> dims,
                                         std::vector<int64_t> strides) {
  return tensor({next_virtual_uid_++, type, std::move(dims), std::move(strides), false, true});
}

void GraphBuilder::matmul(const Desc& a, const Desc& b, const Desc& c) {
  Desc& desc = keep(Desc(CUDNN_BACKEND_MATMUL_DESCRIPTOR));
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  desc.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute, "matmul compute type");
  desc.finalize("matmul descriptor");
  Desc& op = operation(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a, "matmul A");
  op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b, "matmul B");
  op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c, "matmul C");
  op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, desc, "matmul descriptor");
  op.finalize("matmul operation");
}

void GraphBuilder::pointwise_op(const Desc& desc, const Desc& x, const Desc* b, const Desc* mask,
                                const Desc& y, const std::string& what) {
  Desc& op = operation(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, desc, (what + " descriptor").c_str());
  op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x, (what + " X").c_str());
  if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b, (what + " B").c_str());
  if (mask) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *mask, (what + " mask").c_str());
  op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y, (what + " Y").c_str());
  op.finalize((what + " operation").c_str());
}

void GraphBuilder::pointwise(cudnnPointwiseMode_t mode, const Desc& x, const Desc* b, const Desc& y,
                             cudnnDataType_t math) {
  const std::string what = str_cat("pointwise (mode ", int(mode), ")");
  Desc& desc = keep(pointwise_desc(mode, math));
  desc.finalize((what + " descriptor").c_str());
  pointwise_op(desc, x, b, nullptr, y, what);
}

void GraphBuilder::gen_index(const Desc& x, int64_t axis, const Desc& y) {
  Desc& desc = keep(pointwise_desc(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32));
  desc.set_i64(CUDNN_ATTR_POINTWISE_AXIS, axis, "index axis");
  desc.finalize("index descriptor");
  pointwise_op(desc, x, nullptr, nullptr, y, "index");
}

void GraphBuilder::select(const Desc& x, const Desc& b, const Desc& mask, const Desc& y) {
  Desc& desc = keep(pointwise_desc(CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT));
  desc.finalize("select descriptor");
  pointwise_op(desc, x, &b, &mask, y, "select");
}

void GraphBuilder::reduction(cudnnReduceTensorOp_t reduce, const Desc& x, const Desc& y) {
  Desc& desc = keep(Desc(CUDNN_BACKEND_REDUCTION_DESCRIPTOR));
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  desc.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce,
           "reduction operator");
  desc.set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute,
           "reduction compute type");
  desc.finalize("reduction descriptor");
  Desc& op = operation(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, desc, "reduction descriptor");
  op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x, "reduction X");
  op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y, "reduction Y");
  op.finalize("reduction operation");
}

void GraphBuilder::reshape(const Desc& x, const Desc& y) {
  Desc& op = operation(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x, "reshape X");
  op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y, "reshape Y");
  op.finalize("reshape operation");
}

void GraphBuilder::add(Desc op) { ops_.push_back(&keep(std::move(op))); }

namespace {

// The engine's global index behind an engine configuration, or -1.
int64_t engine_index(cudnnBackendDescriptor_t cfg) {
  try {
    Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    cudnnBackendDescriptor_t raw = engine.get();
    int64_t n = 0, index = -1;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                 &n, &raw) != CUDNN_STATUS_SUCCESS)
      return -1;
    if (cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n,
                                 &index) != CUDNN_STATUS_SUCCESS)
      return -1;
    return index;
  } catch (const Error&) {
    return -1;
  }
}

std::string last_error() {
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  return detail;
}

}  // namespace

std::unique_ptr<Plan> build_plan(const std::vector<const Desc*>& ops, const std::string& what) {
  const auto t0 = std::chrono::steady_clock::now();
  cudnnHandle_t h = handle();
  Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  std::vector<cudnnBackendDescriptor_t> raw_ops;
  for (const Desc* op : ops) raw_ops.push_back(op->get());
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(raw_ops.size()),
            raw_ops.data(), "operation graph ops");
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, "operation graph handle");
  graph.finalize(str_cat(what, " operation graph").c_str());

  std::string refusals;
  for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    const char* mode_name = mode == CUDNN_HEUR_MODE_A ? "A" : "FALLBACK";
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph, "heuristics graph");
    heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
    cudnnStatus_t st = heur.try_finalize();
    if (st != CUDNN_STATUS_SUCCESS) {
      refusals +=
          str_cat("; heuristics ", mode_name, ": ", cudnnGetErrorString(st), " ", last_error());
      continue;
    }
    int64_t count = 0;
    st = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
    if (st != CUDNN_STATUS_SUCCESS || count <= 0) {
      refusals += str_cat("; heuristics ", mode_name, ": no engine configurations");
      continue;
    }
    std::vector<Desc> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw_cfgs;
    for (int64_t i = 0; i < count; ++i) {
      cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw_cfgs.push_back(cfgs.back().get());
    }
    int64_t got = 0;
    st = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, raw_cfgs.data());
    if (st != CUDNN_STATUS_SUCCESS) {
      refusals += str_cat("; heuristics ", mode_name, " results: ", cudnnGetErrorString(st));
      continue;
    }
    for (int64_t i = 0; i < got && i < count; ++i) {
      auto plan = std::make_unique<Plan>();
      plan->plan.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                     &raw_cfgs[size_t(i)], "plan engine config");
      plan->plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, "plan handle");
      st = plan->plan.try_finalize();
      if (st != CUDNN_STATUS_SUCCESS) {
        refusals += str_cat("; ", mode_name, " config ", i, " (engine ",
                            engine_index(raw_cfgs[size_t(i)]), "): ", cudnnGetErrorString(st));
        continue;
      }
      int64_t n = 0;
      st = cudnnBackendGetAttribute(plan->plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                    CUDNN_TYPE_INT64, 1, &n, &plan->workspace_bytes);
      if (st != CUDNN_STATUS_SUCCESS) fail(str_cat(what, ": plan workspace size"), st);
      plan->engine = engine_index(raw_cfgs[size_t(i)]);
      plan->build_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return plan;
    }
  }
  throw Error(str_cat("[cudnn] ", what, ": no engine of cuDNN ", version_string(runtime_version()),
                      " runs this graph", refusals));
}

namespace {
thread_local CudnnPlanInfo g_noted;
}  // namespace

void note_plan(const Plan& plan, bool from_cache) {
  g_noted = {plan.engine, plan.workspace_bytes + plan.scratch_bytes(),
             from_cache ? 0.0 : plan.build_seconds, plan.path};
}

CudnnPlanInfo noted_plan() { return g_noted; }

void execute(const Plan& plan, const std::vector<int64_t>& uids, const std::vector<void*>& ptrs,
             cudaStream_t stream) {
  DINO_CHECK(uids.size() == ptrs.size(), "[cudnn] execute: ", uids.size(), " uids but ",
             ptrs.size(), " pointers");
  cudnnHandle_t h = handle();
  cudnnStatus_t st = cudnnSetStream(h, stream);
  if (st != CUDNN_STATUS_SUCCESS) fail("cudnnSetStream", st);
  const int64_t scratch_bytes = plan.scratch_bytes(), total = scratch_bytes + plan.workspace_bytes;
  char* memory = nullptr;
  if (total > 0)
    CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&memory), size_t(total), stream));
  try {
    std::vector<int64_t> all_uids = uids;
    std::vector<void*> all_ptrs = ptrs;
    int64_t offset = 0;
    for (const Scratch& s : plan.scratch) {
      if (s.zeroed) CUDA_CHECK(cudaMemsetAsync(memory + offset, 0, size_t(s.bytes), stream));
      all_uids.push_back(s.uid);
      all_ptrs.push_back(memory + offset);
      offset += scratch_span(s.bytes);
    }
    for (const auto& c : plan.scalars) {
      all_uids.push_back(c.first);
      all_ptrs.push_back(const_cast<float*>(&c.second));  // read only: cuDNN copies the value
    }
    for (const auto& c : plan.device_consts) {
      all_uids.push_back(c.first);
      all_ptrs.push_back(c.second);
    }
    void* workspace = plan.workspace_bytes > 0 ? memory + scratch_bytes : nullptr;
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(all_ptrs.size()),
             all_ptrs.data(), "variant pack pointers");
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(all_uids.size()),
             all_uids.data(), "variant pack uids");
    pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace,
             "variant pack workspace");
    pack.finalize("variant pack");
    st = cudnnBackendExecute(h, plan.plan.get(), pack.get());
    if (st != CUDNN_STATUS_SUCCESS) fail("cudnnBackendExecute", st);
  } catch (...) {
    if (memory) cudaFreeAsync(memory, stream);
    throw;
  }
  if (memory) CUDA_CHECK(cudaFreeAsync(memory, stream));
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace dino::bench::cudnn

#endif  // DINO_HAS_CUDNN
