// The benchmarks' shared machinery (bench.h): buffers, fills, event timing, the plain
// cuBLASLt product, the ceilings, the cross-check and the report.
#include <cublasLt.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <tuple>

#include "benchmarks/bench.h"
#include "benchmarks/composite.h"
#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"

namespace dino::bench {

namespace {
const auto g_start = std::chrono::steady_clock::now();
}  // namespace

double seconds_since_start() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
}

std::string Ceilings::describe() const {
  if (copy_gbps <= 0 || gemm_tflops <= 0) return device + "; ceilings not measured";
  char b[96];
  std::snprintf(b, sizeof(b), "; ceilings %.0f GB/s copy, %.0f TFLOP/s bf16 GEMM", copy_gbps,
                gemm_tflops);
  return device + b;
}

json Ceilings::to_json() const {
  json j{{"bench", "ceilings"}, {"device", device}, {"l2_bytes", l2_bytes}};
  if (copy_gbps <= 0 || gemm_tflops <= 0) {
    j["measured"] = false;  // --no-ceilings
    return j;
  }
  j.update({{"measured", true},
            {"copy_gbps", copy_gbps},
            {"gemm_tflops", gemm_tflops},
            {"copy_method", "cudaMemcpyAsync device-to-device, bytes read + written"},
            {"gemm_method", "cuBLASLt bf16 8192^3, fp32 accumulate, bf16 out, random inputs"}});
  return j;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes) CUDA_CHECK(cudaMalloc(&p_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = o.p_, bytes_ = o.bytes_;
    o.p_ = nullptr, o.bytes_ = 0;
  }
  return *this;
}

cudaStream_t stream() { return kernels::cuda::context().stream; }

int rotation_sets(size_t bytes_per_set, int64_t l2_bytes, size_t max_total) {
  if (max_total == 0) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    max_total = free_b / 4;
  }
  const size_t per = std::max<size_t>(bytes_per_set, 1);
  size_t sets = (3 * size_t(std::max<int64_t>(l2_bytes, 1)) + per - 1) / per;
  sets = std::clamp<size_t>(sets, 2, 64);
  while (sets > 1 && sets * per > max_total) --sets;
  return int(sets);
}

void fill_uniform_f32(float* p, int64_t n, uint64_t seed, float lo, float hi) {
  composite::fill_uniform_f32(p, n, seed, lo, hi, stream());
}

void fill_uniform_bf16(void* p, int64_t n, uint64_t seed, float lo, float hi) {
  composite::fill_uniform_bf16(p, n, seed, lo, hi, stream());
}

Timing time_reps(int warmup, int reps, const std::function<void(int)>& body) {
  const cudaStream_t s = stream();
  for (int i = 0; i < warmup; ++i) body(i);
  std::vector<cudaEvent_t> start(static_cast<size_t>(reps)), stop(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventCreate(&start[size_t(i)]));
    CUDA_CHECK(cudaEventCreate(&stop[size_t(i)]));
  }
  std::vector<double> ms(static_cast<size_t>(reps));
  try {
    for (int i = 0; i < reps; ++i) {
      CUDA_CHECK(cudaEventRecord(start[size_t(i)], s));
      body(warmup + i);
      CUDA_CHECK(cudaEventRecord(stop[size_t(i)], s));
    }
    CUDA_CHECK(cudaEventSynchronize(stop[size_t(reps - 1)]));
    for (int i = 0; i < reps; ++i) {
      float t = 0;
      CUDA_CHECK(cudaEventElapsedTime(&t, start[size_t(i)], stop[size_t(i)]));
      ms[size_t(i)] = t;
    }
  } catch (...) {
    for (int i = 0; i < reps; ++i)
      cudaEventDestroy(start[size_t(i)]), cudaEventDestroy(stop[size_t(i)]);
    throw;
  }
  for (int i = 0; i < reps; ++i)
    cudaEventDestroy(start[size_t(i)]), cudaEventDestroy(stop[size_t(i)]);
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, size_t(std::llround(q * double(ms.size() - 1))))];
  };
  Timing t;
  t.median_ms = at(0.5), t.p10_ms = at(0.1), t.p90_ms = at(0.9), t.min_ms = ms.front();
  t.reps = reps;
  return t;
}

// ---- the plain cuBLASLt product ------------------------------------------------------------
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS's first operand is
// our B, its second our A. B stored (K, N) row-major is (N, K) column-major with ld N, no
// transpose; stored (N, K) (trans_b) it is (K, N) with ld K, transposed. A stored (M, K) is
// (K, M) with ld K, no transpose; stored (K, M) (trans_a) it is (M, K) with ld M, transposed.
// C is (N, M) column-major with ld N.
namespace {

struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

cublasLtMatrixLayout_t layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                              int batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    int32_t count = batch;
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                  sizeof(count)));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                  &stride, sizeof(stride)));
  }
  return l;
}

}  // namespace

