// Flash attention's launchers on the GPU against the CPU reference in float64 from the same bf16
// qkv (ARCHITECTURE §6), on every attention case of the op table (testing/op_cases_nn.cpp: its
// (B, N, H, Dh), input scale and tolerance rule): N = 1, N not a multiple of the 64-row tile,
// every head dim. What the op check (tests/cuda/test_op_table.cpp) cannot see: the saved
// log-sum-exp, and the backward launched alone, twice, bit-identical. Output and dqkv are held
// to the case's rule (twice the error of a plain bf16 composite, simulated on the host from the
// same inputs, plus 1e-3, or 3x their bf16 rounding plus 3e-3 where tighter).
#include <cmath>

#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "testing/op_cases.h"
#include "tests/cuda/test_util.h"

namespace cpu = dino::kernels::cpu;
namespace cu = dino::kernels::cuda;
namespace tbl = dino::testing;
using namespace dino::test;

TEST_CASE("attention forward and backward match the CPU reference", "[attention]") {
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
    cu::attention_forward(reinterpret_cast<__nv_bfloat16*>(out.get()), lse.get(), bf(dqkv_in), B, N,
                          H, Dh, test_stream());
    cu::attention_backward(reinterpret_cast<__nv_bfloat16*>(dqkv.get()), bf(ddout), bf(dqkv_in),
                           bf(out), lse.get(), B, N, H, Dh, test_stream());

    const std::vector<double> qkv_r = to_double(qkv), dout_r = bf16_rounded(dout);
    std::vector<double> ref_out(n_out), ref_lse(n_lse), ref_dqkv(n_qkv);
    cpu::attention_forward<double>(ref_out.data(), ref_lse.data(), nullptr, qkv_r.data(), B, N, H,
                                   Dh);
    cpu::attention_backward<double>(ref_dqkv.data(), dout_r.data(), qkv_r.data(), ref_out.data(),
                                    ref_lse.data(), B, N, H, Dh);
    REQUIRE(c->tol.composite);
    const tbl::CompositeResult comp = c->tol.composite({qkv_r}, dout_r);
    const double tol_out =
        tbl::bound_for(c->tol, dino::DType::bf16, ref_out, compare(comp.out, ref_out).rel_l2).tol;
    const double tol_dqkv =
        tbl::bound_for(c->tol, dino::DType::bf16, ref_dqkv, compare(comp.grads[0], ref_dqkv).rel_l2)
            .tol;

    expect_close("out", to_double(out.download()), ref_out, tol_out);
    // lse comes from fp32 scores of exact bf16 inputs: float32 accuracy.
    expect_close("lse", to_double(lse.download()), ref_lse, 1e-5);
    expect_close("dqkv", to_double(dqkv.download()), ref_dqkv, tol_dqkv);

    // No atomics: a second backward is bit-identical.
    const std::vector<dino::bf16> first = dqkv.download();
    cu::attention_backward(reinterpret_cast<__nv_bfloat16*>(dqkv.get()), bf(ddout), bf(dqkv_in),
                           bf(out), lse.get(), B, N, H, Dh, test_stream());
    const std::vector<dino::bf16> second = dqkv.download();
    size_t differ = 0;
    for (size_t i = 0; i < n_qkv; ++i) differ += first[i].bits != second[i].bits;
    CHECK(differ == 0);
  }
}
