#pragma once
// The GPU kernel benchmarks behind `dino bench attention|layernorm|dino-loss|gemm|augment`
// (ARCHITECTURE §7).
// Compiled into the CLI when the build has CUDA. Each run:
//  - measures the machine's ceilings first (a large device-to-device copy: GB/s counting bytes
//    read plus written; a large cuBLASLt bf16 GEMM on random data: TFLOP/s);
//  - times every implementation of every shape with CUDA events around each repetition
//    (warm-up first, median of >= 50), rotating among enough input sets that one pass over
//    them is several times the L2 read from the device, so inputs come from memory;
//  - counts the FLOPs and the minimum bytes each op must move (inputs read once, outputs
//    written once) and reports achieved TFLOP/s and GB/s, the floor time max(FLOPs / GEMM
//    ceiling, bytes / copy ceiling), the percent of that floor reached, and each baseline's time
//    over ours;
//  - cross-checks the implementations' outputs on one input set (relative L2 difference to the
//    composite), so a wrong fast kernel shows in the same table.
// Output: a human table on stdout and one JSON line per measurement (lines starting with '{');
// the caller prints one JSON object with everything last when asked (--json).
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dino::bench {

using nlohmann::json;

struct Options {
  int reps = 50, warmup = 5;
  double budget_s = 0;              // > 0: start no new shape after this many seconds
  std::string shapes = "all";       // per benchmark: e.g. vit, long, all
  std::vector<std::string> custom;  // benchmark-specific shape strings ("B,N,H,Dh" for attention)
  bool check = true;                // cross-check outputs on one input set
  bool ceilings = true;             // measure the copy and GEMM ceilings (percent columns)
};

struct Ceilings {
  std::string device;
  int64_t l2_bytes = 0;
  double copy_gbps = 0, gemm_tflops = 0;
  json to_json() const;
  // "<device>; ceilings <copy> GB/s copy, <gemm> TFLOP/s bf16 GEMM" (or "not measured").
  std::string describe() const;
};

// A device allocation owned for the benchmark's lifetime (cudaMalloc, outside the pool the
// engine uses, so a benchmark's big buffers leave no cached pool memory behind).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T = void>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

cudaStream_t stream();  // the engine's context stream: every benchmark runs on it

// How many input sets of `bytes_per_set` to rotate among: at least 2, enough that one pass
// moves 3x the L2, at most 64 and at most `max_total` bytes (0: a quarter of free memory).
int rotation_sets(size_t bytes_per_set, int64_t l2_bytes, size_t max_total = 0);

// Uniform [lo, hi) fills on the device (a hash of the index and the seed; never zeros).
void fill_uniform_f32(float* p, int64_t n, uint64_t seed, float lo, float hi);
void fill_uniform_bf16(void* p, int64_t n, uint64_t seed, float lo, float hi);

struct Timing {
  double median_ms = 0, p10_ms = 0, p90_ms = 0, min_ms = 0;
  int reps = 0;
};
// Runs body(i) `warmup` times, then `reps` times with a CUDA event pair around each call on
// stream(); body(i) enqueues one repetition using input set i % sets.
Timing time_reps(int warmup, int reps, const std::function<void(int)>& body);

// The plain cuBLASLt product every composite baseline and the GEMM ceiling use, row-major:
// C (batch, M, N) = alpha * op(A) (M, K) @ op(B) (K, N); A stored (M, K) or (K, M) when trans_a;
// B stored (K, N) or (N, K) when trans_b; bf16 inputs, fp32 accumulation, C bf16 or fp32;
// strides in elements between batch entries. Heuristic's first algorithm, cached per shape.
void lt_matmul(void* C, bool c_bf16, const void* A, const void* B, int64_t M, int64_t N, int64_t K,
               bool trans_a, bool trans_b, int batch, int64_t stride_a, int64_t stride_b,
               int64_t stride_c, float alpha);

Ceilings measure_ceilings(const Options& opt);

// ||a - b|| / ||b|| over n elements of two device arrays (f32 or bf16 each); NaN if a has a
// non-finite element.
double rel_diff(const void* a, bool a_bf16, const void* b, bool b_bf16, int64_t n);

// One measurement's record: time, rates, floors, percent of the ceilings.
struct Work {
  double flops = 0;  // useful floating-point operations (0 for memory-bound ops)
  double bytes = 0;  // minimum bytes moved (inputs once, outputs once)
};
json measurement(const std::string& bench, const std::string& shape, const std::string& pass,
                 const std::string& impl, const Timing& t, const Work& w, const Ceilings& c);
json error_row(const std::string& bench, const std::string& shape, const std::string& pass,
               const std::string& impl, const std::string& error);

// Collects rows, prints each as a JSON line as it comes, and the human table at the end.
class Report {
 public:
  explicit Report(std::string bench) : bench_(std::move(bench)) {}
  void add(json row);  // prints the JSON line
  // Adds "<impl>_over_ours" (baseline time / ours) to every ours row, per shape and pass.
  void add_ratios();
  void print_table() const;
  const std::vector<json>& rows() const { return rows_; }

 private:
  std::string bench_;
  std::vector<json> rows_;
};

// The benchmarks. Each returns {"bench", "ceilings", "results": [rows]} and prints as it goes.
json bench_attention(const Options& opt);
json bench_layernorm(const Options& opt);
json bench_dino_loss(const Options& opt);
json bench_gemm(const Options& opt);
json bench_augment(const Options& opt);

// Elapsed seconds since `t0` (steady clock), for the --budget checks.
double seconds_since_start();

}  // namespace dino::bench