void lt_matmul(void* C, bool c_bf16, const void* A, const void* B, int64_t M, int64_t N, int64_t K,
               bool trans_a, bool trans_b, int batch, int64_t stride_a, int64_t stride_b,
               int64_t stride_c, float alpha) {
  using Key =
      std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, int, int64_t, int64_t, int64_t>;
  static std::map<Key, LtPlan> plans;
  auto& ctx = kernels::cuda::context();
  cublasLtHandle_t lt = ctx.lt();
  const Key key{M, N, K, trans_a, trans_b, c_bf16, batch, stride_a, stride_b, stride_c};
  auto it = plans.find(key);
  if (it == plans.end()) {
    LtPlan p;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    p.a = trans_b ? layout(CUDA_R_16BF, K, N, K, batch, stride_b)
                  : layout(CUDA_R_16BF, N, K, N, batch, stride_b);
    p.b = trans_a ? layout(CUDA_R_16BF, M, K, M, batch, stride_a)
                  : layout(CUDA_R_16BF, K, M, K, batch, stride_a);
    p.c = layout(c_bf16 ? CUDA_R_16BF : CUDA_R_32F, N, M, N, batch, stride_c);
    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = kernels::cuda::Context::kLtWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    CUBLAS_CHECK(st);
    DINO_CHECK(found > 0, "[bench] cuBLASLt has no algorithm for M=", M, " N=", N, " K=", K,
               " batch ", batch);
    p.algo = result.algo;
    it = plans.emplace(key, p).first;
  }
  const LtPlan& p = it->second;
  const float beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(lt, p.op, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo,
                              ctx.lt_workspace(), kernels::cuda::Context::kLtWorkspaceBytes,
                              ctx.stream));
}

// ---- ceilings ------------------------------------------------------------------------------

Ceilings measure_ceilings(const Options& opt) {
  auto& ctx = kernels::cuda::context();
  Ceilings c;
  c.device = kernels::cuda::device_description();
  c.l2_bytes = ctx.l2_bytes;
  if (!opt.ceilings) return c;  // rates 0: rows then carry no percent-of-ceiling fields
  const int reps = std::max(20, opt.reps / 2);
  {
    // A copy far larger than the L2: 1 GiB, or 16 L2s if that is more.
    const size_t bytes = std::max<size_t>(size_t(1) << 30, size_t(16) * size_t(c.l2_bytes));
    DeviceBuffer src(bytes), dst(bytes);
    fill_uniform_f32(src.as<float>(), int64_t(bytes / 4), 1, -1.f, 1.f);
    const Timing t = time_reps(3, reps, [&](int) {
      CUDA_CHECK(cudaMemcpyAsync(dst.as(), src.as(), bytes, cudaMemcpyDeviceToDevice, stream()));
    });
    c.copy_gbps = 2.0 * double(bytes) / (t.median_ms * 1e-3) / 1e9;
  }
  {
    const int64_t n = 8192;
    DeviceBuffer a(size_t(n * n * 2)), b(size_t(n * n * 2)), out(size_t(n * n * 2));
    fill_uniform_bf16(a.as(), n * n, 2, -1.f, 1.f);
    fill_uniform_bf16(b.as(), n * n, 3, -1.f, 1.f);
    const Timing t = time_reps(3, reps, [&](int) {
      lt_matmul(out.as(), true, a.as(), b.as(), n, n, n, false, false, 1, 0, 0, 0, 1.f);
    });
    c.gemm_tflops = 2.0 * double(n) * n * n / (t.median_ms * 1e-3) / 1e12;
  }
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  return c;
}

