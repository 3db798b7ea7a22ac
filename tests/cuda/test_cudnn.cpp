// The cuDNN baselines (benchmarks/cudnn/cudnn_attention.cpp, cudnn_layernorm.cpp) against the
// same float64 CPU references and tolerances as our kernels' tests (test_attention.cpp,
// test_layernorm.cpp), so `attention=cudnn` training and the benchmarks' cuDNN rows rest on a
// checked path. A build without cuDNN, or a cuDNN that has no engine for an operation (see
// cudnn_attention.cpp for the SDPA graphs it tries), is reported with WARN and checks nothing
// for that operation: the library's absence is not this code's failure, but every result it
// does produce must be right. Which SDPA graph ran (unified or composite) is reported too.
#include <cmath>
#include <string>

#include "benchmarks/cudnn/baselines.h"
#include "core/error.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/test_util.h"

namespace cpu = dino::kernels::cpu;
namespace cu = dino::kernels::cuda;
namespace bench = dino::bench;
using namespace dino::test;

namespace {

// Runs f; returns false (with a WARN naming what) if cuDNN refuses it.
template <class F>
bool cudnn_runs(const std::string& what, F&& f) {
  try {
    f();
    cu::synchronize();
    return true;
  } catch (const dino::Error& e) {
    WARN("cuDNN " << bench::cudnn_version() << " cannot run " << what << ": " << e.what());
    return false;
  }
}

// Reports the graph the latest cuDNN call ran when it differs from the one reported before.
void report_path(const char* what, std::string& reported) {
  const bench::CudnnPlanInfo p = bench::cudnn_last_plan();
  CHECK(std::string(p.path) != "");
  if (reported == p.path) return;
  reported = p.path;
  WARN("cuDNN " << bench::cudnn_version() << " ran " << what << " as the " << p.path
                << " graph (engine " << p.engine << ")");
}

const __nv_bfloat16* bf(const DeviceBuffer<dino::bf16>& b) {
  return reinterpret_cast<const __nv_bfloat16*>(b.get());
}
__nv_bfloat16* bfm(DeviceBuffer<dino::bf16>& b) {
  return reinterpret_cast<__nv_bfloat16*>(b.get());
}

}  // namespace

TEST_CASE("cuDNN attention matches the CPU reference", "[cudnn]") {
  if (!bench::cudnn_available()) {
    WARN("no cuDNN in this build: " << bench::cudnn_version());
    return;
  }
  struct S {
    int B, N, H, Dh;
  };
  dino::Rng rng(61);
  std::string forward_path, backward_path;
  for (const S s : {S{2, 37, 3, 64}, S{1, 197, 2, 64}, S{2, 65, 2, 32}, S{1, 130, 1, 128}}) {
    INFO("B = " << s.B << ", N = " << s.N << ", H = " << s.H << ", Dh = " << s.Dh);
    const size_t n_qkv = size_t(s.B) * s.N * 3 * s.H * s.Dh, n_out = size_t(s.B) * s.N * s.H * s.Dh;
    const size_t n_lse = size_t(s.B) * s.H * s.N;
    const std::vector<float> qkv = random_floats(rng, n_qkv, 1.5), dout = random_floats(rng, n_out);
    DeviceBuffer<dino::bf16> dqkv_in(to_bf16(qkv)), out(n_out), ddout(to_bf16(dout)), dqkv(n_qkv);
    DeviceBuffer<float> lse(n_lse);
    out.poison(), lse.poison(), dqkv.poison();

    const std::vector<double> qkv_r = bf16_rounded(qkv), dout_r = bf16_rounded(dout);
    std::vector<double> ref_out(n_out), ref_lse(n_lse), ref_dqkv(n_qkv), comp_out, comp_dqkv;
    cpu::attention_forward<double>(ref_out.data(), ref_lse.data(), nullptr, qkv_r.data(), s.B, s.N,
                                   s.H, s.Dh);
    cpu::attention_backward<double>(ref_dqkv.data(), dout_r.data(), qkv_r.data(), ref_out.data(),
                                    ref_lse.data(), s.B, s.N, s.H, s.Dh);
    cu::selfcheck::attention_bf16_composite(comp_out, comp_dqkv, qkv_r, dout_r, s.B, s.N, s.H,
                                            s.Dh);

    if (!cudnn_runs("the SDPA forward", [&] {
          bench::cudnn_attention_forward(bfm(out), lse.get(), bf(dqkv_in), s.B, s.N, s.H, s.Dh,
                                         test_stream());
        }))
      return;
    report_path("the SDPA forward", forward_path);
    expect_close("out", to_double(out.download()), ref_out,
                 2 * compare(comp_out, ref_out).rel_l2 + 1e-3);
    expect_close("lse", to_double(lse.download()), ref_lse, 1e-4);
    if (!cudnn_runs("the SDPA backward", [&] {
          bench::cudnn_attention_backward(bfm(dqkv), bf(ddout), bf(dqkv_in), bf(out), lse.get(),
                                          s.B, s.N, s.H, s.Dh, test_stream());
        }))
      continue;
    report_path("the SDPA backward", backward_path);
    expect_close("dqkv", to_double(dqkv.download()), ref_dqkv,
                 2 * compare(comp_dqkv, ref_dqkv).rel_l2 + 1e-3);
  }
}

