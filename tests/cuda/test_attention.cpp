// Flash attention's launchers on every attention case of the op table
// (testing/op_cases_nn.cpp: its (B, N, H, Dh) and input scale; N = 1, N not a multiple of the
// 64-row tile, every head dim), for what the op check (tests/cuda/test_op_table.cpp) cannot see:
// each kernel, forward and backward, against the CPU reference in float64 (the op check sees
// only the kernel attention_forward picks), the saved log-sum-exp, and the backward launched
// alone, twice, bit-identical (these launches are also what gpu-check's
// compute-sanitizer stage watches). The op check holds the kernel attention_forward picks to
// twice a bf16 composite's error (ARCHITECTURE §6); here every kernel is held to a fixed bound.
#include <cmath>

#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "testing/op_cases.h"
#include "tests/cuda/test_util.h"

namespace cpu = dino::kernels::cpu;
namespace cu = dino::kernels::cuda;
namespace tbl = dino::testing;
using namespace dino::test;

TEST_CASE("attention's log-sum-exp matches the CPU reference; its backward reruns bit-identical",
          "[attention]") {
  const auto cases = tbl::cases_of("attention");
  REQUIRE(cases.size() >= 8);
  for (const tbl::OpCase* c : cases) {
    const int B = int(c->dims[0]), N = int(c->dims[1]), H = int(c->dims[2]), Dh = int(c->dims[3]);
    INFO(c->name);
    const size_t n_qkv = size_t(B) * N * 3 * H * Dh;
    const size_t n_out = size_t(B) * N * H * Dh;
    const size_t n_lse = size_t(B) * H * N;
    dino::Rng rng(tbl::case_seed(*c));
    const std::vector<float> qkv = tbl::case_values(*c, rng)[0];  // bf16 values
    const std::vector<float> dout = random_floats(rng, n_out);
    DeviceBuffer<dino::bf16> dqkv_in(to_bf16(qkv)), out(n_out), ddout(to_bf16(dout)), dqkv(n_qkv);
    DeviceBuffer<float> lse(n_lse);
    out.poison(), lse.poison(), dqkv.poison();
    auto bf = [](const DeviceBuffer<dino::bf16>& b) {
      return reinterpret_cast<const __nv_bfloat16*>(b.get());
    };
    std::vector<double> ref_out(n_out), ref_lse(n_lse), ref_dqkv(n_qkv);
    cpu::attention_forward<double>(ref_out.data(), ref_lse.data(), nullptr, to_double(qkv).data(),
                                   B, N, H, Dh);
    cpu::attention_backward<double>(ref_dqkv.data(), to_double(dout).data(), to_double(qkv).data(),
                                    ref_out.data(), ref_lse.data(), B, N, H, Dh);
    // Each kernel that runs here (wgmma: Dh = 64 on an sm_90 device or the emulator), forward
    // and backward: every element written; lse from fp32 scores of exact bf16 inputs, so
    // float32 accuracy; out and dqkv within 1e-2 relative L2 of the float64 reference (the
    // kernels measure 1.7-3.8e-3 here, both alike; the op check holds the kernel attention_forward
    // picks to its composite bound): a wrong tile, descriptor or fragment is off by O(1).
    for (const cu::AttentionKernel kernel :
         {cu::AttentionKernel::wgmma, cu::AttentionKernel::mma}) {
      INFO("kernel " << cu::attention_kernel_name(kernel));
      const std::string why = cu::attention_kernel_unavailable(kernel, Dh);
      if (!why.empty()) {
        CHECK_THROWS_WITH(
            cu::attention_forward_with(kernel, reinterpret_cast<__nv_bfloat16*>(out.get()),
                                       lse.get(), bf(dqkv_in), B, N, H, Dh, test_stream()),
            Catch::Contains(why));
        continue;
      }
      out.poison(), lse.poison();
      cu::attention_forward_with(kernel, reinterpret_cast<__nv_bfloat16*>(out.get()), lse.get(),
                                 bf(dqkv_in), B, N, H, Dh, test_stream());
      expect_close("lse", to_double(lse.download()), ref_lse, 1e-5);
      expect_close("out", to_double(out.download()), ref_out, 1e-2);

      // No atomics: two backward launches on the same inputs write the same bits, and every one.
      auto backward = [&] {
        cu::attention_backward_with(kernel, reinterpret_cast<__nv_bfloat16*>(dqkv.get()), bf(ddout),
                                    bf(dqkv_in), bf(out), lse.get(), B, N, H, Dh, test_stream());
        return dqkv.download();
      };
      dqkv.poison();
      const std::vector<dino::bf16> first = backward();
      dqkv.poison();
      const std::vector<dino::bf16> second = backward();
      size_t differ = 0;
      for (size_t i = 0; i < n_qkv; ++i) differ += first[i].bits != second[i].bits;
      CHECK(differ == 0);
      expect_close("dqkv", to_double(first), ref_dqkv, 1e-2);
    }
  }
}

TEST_CASE("attention runs wgmma past 64 tokens at head dim 64 where it can, else mma.sync",
          "[attention]") {
  const bool wgmma_runs = cu::attention_kernel_unavailable(cu::AttentionKernel::wgmma, 64).empty();
  INFO(cu::attention_kernel_unavailable(cu::AttentionKernel::wgmma, 64));
  CHECK(cu::attention_kernel_for(197, 64) ==
        (wgmma_runs ? cu::AttentionKernel::wgmma : cu::AttentionKernel::mma));
  CHECK(cu::attention_kernel_for(65, 64) == cu::attention_kernel_for(197, 64));
  CHECK(cu::attention_kernel_for(64, 64) == cu::AttentionKernel::mma);
  CHECK(cu::attention_kernel_for(37, 64) == cu::AttentionKernel::mma);
  for (const int Dh : {32, 128}) {
    CHECK(cu::attention_kernel_for(197, Dh) == cu::AttentionKernel::mma);
    CHECK_FALSE(cu::attention_kernel_unavailable(cu::AttentionKernel::wgmma, Dh).empty());
  }
  CHECK(cu::attention_kernel_unavailable(cu::AttentionKernel::mma, 64).empty());
}