double rel_diff(const void* a, bool a_bf16, const void* b, bool b_bf16, int64_t n) {
  constexpr int kMaxBlocks = 2048;
  DeviceBuffer partial(size_t(3 * kMaxBlocks) * sizeof(double));
  const int blocks =
      composite::diff_partials(partial.as<double>(), kMaxBlocks, a, a_bf16, b, b_bf16, n, stream());
  std::vector<double> host(size_t(3 * blocks));
  CUDA_CHECK(cudaMemcpyAsync(host.data(), partial.as(), host.size() * sizeof(double),
                             cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  double d2 = 0, r2 = 0, bad = 0;
  for (int i = 0; i < blocks; ++i)
    d2 += host[size_t(3 * i)], r2 += host[size_t(3 * i + 1)], bad += host[size_t(3 * i + 2)];
  if (bad > 0) return NAN;
  return std::sqrt(d2 / (r2 > 0 ? r2 : 1e-300));
}

// ---- rows and the report -------------------------------------------------------------------

json measurement(const std::string& bench, const std::string& shape, const std::string& pass,
                 const std::string& impl, const Timing& t, const Work& w, const Ceilings& c) {
  const double s = t.median_ms * 1e-3;
  const double t_flop = c.gemm_tflops > 0 ? w.flops / (c.gemm_tflops * 1e12) : 0;
  const double t_byte = c.copy_gbps > 0 ? w.bytes / (c.copy_gbps * 1e9) : 0;
  const double floor_s = std::max(t_flop, t_byte);
  json r{{"bench", bench},
         {"shape", shape},
         {"pass", pass},
         {"impl", impl},
         {"median_ms", t.median_ms},
         {"p10_ms", t.p10_ms},
         {"p90_ms", t.p90_ms},
         {"min_ms", t.min_ms},
         {"reps", t.reps},
         {"flops", w.flops},
         {"bytes", w.bytes},
         {"tflops", w.flops / s / 1e12},
         {"gbps", w.bytes / s / 1e9}};
  if (c.gemm_tflops > 0 && c.copy_gbps > 0) {  // measured (not --no-ceilings)
    r["flop_floor_ms"] = t_flop * 1e3;
    r["byte_floor_ms"] = t_byte * 1e3;
    r["bound"] = t_flop >= t_byte ? "math" : "memory";
    r["pct_gemm_ceiling"] = 100.0 * (w.flops / s / 1e12) / c.gemm_tflops;
    r["pct_copy_ceiling"] = 100.0 * (w.bytes / s / 1e9) / c.copy_gbps;
    r["pct_of_floor"] = 100.0 * floor_s / s;
  }
  return r;
}

json error_row(const std::string& bench, const std::string& shape, const std::string& pass,
               const std::string& impl, const std::string& error) {
  return json{{"bench", bench}, {"shape", shape}, {"pass", pass}, {"impl", impl}, {"error", error}};
}

void Report::add(json row) {
  std::cout << row.dump() << std::endl;
  rows_.push_back(std::move(row));
}

void Report::add_ratios() {
  for (json& ours : rows_) {
    if (ours.value("impl", "") != "ours" || !ours.contains("median_ms")) continue;
    for (const json& other : rows_) {
      if (other.value("impl", "") == "ours" || !other.contains("median_ms")) continue;
      if (other["shape"] != ours["shape"] || other["pass"] != ours["pass"]) continue;
      ours[other["impl"].get<std::string>() + "_over_ours"] =
          other["median_ms"].get<double>() / ours["median_ms"].get<double>();
    }
  }
}

void Report::print_table() const {
  std::printf("\n%-12s %-30s %-9s %-15s %9s %8s %8s %7s %6s %9s %s\n", bench_.c_str(), "shape",
              "pass", "impl", "median_ms", "TFLOP/s", "GB/s", "%floor", "bound", "ours_x", "check");
  for (const json& r : rows_) {
    if (r.contains("error")) {
      std::printf("%-12s %-30s %-9s %-15s  unavailable: %s\n", "", r.value("shape", "").c_str(),
                  r.value("pass", "").c_str(), r.value("impl", "").c_str(),
                  r.value("error", "").substr(0, 160).c_str());
      continue;
    }
    // ours_x: this implementation's time over ours (> 1: ours is faster)
    double ours_ms = 0;
    for (const json& o : rows_)
      if (o.value("impl", "") == "ours" && o.contains("median_ms") && o["shape"] == r["shape"] &&
          o["pass"] == r["pass"])
        ours_ms = o["median_ms"].get<double>();
    char ratio[32] = "-";
    if (ours_ms > 0)
      std::snprintf(ratio, sizeof(ratio), "%.2f", r["median_ms"].get<double>() / ours_ms);
    std::string check = "-";
    if (r.contains("rel_diff")) {
      char b[64];
      if (r["rel_diff"].is_number())
        std::snprintf(b, sizeof(b), "%.1e vs %s", r["rel_diff"].get<double>(),
                      r.value("check_ref", "").c_str());
      else
        std::snprintf(b, sizeof(b), "NON-FINITE vs %s", r.value("check_ref", "").c_str());
      check = b;
    } else if (r.contains("check_error")) {
      check = "check failed: " + r["check_error"].get<std::string>().substr(0, 60);
    }
    char floor_pct[16] = "-";
    if (r.contains("pct_of_floor"))
      std::snprintf(floor_pct, sizeof(floor_pct), "%.1f%%", r["pct_of_floor"].get<double>());
    std::printf("%-12s %-30s %-9s %-15s %9.4f %8.1f %8.0f %7s %6s %9s %s\n", "",
                r.value("shape", "").c_str(), r.value("pass", "").c_str(),
                r.value("impl", "").c_str(), r["median_ms"].get<double>(),
                r["tflops"].get<double>(), r["gbps"].get<double>(), floor_pct,
                r.value("bound", "-").c_str(), ratio, check.c_str());
  }
  std::fflush(stdout);
}

}  // namespace dino::bench
