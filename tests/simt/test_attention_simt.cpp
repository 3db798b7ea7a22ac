// The mma.sync flash-attention kernels (kernels/cuda/attention_mma.cuh), run on the host by the
// warp emulator (tests/simt/simt.h), against the float64 CPU reference from the same bf16
// inputs, with the CUDA test's tolerances (tests/cuda/test_attention.cpp: twice the plain bf16
// composite's error plus 1e-3; lse to 1e-5). What this shows without a GPU: the fragment
// indexing, the tile loops and their tails, the masking and the online softmax are right, given
// the PTX ISA's fragment layouts. What it cannot show: timing, cp.async ordering, and whether
// the device compiler keeps the registers (tests/cuda runs the same kernels on the GPU).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "kernels/cpu/bf16_oracle.h"
#include "kernels/cpu/kernels.h"
#include "tests/simt/simt.h"
// After the emulated primitives:
#include "kernels/cuda/attention_mma.cuh"

namespace cpu = dino::kernels::cpu;
namespace mma = dino::kernels::cuda::attention_mma;
using dino::bf16;
using dino::simt::Dim3;

namespace {

struct Shape {
  int B, N, H, D;
};

std::vector<bf16> random_bf16(dino::Rng& rng, size_t n, double scale) {
  std::vector<bf16> v(n);
  for (auto& x : v) x = bf16(float(scale * rng.normal()));
  return v;
}
std::vector<double> to_double(const std::vector<bf16>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = double(float(v[i]));
  return out;
}
std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
const __nv_bfloat16* as_nv(const std::vector<bf16>& v) {
  return reinterpret_cast<const __nv_bfloat16*>(v.data());
}
__nv_bfloat16* as_nv(std::vector<bf16>& v) { return reinterpret_cast<__nv_bfloat16*>(v.data()); }

void expect_close(const char* what, const std::vector<double>& got,
                  const std::vector<double>& ref, double tol) {
  const cpu::Comparison c = cpu::compare(got, ref);
  INFO(what << ": rel L2 error " << c.rel_l2 << " (tolerance " << tol << "), " << c.non_finite
            << " non-finite; worst " << c.worst);
  CHECK(c.non_finite == 0);
  CHECK(c.rel_l2 <= tol);
}

template <int D>
void run(const Shape& s, std::vector<bf16>& out, std::vector<float>& lse,
         std::vector<bf16>& dqkv, const std::vector<bf16>& qkv, const std::vector<bf16>& dout,
         const std::vector<float>& dv_rows) {
  using T = mma::Tiles<D>;
  const Dim3 grid{unsigned((s.N + mma::kTile - 1) / mma::kTile), unsigned(s.B * s.H), 1};
  const Dim3 block{unsigned(mma::kThreads), 1, 1};
  if (dv_rows.empty()) {
    dino::simt::launch(grid, block, T::kForward, [&] {
      mma::forward_kernel<D>(as_nv(out), lse.data(), as_nv(qkv), s.N, s.H);
    });
    return;
  }
  dino::simt::launch(grid, block, T::kDkDv, [&] {
    mma::backward_dkdv_kernel<D>(as_nv(dqkv), as_nv(dout), as_nv(qkv), lse.data(),
                                 dv_rows.data(), s.N, s.H);
  });
  dino::simt::launch(grid, block, T::kDq, [&] {
    mma::backward_dq_kernel<D>(as_nv(dqkv), as_nv(dout), as_nv(qkv), lse.data(), dv_rows.data(),
                               s.N, s.H);
  });
}

template <class... Args>
void run_any(int D, Args&&... args) {
  switch (D) {
    case 32: run<32>(args...); break;
    case 64: run<64>(args...); break;
    case 128: run<128>(args...); break;
    default: FAIL("head dim " << D);
  }
}

}  // namespace

TEST_CASE("mma.sync attention kernels, emulated, match the CPU reference", "[simt][attention]") {
  // N = 1, N not a multiple of the 64-row tile (37, 65, 130: a partial last tile, and two
  // tiles so the double buffers swap), every head dim, more than one batch and head.
  const Shape shapes[] = {{1, 1, 1, 32}, {2, 37, 2, 64}, {1, 65, 2, 32}, {1, 130, 1, 64},
                          {1, 130, 1, 128}};
  dino::Rng rng(77);
  for (const Shape& s : shapes) {
    INFO("B = " << s.B << ", N = " << s.N << ", H = " << s.H << ", Dh = " << s.D);
    const size_t n_qkv = size_t(s.B) * s.N * 3 * s.H * s.D, n_out = size_t(s.B) * s.N * s.H * s.D;
    const size_t n_lse = size_t(s.B) * s.H * s.N;
    // Scores of order 1-3 after scaling: the softmax is neither flat nor one-hot.
    const std::vector<bf16> qkv = random_bf16(rng, n_qkv, 1.5), dout = random_bf16(rng, n_out, 1);
    const bf16 nan_bf16 = bf16(NAN);
    std::vector<bf16> out(n_out, nan_bf16), dqkv(n_qkv, nan_bf16);
    std::vector<float> lse(n_lse, NAN);
    run_any(s.D, s, out, lse, dqkv, qkv, dout, std::vector<float>{});

    const std::vector<double> qkv_r = to_double(qkv), dout_r = to_double(dout);
    std::vector<double> ref_out(n_out), ref_lse(n_lse), ref_dqkv(n_qkv);
    cpu::attention_forward<double>(ref_out.data(), ref_lse.data(), nullptr, qkv_r.data(), s.B,
                                   s.N, s.H, s.D);
    cpu::attention_backward<double>(ref_dqkv.data(), dout_r.data(), qkv_r.data(), ref_out.data(),
                                    ref_lse.data(), s.B, s.N, s.H, s.D);
    std::vector<double> comp_out, comp_dqkv;
    cpu::attention_bf16_composite(comp_out, comp_dqkv, qkv_r, dout_r, s.B, s.N, s.H, s.D);
    expect_close("out", to_double(out), ref_out, 2 * cpu::compare(comp_out, ref_out).rel_l2 + 1e-3);
    expect_close("lse", to_double(lse), ref_lse, 1e-5);

    // Dv = rowsum(dO * O) per (b, h, query) from the kernel's own bf16 output, as the device's
    // dot kernel computes it.
    std::vector<float> dv_rows(n_lse);
    for (int b = 0; b < s.B; ++b)
      for (int n = 0; n < s.N; ++n)
        for (int h = 0; h < s.H; ++h) {
          double acc = 0;
          const size_t base = ((size_t(b) * s.N + n) * s.H + h) * s.D;
          for (int d = 0; d < s.D; ++d)
            acc += double(float(dout[base + d])) * double(float(out[base + d]));
          dv_rows[(size_t(b) * s.H + h) * s.N + n] = float(acc);
        }
    run_any(s.D, s, out, lse, dqkv, qkv, dout, dv_rows);
    expect_close("dqkv", to_double(dqkv), ref_dqkv,
                 2 * cpu::compare(comp_dqkv, ref_dqkv).rel_l2 + 1e-3);
  }
}

TEST_CASE("the warp emulator reports a deadlock instead of hanging", "[simt]") {
  // Half the block waits at __syncthreads, the other half has returned: a CUDA kernel with
  // this bug hangs or is undefined; the emulator must say so.
  CHECK_THROWS_WITH(dino::simt::launch(Dim3{1, 1, 1}, Dim3{64, 1, 1}, 0,
                                       [] {
                                         if (threadIdx.x < 32) __syncthreads();
                                       }),
                    Catch::Contains("deadlock"));
}