TEST_CASE("the attention backend switch", "[cudnn]") {
  CHECK(std::string(cu::attention_backend_name()) == "ours");
  CHECK_THROWS_AS(cu::set_attention_backend("flash"), dino::Error);
  bench::register_cudnn_attention();
  if (bench::cudnn_available()) {
    cu::set_attention_backend("cudnn");
    CHECK(std::string(cu::attention_backend_name()) == "cudnn");
  } else {
    CHECK_THROWS_AS(cu::set_attention_backend("cudnn"), dino::Error);
  }
  cu::set_attention_backend("ours-mma");
  CHECK(std::string(cu::attention_backend_name()) == "ours-mma");
  cu::set_attention_backend("ours");
  CHECK(std::string(cu::attention_backend_name()) == "ours");
}

TEST_CASE("cuDNN layer norm matches the CPU reference", "[cudnn]") {
  if (!bench::cudnn_available()) {
    WARN("no cuDNN in this build: " << bench::cudnn_version());
    return;
  }
  constexpr float kEps = 1e-6f;
  struct S {
    int N, C;
  };
  dino::Rng rng(62);
  for (const S s : {S{1, 384}, S{197, 384}, S{37, 33}, S{1000, 384}}) {
    INFO("N = " << s.N << ", C = " << s.C);
    const size_t nc = size_t(s.N) * s.C;
    const std::vector<float> x = random_floats(rng, nc, 1.0, 3.0),
                             w = random_floats(rng, size_t(s.C), 0.3, 1.0);
    const std::vector<float> b = random_floats(rng, size_t(s.C), 0.3),
                             dout = random_floats(rng, nc);
    DeviceBuffer<float> dx_in(x), dw(w), db(b), mean(size_t(s.N)), rstd(size_t(s.N));
    DeviceBuffer<float> dx(nc), dweight(size_t(s.C)), dbias(size_t(s.C));
    DeviceBuffer<dino::bf16> out(nc), ddout(to_bf16(dout));
    out.poison(), mean.poison(), rstd.poison(), dx.poison(), dweight.poison(), dbias.poison();

    std::vector<double> ref(nc), ref_mean(size_t(s.N)), ref_rstd(size_t(s.N));
    cpu::layernorm_forward<double>(ref.data(), ref_mean.data(), ref_rstd.data(),
                                   to_double(x).data(), to_double(w).data(), to_double(b).data(),
                                   s.N, s.C, kEps);
    if (!cudnn_runs("the layer-norm forward (x f32, y bf16)", [&] {
          bench::cudnn_layernorm_forward(bfm(out), mean.get(), rstd.get(), dx_in.get(), dw.get(),
                                         db.get(), s.N, s.C, kEps, test_stream());
        }))
      return;
    expect_close("out", to_double(out.download()), ref, 2 * bf16_output_error(ref) + 1e-4);
    expect_close("mean", to_double(mean.download()), ref_mean, 1e-5);
    expect_close("rstd", to_double(rstd.download()), ref_rstd, 1e-4);

    if (!cudnn_runs("the layer-norm backward (dy bf16, x f32, dx f32)", [&] {
          bench::cudnn_layernorm_backward(dx.get(), dweight.get(), dbias.get(), bf(ddout),
                                          dx_in.get(), mean.get(), rstd.get(), dw.get(), s.N, s.C,
                                          test_stream());
        }))
      return;
    const std::vector<double> m = to_double(mean.download()), r = to_double(rstd.download());
    std::vector<double> ref_dx(nc), ref_dw(size_t(s.C)), ref_db(size_t(s.C));
    cpu::layernorm_backward<double>(ref_dx.data(), ref_dw.data(), ref_db.data(),
                                    bf16_rounded(dout).data(), to_double(x).data(), m.data(),
                                    r.data(), to_double(w).data(), s.N, s.C);
    expect_close("dx", to_double(dx.download()), ref_dx, 1e-4);
    expect_close("dweight", to_double(dweight.download()), ref_dw, 1e-4);
    expect_close("dbias", to_double(dbias.download()), ref_db, 1e-4);
  }
}
