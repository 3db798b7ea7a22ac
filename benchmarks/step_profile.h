#pragma once
// What the GPU ran during training steps, kernel by kernel (`dino bench train-step --profile`,
// ARCHITECTURE §7): the kernel summary Nsight Systems gives, taken inside the benchmark from
// CUPTI's activity trace, so a report from a machine without Nsight still says where a step's
// time goes and how much of it the device spent idle, waiting for the host.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dino::bench {

// One interval of device work, as CUPTI reports it.
struct DeviceActivity {
  enum class Kind { kernel, memcpy, memset };
  Kind kind = Kind::kernel;
  std::string name;  // a kernel's demangled name; "memcpy HtoD" (DtoH, DtoD, ...); "memset"
  uint64_t start_ns = 0, end_ns = 0;
  uint64_t bytes = 0;                             // copies and memsets
  int registers = 0;                              // kernels: registers per thread
  int grid[3] = {0, 0, 0}, block[3] = {0, 0, 0};  // kernels: the launch configuration
};

// Runs `run` with CUPTI tracing kernels, copies and memsets, and returns what the device did,
// in the order CUPTI delivered it (summarize_step_profile orders it). `run` must leave the device
// idle (end with a synchronize): records of work still running are not collected. Throws
// dino::Error naming the CUPTI call that failed, or saying that the build has no CUPTI.
std::vector<DeviceActivity> trace_device_activity(const std::function<void()>& run);

// The trace of `steps` steps, per step:
//  - span_ms: the first start to the last end, over `steps`; busy_ms: the union of the
//    intervals (overlapping work counted once); idle_ms = span - busy: the device waiting for
//    work (host launch cost, synchronisation), with the gaps of over 10 us counted;
//  - kernels: per name, calls and ms per step, mean us per call, share of busy, registers, and
//    per launch configuration (grid x block) its calls and ms: one library kernel serves GEMMs
//    of several shapes, which its grids tell apart;
//  - families: the same summed by what the kernels do (GEMM, attention, LayerNorm, ...), from
//    their names; what matches no family is "other". A convenience for reading: the kernel rows
//    are the data.
nlohmann::json summarize_step_profile(const std::vector<DeviceActivity>& activity, int steps);

// "void dino::kernels::cuda::(anonymous namespace)::f<3, true>(float*, int)" -> "f<3, true>".
std::string short_kernel_name(const std::string& demangled);

// The families, then the `top` kernels by time.
void print_step_profile(const nlohmann::json& profile, const std::string& title, int top);

}  // namespace dino::bench
