// The step profile (benchmarks/step_profile.h): the summary's arithmetic on a hand-made trace
// (overlaps, gaps, families, names), and the trace itself over known launches: on a GPU through
// CUPTI, on the emulator through its stand-in (tests/simt/cupti_emu.cpp).
#include <stdexcept>

#include "benchmarks/step_profile.h"
#include "core/error.h"
#include "kernels/cuda/runtime.h"
#include "tests/cuda/test_util.h"

namespace cu = dino::kernels::cuda;
using dino::bench::DeviceActivity;

namespace {

DeviceActivity kernel(const char* name, uint64_t start_us, uint64_t end_us, int registers = 32,
                      int grid_x = 1) {
  DeviceActivity a;
  a.name = name;
  a.start_ns = start_us * 1000, a.end_ns = end_us * 1000;
  a.registers = registers;
  a.grid[0] = grid_x, a.grid[1] = a.grid[2] = 1;
  a.block[0] = 128, a.block[1] = a.block[2] = 1;
  return a;
}

const nlohmann::json& row(const nlohmann::json& rows, const char* key, const std::string& value) {
  for (const nlohmann::json& r : rows)
    if (r[key] == value) return r;
  FAIL("no row with " << key << " = " << value << " in " << rows.dump());
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("profile: kernel names lose their namespace, return type and parameters", "[profile]") {
  using dino::bench::short_kernel_name;
  CHECK(short_kernel_name("void dino::kernels::cuda::(anonymous namespace)::layernorm_forward_"
                          "kernel<3, true>(float*, __nv_bfloat16*, int)") ==
        "layernorm_forward_kernel<3, true>");
  CHECK(
      short_kernel_name("void dino::kernels::cuda::attention_wgmma::forward_kernel<64>(Params)") ==
      "attention_wgmma::forward_kernel<64>");
  // A template argument with parentheses of its own; a C name without any.
  CHECK(short_kernel_name("void k<void (*)(int)>(int)") == "k<void (*)(int)>");
  CHECK(short_kernel_name("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n") ==
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n");
}

TEST_CASE("profile: busy time merges overlaps, idle time is what lies between", "[profile]") {
  // Two steps' worth: a LayerNorm overlapping a GEMM (another stream), a copy after a 20 us
  // gap, a kernel of no family after a 50 us gap, and a 5 us gap (not counted as long).
  std::vector<DeviceActivity> trace = {
      kernel("void dino::kernels::cuda::(anonymous namespace)::layernorm_forward_kernel<3, "
             "true>(float*, int)",
             0, 10, 40),
      kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 5, 20, 168),
      kernel("void dino::kernels::cuda::unknown_kernel(int)", 100, 130, 32, 99),
      kernel("void dino::kernels::cuda::unknown_kernel(int)", 135, 140, 32, 7),
  };
  DeviceActivity copy;
  copy.kind = DeviceActivity::Kind::memcpy;
  copy.name = "memcpy HtoD";
  copy.start_ns = 40000, copy.end_ns = 50000, copy.bytes = 4096;
  trace.push_back(copy);  // out of start order: the summary sorts

  const nlohmann::json p = dino::bench::summarize_step_profile(trace, 2);
  // span 140 us, busy [0, 20] + [40, 50] + [100, 130] + [135, 140] = 65 us, per step.
  CHECK(p["span_ms"].get<double>() == Approx(0.070));
  CHECK(p["busy_ms"].get<double>() == Approx(0.0325));
  CHECK(p["idle_ms"].get<double>() == Approx(0.0375));
  CHECK(p["idle_pct"].get<double>() == Approx(100.0 * 75 / 140));
  CHECK(p["gaps_over_10us_per_step"].get<double>() == Approx(1.0));  // 20 and 50 us, over 2
  CHECK(p["largest_gap_us"].get<double>() == Approx(50.0));
  CHECK(p["kernels_per_step"].get<double>() == Approx(2.0));

  const nlohmann::json& ln = row(p["kernels"], "name", "layernorm_forward_kernel<3, true>");
  CHECK(ln["family"] == "LayerNorm");
  CHECK(ln["registers"] == 40);
  CHECK(ln["ms_per_step"].get<double>() == Approx(0.005));
  const nlohmann::json& other = row(p["kernels"], "name", "unknown_kernel");
  CHECK(other["family"] == "other");
  CHECK(other["calls_per_step"].get<double>() == Approx(1.0));
  CHECK(other["us_per_call"].get<double>() == Approx(17.5));
  CHECK(other["pct_busy"].get<double>() == Approx(100.0 * 35 / 65));
  // Its two launch configurations apart, the longer first.
  REQUIRE(other["launches"].size() == 2);
  CHECK(other["launches"][0]["grid"] == nlohmann::json({99, 1, 1}));
  CHECK(other["launches"][0]["block"] == nlohmann::json({128, 1, 1}));
  CHECK(other["launches"][0]["ms_per_step"].get<double>() == Approx(0.015));
  CHECK(other["launches"][1]["grid"] == nlohmann::json({7, 1, 1}));
  CHECK(other["launches"][1]["calls_per_step"].get<double>() == Approx(0.5));
  const nlohmann::json& h2d = row(p["kernels"], "name", "memcpy HtoD");
  CHECK(h2d["family"] == "copies, memsets");
  CHECK(h2d["bytes_per_step"].get<double>() == Approx(2048));
  CHECK_FALSE(h2d.contains("registers"));
  CHECK(row(p["families"], "family", "GEMM")["ms_per_step"].get<double>() == Approx(0.0075));
  // Longest first.
  CHECK(p["kernels"][0]["name"] == "unknown_kernel");
  CHECK(p["families"][0]["family"] == "other");
}

TEST_CASE("profile: families come from benchmarks/kernel_families.json, first match wins",
          "[profile]") {
  // PyTorch's CUTLASS attention holds "cutlass" too (a GEMM key): attention is listed first.
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"fmha_cutlassF_bf16_aligned_64x64_rf_sm80", "attention"},
      {"void dino::kernels::cuda::attention_wgmma::forward_kernel<64>(Params)", "attention"},
      {"nvjet_tst_192x128_64x4_2x1_v_bz_coopB_TNT", "GEMM"},
      {"triton_tem_fused_mm_12", "GEMM"},
      {"triton_per_fused_add_native_layer_norm_3", "LayerNorm"},
      {"void dino::kernels::cuda::(anonymous namespace)::adamw_kernel(float*)",
       "optimizer, clipping, EMA"},
      {"void dino::kernels::cuda::nearest_row_diff_kernel(float*)", "other"},
  };
  for (const auto& [name, family] : cases) {
    INFO(name);
    const nlohmann::json p = dino::bench::summarize_step_profile({kernel(name, 0, 1)}, 1);
    CHECK(p["kernels"][0]["family"] == family);
  }
}

