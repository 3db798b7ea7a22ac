// LayerNorm CUDA launchers against the CPU reference in float64 (ARCHITECTURE §6), on the
// (rows, C) of every layer_norm case of the op table (testing/op_cases_nn.cpp: a single row,
// odd row counts, C = 33 (the scalar path) next to C = 4, 384, 768, 1000 (the float4 path)), with
// the case's inputs (rows on an offset, mean ~3, std ~1, like a residual stream, so a one-pass
// variance would show) and its bound on the bf16 output. What the op check
// (tests/cuda/test_op_table.cpp) cannot see: the saved mean and rstd, the fused residual add in
// place, the backward launched alone twice, bit-identical.
#include <set>

#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "testing/op_cases.h"
#include "tests/cuda/test_util.h"

namespace cpu = dino::kernels::cpu;
namespace cu = dino::kernels::cuda;
namespace tbl = dino::testing;
using namespace dino::test;

namespace {

constexpr float kEps = 1e-6f;

// The layer_norm cases, one per (rows, C).
std::vector<const tbl::OpCase*> layernorm_cases() {
  std::vector<const tbl::OpCase*> out;
  std::set<std::vector<int64_t>> seen;
  for (const tbl::OpCase* c : tbl::cases_of("layer_norm"))
    if (seen.insert(c->dims).second) out.push_back(c);
  REQUIRE(out.size() >= 8);
  return out;
}

// The case's x, weight and bias (x as f32: the kernels read the f32 stream).
struct Inputs {
  int N, C;
  std::vector<float> x, w, b;
};
Inputs inputs_of(const tbl::OpCase& c, dino::Rng& rng) {
  std::vector<std::vector<float>> v = tbl::case_values(c, rng);
  return {int(c.dims[0]), int(c.dims[1]), std::move(v[0]), std::move(v[1]), std::move(v[2])};
}

double out_tolerance(const tbl::OpCase& c, const std::vector<double>& ref) {
  return tbl::bound_for(c.tol, dino::DType::bf16, ref).tol;
}

}  // namespace

TEST_CASE("layernorm_forward matches the CPU reference", "[layernorm]") {
  for (const tbl::OpCase* c : layernorm_cases()) {
    INFO(c->name);
    dino::Rng rng(tbl::case_seed(*c) + 21);
    const Inputs s = inputs_of(*c, rng);
    const std::vector<float>&x = s.x, &w = s.w, &b = s.b;
    const size_t nc = size_t(s.N) * s.C;
    DeviceBuffer<float> dx(x), dw(w), db(b), mean(size_t(s.N)), rstd(size_t(s.N));
    DeviceBuffer<dino::bf16> out(nc);
    out.poison(), mean.poison(), rstd.poison();
    cu::layernorm_forward(reinterpret_cast<__nv_bfloat16*>(out.get()), mean.get(), rstd.get(),
                          dx.get(), dw.get(), db.get(), s.N, s.C, kEps, test_stream());

    std::vector<double> ref(nc), ref_mean(size_t(s.N)), ref_rstd(size_t(s.N));
    cpu::layernorm_forward<double>(ref.data(), ref_mean.data(), ref_rstd.data(),
                                   to_double(x).data(), to_double(w).data(), to_double(b).data(),
                                   s.N, s.C, double(kEps));
    expect_close("out", to_double(out.download()), ref, out_tolerance(*c, ref));
    expect_close("mean", to_double(mean.download()), ref_mean, 1e-6);
    expect_close("rstd", to_double(rstd.download()), ref_rstd, 1e-5);
  }
}