TEST_CASE("profile: a trace that cannot be summarised says why", "[profile]") {
  using dino::bench::summarize_step_profile;
  CHECK_THROWS_WITH(summarize_step_profile({}, 1), Catch::Contains("no device activity"));
  CHECK_THROWS_WITH(summarize_step_profile({kernel("k", 0, 1)}, 0),
                    Catch::Contains("steps must be positive"));
  CHECK_THROWS_WITH(summarize_step_profile({kernel("k", 5, 1)}, 1),
                    Catch::Contains("ends (1000 ns) before it starts (5000 ns)"));
}

TEST_CASE("profile: the trace holds the kernels and copies run inside it, and only those",
          "[profile]") {
  const int64_t n = 1 << 16;
  dino::test::DeviceBuffer<float> a(n), b(n);
  cu::fill_f32(a.get(), 1.0f, n);  // before the trace: not in it
  cu::synchronize();
  const std::vector<DeviceActivity> trace = dino::bench::trace_device_activity([&] {
    cu::fill_f32(a.get(), 2.0f, n);
    cu::copy_d2d(b.get(), a.get(), n * sizeof(float));
    cu::fill_f32(b.get(), 3.0f, n);
    cu::synchronize();
  });
  int kernels = 0, copies = 0;
  for (const DeviceActivity& t : trace) {
    INFO(t.name);
    CHECK(t.end_ns >= t.start_ns);
    if (t.kind == DeviceActivity::Kind::kernel) {
      ++kernels;
      CHECK(t.name.find("fill") != std::string::npos);
      CHECK(t.grid[0] * t.grid[1] * t.grid[2] > 0);  // the launch configuration came with it
      CHECK(t.block[0] * t.block[1] * t.block[2] > 0);
    }
    if (t.kind == DeviceActivity::Kind::memcpy) {
      ++copies;
      CHECK(t.name == "memcpy DtoD");
      CHECK(t.bytes == uint64_t(n) * sizeof(float));
    }
  }
  CHECK(kernels == 2);
  CHECK(copies == 1);
  CHECK(b.download()[n - 1] == 3.0f);

  // A run that throws leaves tracing off: the next trace sees only its own work.
  CHECK_THROWS_WITH(dino::bench::trace_device_activity([&] {
                      cu::fill_f32(a.get(), 4.0f, n);
                      cu::synchronize();
                      throw dino::Error("stopped");
                    }),
                    Catch::Contains("stopped"));
  cu::fill_f32(a.get(), 5.0f, n);
  cu::synchronize();
  const std::vector<DeviceActivity> again = dino::bench::trace_device_activity([&] {
    cu::copy_d2d(b.get(), a.get(), sizeof(float));
    cu::synchronize();
  });
  REQUIRE(again.size() == 1);
  CHECK(again[0].kind == DeviceActivity::Kind::memcpy);
}