TEST_CASE("residual_layernorm_forward adds the branch and normalises, also in place",
          "[layernorm]") {
  for (const tbl::OpCase* c : layernorm_cases()) {
    for (bool in_place : {false, true}) {
      INFO(c->name << (in_place ? ", in place" : ", out of place"));
      dino::Rng rng(tbl::case_seed(*c) + (in_place ? 23 : 22));
      const Inputs s = inputs_of(*c, rng);
      const std::vector<float>&x = s.x, &w = s.w, &b = s.b;
      const size_t nc = size_t(s.N) * s.C;
      const std::vector<float> br = random_floats(rng, nc, 0.5);
      DeviceBuffer<float> dx(x), x_out(nc), dw(w), db(b), mean(size_t(s.N)), rstd(size_t(s.N));
      DeviceBuffer<dino::bf16> dbr(to_bf16(br)), out(nc);
      out.poison(), x_out.poison(), mean.poison(), rstd.poison();
      float* xo = in_place ? dx.get() : x_out.get();
      cu::residual_layernorm_forward(xo, reinterpret_cast<__nv_bfloat16*>(out.get()), mean.get(),
                                     rstd.get(), dx.get(),
                                     reinterpret_cast<const __nv_bfloat16*>(dbr.get()), dw.get(),
                                     db.get(), s.N, s.C, kEps, test_stream());

      // The reference adds the bf16-rounded branch in float64.
      std::vector<double> sum = to_double(x);
      const std::vector<double> brr = bf16_rounded(br);
      for (size_t i = 0; i < nc; ++i) sum[i] += brr[i];
      std::vector<double> ref(nc), ref_mean(size_t(s.N)), ref_rstd(size_t(s.N));
      cpu::layernorm_forward<double>(ref.data(), ref_mean.data(), ref_rstd.data(), sum.data(),
                                     to_double(w).data(), to_double(b).data(), s.N, s.C,
                                     double(kEps));
      expect_close("x_out", to_double(in_place ? dx.download() : x_out.download()), sum, 1e-6);
      expect_close("out", to_double(out.download()), ref, out_tolerance(*c, ref));
      expect_close("mean", to_double(mean.download()), ref_mean, 1e-6);
      expect_close("rstd", to_double(rstd.download()), ref_rstd, 1e-5);
    }
  }
}

TEST_CASE("layernorm_backward matches the CPU reference", "[layernorm]") {
  for (const tbl::OpCase* c : layernorm_cases()) {
    INFO(c->name);
    dino::Rng rng(tbl::case_seed(*c) + 24);
    const Inputs s = inputs_of(*c, rng);
    const std::vector<float>&x = s.x, &w = s.w, &b = s.b;
    const size_t nc = size_t(s.N) * s.C;
    const std::vector<float> dout = random_floats(rng, nc);
    DeviceBuffer<float> dx_in(x), dw(w), db(b), mean(size_t(s.N)), rstd(size_t(s.N));
    DeviceBuffer<dino::bf16> out(nc), ddout(to_bf16(dout));
    DeviceBuffer<float> dx(nc), dweight(size_t(s.C)), dbias(size_t(s.C));
    // The backward reads the statistics the forward saved, as in training.
    cu::layernorm_forward(reinterpret_cast<__nv_bfloat16*>(out.get()), mean.get(), rstd.get(),
                          dx_in.get(), dw.get(), db.get(), s.N, s.C, kEps, test_stream());
    dx.poison(), dweight.poison(), dbias.poison();
    cu::layernorm_backward(dx.get(), dweight.get(), dbias.get(),
                           reinterpret_cast<const __nv_bfloat16*>(ddout.get()), dx_in.get(),
                           mean.get(), rstd.get(), dw.get(), s.N, s.C, test_stream());

    const std::vector<double> m = to_double(mean.download()), r = to_double(rstd.download());
    std::vector<double> ref_dx(nc), ref_dw(size_t(s.C)), ref_db(size_t(s.C));
    cpu::layernorm_backward<double>(ref_dx.data(), ref_dw.data(), ref_db.data(),
                                    bf16_rounded(dout).data(), to_double(x).data(), m.data(),
                                    r.data(), to_double(w).data(), s.N, s.C);
    // float32 arithmetic on exact (bf16) inputs: far under 1e-5.
    expect_close("dx", to_double(dx.download()), ref_dx, 1e-5);
    expect_close("dweight", to_double(dweight.download()), ref_dw, 1e-5);
    expect_close("dbias", to_double(dbias.download()), ref_db, 1e-5);

    // Fixed-order reductions: a second run is bit-identical.
    const std::vector<float> first_dw = dweight.download(), first_dx = dx.download();
    cu::layernorm_backward(dx.get(), dweight.get(), dbias.get(),
                           reinterpret_cast<const __nv_bfloat16*>(ddout.get()), dx_in.get(),
                           mean.get(), rstd.get(), dw.get(), s.N, s.C, test_stream());
    CHECK(dweight.download() == first_dw);
    CHECK(dx.download() == first_dx);
  }
}
